"""The warm analyser: real pylint and bandit in a limited child process that hostile code can only hang or crash."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scoring.core.analysis.analyser import REVIEW_PYLINTRC, Analyser

RISKY = """\
import subprocess


def run(cmd):
    list = [cmd]
    return subprocess.call(cmd, shell=True), list
"""


@pytest.fixture(scope="module")
def analyser() -> Iterator[Analyser]:
    with Analyser(timeout_s=60) as shared:
        yield shared


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def ids(report, path: str, tool: str = "pylint") -> list[str]:
    return [finding.id for finding in getattr(report.files[path], tool)]


def test_pylint_and_bandit_findings_come_back_with_their_ids_and_lines(analyser: Analyser, tmp_path: Path) -> None:
    root = write(tmp_path, {"app/run.py": RISKY})
    report = analyser.analyse(root, ["app/run.py"], pylintrc=REVIEW_PYLINTRC)
    shadowed = next(f for f in report.files["app/run.py"].pylint if f.name == "redefined-builtin")
    assert (shadowed.id, shadowed.severity, shadowed.line, shadowed.scope) == ("W0622", "warning", 5, "run")
    shell = next(f for f in report.files["app/run.py"].bandit if f.id == "B602")
    assert (shell.severity, shell.confidence, shell.cwe, shell.line) == ("HIGH", "HIGH", 78, 6)
    assert shell.context == "return subprocess.call(cmd, shell=True), list"
    assert report.files["app/run.py"].statement_lines == {1, 4, 5, 6}


def test_analysis_runs_in_a_child_process_never_in_the_caller(analyser: Analyser, tmp_path: Path) -> None:
    analyser.analyse(write(tmp_path, {"m.py": "x = 1\n"}), ["m.py"], pylintrc=None)
    assert analyser.pid is not None and analyser.pid != os.getpid()
    assert "pylint.lint" not in sys.modules and "bandit.core.manager" not in sys.modules


def test_child_runs_under_the_memory_limit(tmp_path: Path) -> None:
    with Analyser(memory_bytes=900 << 20) as limited:
        limited.analyse(write(tmp_path, {"m.py": "x = 1\n"}), ["m.py"], pylintrc=None)
        limits = Path(f"/proc/{limited.pid}/limits").read_text()
    address_space = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    assert str(900 << 20) in address_space


def test_editing_a_file_between_two_runs_is_seen_by_the_second_run(analyser: Analyser, tmp_path: Path) -> None:
    # astroid caches modules by name and checks only the path: without eviction the second run would reuse the
    # first run's trees, both of the analysed file and of the module it imports.
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/helpers.py": "def other():\n    return 1\n",
            "pkg/main.py": "from pkg import helpers\n\n\ndef main():\n    return helpers.compute()\n",
        },
    )
    first = analyser.analyse(root, ["pkg/main.py"], pylintrc=REVIEW_PYLINTRC)
    pid = analyser.pid
    assert "E1101" in ids(first, "pkg/main.py")  # no-member: helpers has no compute() yet
    write(
        root,
        {
            "pkg/helpers.py": "def compute():\n    return 1\n",
            "pkg/main.py": "from pkg import helpers\n\n\ndef main():\n    unused = 2\n    return helpers.compute()\n",
        },
    )
    second = analyser.analyse(root, ["pkg/main.py"], pylintrc=REVIEW_PYLINTRC)
    assert analyser.pid == pid  # the same warm process
    assert "E1101" not in ids(second, "pkg/main.py")
    assert "W0612" in ids(second, "pkg/main.py")


def test_two_trees_with_the_same_module_names_do_not_leak_into_each_other(analyser: Analyser, tmp_path: Path) -> None:
    main = "from pkg import helpers\n\nRESULT = helpers.compute()\n"
    base = write(tmp_path / "base", {"pkg/__init__.py": "", "pkg/helpers.py": "X = 1\n", "pkg/main.py": main})
    patched = write(
        tmp_path / "patched",
        {"pkg/__init__.py": "", "pkg/helpers.py": "def compute():\n    return 1\n", "pkg/main.py": main},
    )
    assert "E1101" in ids(analyser.analyse(base, ["pkg/main.py"], pylintrc=REVIEW_PYLINTRC), "pkg/main.py")
    assert "E1101" not in ids(analyser.analyse(patched, ["pkg/main.py"], pylintrc=REVIEW_PYLINTRC), "pkg/main.py")
    assert "E1101" in ids(analyser.analyse(base, ["pkg/main.py"], pylintrc=REVIEW_PYLINTRC), "pkg/main.py")


def test_pragma_cannot_hide_a_message_from_the_review(analyser: Analyser, tmp_path: Path) -> None:
    root = write(tmp_path, {"m.py": "def f():\n    x = 1  # pylint: disable=unused-variable\n"})
    found = analyser.analyse(root, ["m.py"], pylintrc=REVIEW_PYLINTRC).files["m.py"].pylint
    hidden = next(f for f in found if f.id == "W0612")
    assert hidden.suppressed and hidden.line == 2 and hidden.severity == "warning"


def test_nosec_comment_does_not_hide_a_bandit_finding(analyser: Analyser, tmp_path: Path) -> None:
    root = write(tmp_path, {"m.py": "import pickle\n\n\ndef load(data):\n    return pickle.loads(data)  # nosec\n"})
    assert "B301" in ids(analyser.analyse(root, ["m.py"], pylintrc=None), "m.py", tool="bandit")


def test_files_outside_the_tree_or_missing_are_skipped_with_a_note(analyser: Analyser, tmp_path: Path) -> None:
    root = write(tmp_path / "tree", {"ok.py": "x = 1\n"})
    (root / "escape.py").symlink_to("/etc/passwd")
    report = analyser.analyse(root, ["escape.py", "missing.py", "ok.py"], pylintrc=None)
    assert report.files["escape.py"].skipped and report.files["missing.py"].skipped
    assert report.files["escape.py"].pylint == () and report.errors == {}
    assert not report.files["ok.py"].skipped


def test_endless_recursion_in_astroid_is_a_partial_note_not_a_crash(analyser: Analyser, tmp_path: Path) -> None:
    root = write(tmp_path, {"deep.py": "x = " + " + ".join(["1"] * 20000) + "\n"})
    report = analyser.analyse(root, ["deep.py"], pylintrc=None)
    assert report.errors == {}
    assert any(note.startswith("partial") for note in report.files["deep.py"].notes)
    assert "W0612" in ids(
        analyser.analyse(write(tmp_path, {"next.py": "def f():\n    y = 1\n"}), ["next.py"], pylintrc=None),
        "next.py",
    )


def test_file_that_keeps_the_analyser_busy_is_cut_off_and_the_next_request_works(tmp_path: Path) -> None:
    slow = "\n".join(f"v{i} = {i}" for i in range(60000)) + "\n"
    root = write(tmp_path, {"slow.py": slow, "fine.py": "def f():\n    y = 1\n"})
    with Analyser(timeout_s=2) as short:
        report = short.analyse(root, ["slow.py", "fine.py"], pylintrc=None)
        assert "timed out" in report.files["slow.py"].error
        # The batch was retried file by file: the innocent file still got its analysis.
        assert report.files["fine.py"].error is None and "W0612" in ids(report, "fine.py")
        after = short.analyse(root, ["fine.py"], pylintrc=None)
        assert after.errors == {} and short.children_started >= 3


def test_child_killed_from_outside_is_replaced_transparently(tmp_path: Path) -> None:
    root = write(tmp_path, {"m.py": "def f():\n    y = 1\n"})
    with Analyser() as own:
        own.analyse(root, ["m.py"], pylintrc=None)
        os.kill(own.pid, signal.SIGKILL)  # type: ignore[arg-type]  # the pid of a live Popen, never None here
        os.waitpid(own.pid, 0)  # type: ignore[arg-type]  # the pid of a live Popen, never None here
        report = own.analyse(root, ["m.py"], pylintrc=None)
        assert report.errors == {} and "W0612" in ids(report, "m.py")
        assert own.children_started == 2


def test_failing_request_becomes_an_error_in_the_report_and_the_child_restarts(tmp_path: Path) -> None:
    root = write(tmp_path, {"m.py": "x = 1\n"})
    with Analyser() as own:
        report = own.analyse(root, ["m.py"], pylintrc=tmp_path / "no-such-rc")
        assert "no-such-rc" in report.files["m.py"].error
        assert own.pid is None  # killed on the error
        assert own.analyse(root, ["m.py"], pylintrc=None).errors == {}
        assert own.children_started == 2


def test_child_is_recycled_after_the_configured_number_of_requests(tmp_path: Path) -> None:
    root = write(tmp_path, {"m.py": "x = 1\n"})
    with Analyser(recycle_after=2) as own:
        pids = []
        for _ in range(3):
            own.analyse(root, ["m.py"], pylintrc=None)
            pids.append(own.pid)
        assert pids[1] is None  # the first child went after its second request
        assert None not in (pids[0], pids[2]) and pids[0] != pids[2]
        assert own.children_started == 2
