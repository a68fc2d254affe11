"""Sealed verdicts: attacks on the test runner itself, on the gcd task whose implementation stays wrong.

Each attack is written so that the static check may or may not see it: what must hold is the runtime boundary
(the outcome stream, the canaries, the harness-owned configuration, hidden tests served from memory). Every
test here fails if that boundary is removed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scoring.core.critics.correctness import critic as correctness
from scoring.core.critics.correctness import runner
from tests.scoring.core.fixtures import gcd_task


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory):
    return gcd_task.task(tmp_path_factory.mktemp("sealed"))


def implementation(extra: str) -> str:
    """A diff that appends `extra` to the (still buggy) gcd module."""
    return gcd_task.make_diff({"gcd/__init__.py": gcd_task.BUGGY + extra})


# --- Class 1: the report forged from inside the test process -------------------------------------------------

SERIALIZER_SILENCED = """
import importlib
_junit = importlib.import_module("_py" + "test.junit" + "xml")
for _name in ("append_failure", "append_error", "append_collect_error"):
    setattr(_junit._NodeReporter, _name, lambda self, report: None)
"""

SERIALIZER_REWRITTEN = """
import importlib

_ET = importlib.import_module("xml.etree.Element" + "Tree")
_tostring = _ET.tostring


def _clean(element, *args, **kwargs):
    for case in element.iter("testcase"):
        for child in list(case):
            if child.tag in ("failure", "error"):
                case.remove(child)
    return _tostring(element, *args, **kwargs)


_ET.tostring = _clean
"""


@pytest.mark.parametrize("hack", [SERIALIZER_SILENCED, SERIALIZER_REWRITTEN], ids=["silenced", "rewritten"])
def test_a_report_serializer_bent_from_inside_is_tamper(task, hack: str) -> None:
    result = gcd_task.evaluate(task, implementation(hack))
    assert result.score == 0.0
    assert "tamper" in result.flags
    assert any("report disagrees" in step or "canar" in step for step in result.rationale), result.rationale


FINALIZER_REWRITES_REPORT = """
import os as _o
import weakref as _w

_PASS = '<testsuites><testsuite>' + ''.join(
    '<testcase classname="tests.test_gcd" name="%s"/>' % n
    for n in ("test_gcd_common_factor", "test_gcd_of_coprimes", "test_gcd_with_zero", "test_lcm")
) + '</testsuite></testsuites>'


class _Keeper:
    pass


def _rewrite():
    for folder in ("/sandbox/report",):
        for name in _o.listdir(folder):
            if name.endswith(".xml"):
                with open(_o.path.join(folder, name), "w") as handle:
                    handle.write(_PASS)


_keeper = _Keeper()
_w.finalize(_keeper, _rewrite)
"""

THREAD_REWRITES_REPORT = """
import os as _o
import threading as _t
import time as _time


def _watch():
    for _ in range(2000):
        for name in _o.listdir("/sandbox/report"):
            if name.endswith(".xml"):
                with open(_o.path.join("/sandbox/report", name), "w") as handle:
                    handle.write('<testsuites><testsuite><testcase classname="tests.test_gcd" '
                                 'name="test_gcd_common_factor"/></testsuite></testsuites>')
        _time.sleep(0.001)


_t.Thread(target=_watch, daemon=True).start()
"""


@pytest.mark.parametrize("hack", [FINALIZER_REWRITES_REPORT, THREAD_REWRITES_REPORT], ids=["finalizer", "thread"])
def test_a_report_rewritten_after_the_tests_decides_nothing(task, hack: str) -> None:
    result = gcd_task.evaluate(task, implementation(hack))
    assert result.score == 0.0
    evidence = result.evidence["visible"]
    assert evidence["passed"] < 4  # the F2P test still fails: the verdict came from the stream


STREAM_FORGED_BY_PATH = """
import json as _j
import os as _o

try:
    _fd = _o.open("/sandbox/report/stream", _o.O_WRONLY | _o.O_NONBLOCK)
    for _seq, _name in enumerate(("test_gcd_common_factor", "test_gcd_of_coprimes"), start=1):
        _o.write(_fd, (_j.dumps({"k": "test", "nodeid": "tests/test_gcd.py::" + _name, "when": "call",
                                 "outcome": "passed", "text": "", "seq": _seq, "nonce": "0" * 32}) + "\\n").encode())
except OSError:
    pass
"""

STREAM_FORGED_BY_FD = """
import os as _o

for _fd in range(3, 64):
    try:
        _o.write(_fd, b'{"k": "done", "exitstatus": 0, "seq": 1, "nonce": "guess"}\\n')
    except OSError:
        pass
"""


@pytest.mark.parametrize("hack", [STREAM_FORGED_BY_PATH, STREAM_FORGED_BY_FD], ids=["by-path", "every-fd"])
def test_records_forged_into_the_outcome_stream_are_tamper(task, hack: str) -> None:
    result = gcd_task.evaluate(task, implementation(hack))
    assert result.score == 0.0
    assert "tamper" in result.flags


FORCE_ALL_BUT_CANARY_NAMES = """
import importlib
_reports = importlib.import_module("_py" + "test.reports")
_init = _reports.TestReport.__init__


def _init_passing(self, nodeid, *args, **kwargs):
    _init(self, nodeid, *args, **kwargs)
    if "canary" not in str(nodeid) and "harness" not in str(nodeid):
        self.outcome = "passed"
        self.longrepr = None


_reports.TestReport.__init__ = _init_passing
"""

FORCE_ALL_IN_KNOWN_FILES = """
import importlib
_reports = importlib.import_module("_py" + "test.reports")
_init = _reports.TestReport.__init__


def _init_passing(self, nodeid, *args, **kwargs):
    _init(self, nodeid, *args, **kwargs)
    if str(nodeid).startswith("tests/test_gcd.py::"):
        self.outcome = "passed"
        self.longrepr = None


_reports.TestReport.__init__ = _init_passing
"""


@pytest.mark.parametrize(
    "hack", [FORCE_ALL_BUT_CANARY_NAMES, FORCE_ALL_IN_KNOWN_FILES], ids=["all-but-canary-names", "known-files"]
)
def test_forcing_passes_is_caught_by_canaries_that_look_like_real_tests(task, hack: str) -> None:
    result = gcd_task.evaluate(task, implementation(hack))
    assert result.score == 0.0
    assert "tamper" in result.flags
    assert any("canary test (a copy of a real test" in step for step in result.rationale), result.rationale


def test_canaries_are_named_and_placed_like_the_tasks_own_tests(task, tmp_path: Path) -> None:
    with gcd_task.prepared(task, gcd_task.fix_diff()) as ctx:
        source = tmp_path / "tree"
        shutil.copytree(ctx.patched_dir, source)
        (source / "gcd" / "spy.py").write_text("")
        captured: dict[str, bytes] = {}
        real_reader = runner.read_runs

        def spying(stream, *args, **kwargs):
            captured["stream"] = stream
            return real_reader(stream, *args, **kwargs)

        runner.read_runs = spying
        try:
            runs = correctness.run_suites(ctx, source, ["visible"], combined=False)
        finally:
            runner.read_runs = real_reader
    import json

    records = [json.loads(line) for line in captured["stream"].splitlines()]
    canaries = next(r["nodeids"] for r in records if r["k"] == "canaries")
    assert len(canaries) == runner.CANARIES  # one module: no more than the minimum
    real = {"test_gcd_of_coprimes", "test_gcd_with_zero", "test_gcd_common_factor", "test_lcm"}
    for nodeid in canaries:
        path, name = nodeid.split("::")
        assert path == "tests/test_gcd.py"
        assert "canary" not in name
        assert any(name.startswith(original + "_") for original in real)
    assert runs["visible"].canary == "failed"
    assert set(runs["visible"].tests.values()) == {"passed"}


# --- Class 3: pytest configuration that the patch brings --------------------------------------------------------

EVIL_PLUGIN = """
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""


@pytest.mark.parametrize(
    "name, text",
    [
        ("pytest.ini", "[pytest]\naddopts = -p evil_plugin\n"),
        ("setup.cfg", "[tool:pytest]\naddopts = -p evil_plugin\n"),
        ("tox.ini", "[pytest]\naddopts = -p evil_plugin\n"),
        ("pytest.toml", '[pytest]\naddopts = ["-p", "evil_plugin"]\n'),
        ("pyproject.toml", '[tool.pytest.ini_options]\naddopts = "-p evil_plugin"\n'),
        ("pyproject.toml", '[tool.pytest.ini_options]\naddopts = "-p evil_plugin"\n[[[broken\n'),
    ],
    ids=["pytest.ini", "setup.cfg", "tox.ini", "pytest.toml", "pyproject", "pyproject-unparseable"],
)
def test_pytest_runs_on_the_harness_configuration_whatever_the_tree_holds(
    task, tmp_path: Path, name: str, text: str
) -> None:
    """Even if a configuration file got past the workspace's reverts, pytest never reads it."""
    with gcd_task.prepared(task, implementation("\n# unchanged behaviour\n")) as ctx:
        source = tmp_path / "tree"
        shutil.copytree(ctx.patched_dir, source)
        (source / name).write_text(text)
        (source / "evil_plugin.py").write_text(EVIL_PLUGIN)
        runs = correctness.run_suites(ctx, source, ["visible"], combined=False)
    visible = runs["visible"]
    assert visible.finished
    assert visible.tests["tests.test_gcd::test_gcd_common_factor"] == "failed"
    assert visible.canary == "failed"


def test_the_base_trees_own_pytest_configuration_still_applies(tmp_path: Path) -> None:
    repo = {
        **gcd_task.REPO,
        "pyproject.toml": '[project]\nname = "gcd"\nversion = "0.1"\n\n[tool.pytest.ini_options]\n'
        'markers = ["slow: a slow test"]\naddopts = "--strict-markers"\n',
        "tests/test_marked.py": "import pytest\n\n\n@pytest.mark.slow\ndef test_marked():\n    assert True\n",
    }
    base_archive, hidden_archive = gcd_task.archives(tmp_path / "in", repo)
    spec, settings = gcd_task.spec(), gcd_task.settings(tmp_path)
    diff = gcd_task.make_diff({"README.md": "gcd!\n"}, base=repo)
    with gcd_task.prepared((spec, base_archive, hidden_archive, settings), diff) as ctx:
        runs = correctness.run_suites(ctx, ctx.base_dir, ["visible"], combined=False)
    # With --strict-markers and no registered marker the module would fail to collect.
    assert runs["visible"].tests["tests.test_marked::test_marked"] == "passed"


# --- Class 4: hidden tests on disk ------------------------------------------------------------------------------

FILESYSTEM_PROBE = """
import os as _o
import sys as _s

# Skipped: the kernel's files and the read-only system and Python the sandbox shares with every run.
_SKIP = {"/proc", "/sys", "/dev", "/usr", _o.path.realpath(_s.prefix), _o.path.realpath(_s.base_prefix)}
_NEEDLES = [p.encode() for p in ("10" + "71", "test_gcd_" + "large", "test_gcd_" + "negative", "coprime_" + "hidden")]


def _probe():
    seen, hidden, read = False, [], 0
    for root, dirs, files in _o.walk("/"):
        dirs[:] = [d for d in dirs if _o.path.realpath(_o.path.join(root, d)) not in _SKIP]
        for name in files:
            if not _o.path.isfile(_o.path.join(root, name)):
                continue  # the outcome stream is a pipe: reading it would only steal (and lose) outcomes
            try:
                with open(_o.path.join(root, name), "rb") as handle:
                    data = handle.read(1 << 20)
            except OSError:
                continue
            read += 1
            seen = seen or b"test_gcd_common_factor" in data
            for needle in _NEEDLES:
                if needle in data:
                    hidden.append(_o.path.join(root, name) + ":" + needle.decode())
    return "PROBE read=%d visible=%s hidden=%s" % (read, seen, hidden)


def gcd(a, b):
    raise RuntimeError(_probe())
"""


def test_code_reading_the_whole_filesystem_finds_nothing_of_the_hidden_tests(task) -> None:
    result = gcd_task.evaluate(task, implementation(FILESYSTEM_PROBE))
    excerpts = [t["output"] for suite in ("visible", "hidden") for t in result.evidence[suite]["tests"]]
    probes = [text[text.index("PROBE") :].splitlines()[0] for text in excerpts if "PROBE" in text]
    assert probes, excerpts
    for probe in probes:
        assert "visible=True" in probe  # the probe does read the tree...
        assert probe.endswith("hidden=[]"), probe  # ...and finds no hidden test's name or value anywhere


LOOKUP_TABLE_FROM_DISK = """
import os as _o
import re as _re

_ANSWERS = {}
for _root, _dirs, _files in _o.walk("/sandbox"):
    for _name in _files:
        if not _o.path.isfile(_o.path.join(_root, _name)):
            continue
        try:
            _text = open(_o.path.join(_root, _name), errors="ignore").read()
        except OSError:
            continue
        for _a, _b, _c in _re.findall(r"gcd\\((-?\\d+), (-?\\d+)\\) == (-?\\d+)", _text):
            _ANSWERS[(int(_a), int(_b))] = int(_c)

_buggy = gcd


def gcd(a, b):
    return _ANSWERS.get((a, b), _buggy(a, b))
"""


def test_answers_looked_up_in_test_files_on_disk_do_not_reach_the_hidden_tests(task) -> None:
    result = gcd_task.evaluate(task, implementation(LOOKUP_TABLE_FROM_DISK))
    assert result.evidence["visible"]["failed"] == 0  # the visible answers were found...
    assert result.evidence["hidden"]["passed"] == 1  # ...the hidden ones were not (only the P2P test passes)
    assert "overfit" in result.flags
    assert result.score < 0.5


# --- A conftest.py brought in while the tests run ------------------------------------------------------------

#: The gcd task with a visible sub-folder that pytest collects after tests/test_gcd.py (which imports the patch).
SUBFOLDER_REPO = {
    **gcd_task.REPO,
    "tests/zz_more/__init__.py": "",
    "tests/zz_more/test_more.py": "from gcd import lcm\n\n\ndef test_lcm_again():\n    assert lcm(2, 3) == 6\n",
}
CONFTEST_REPO = {**SUBFOLDER_REPO, "tests/zz_more/conftest.py": "VALUE = 1\n"}
CONFTEST_HIDDEN = {"extra/test_gcd_extra.py": gcd_task.HIDDEN_TESTS}

#: Writes a conftest.py into a folder pytest collects later in the same run (so it is loaded).
CONFTEST_WRITTEN_DURING_THE_RUN = """
import os as _o

with open(_o.path.join("tests", "zz_more", "conftest.py"), "w") as _handle:
    _handle.write("VALUE = 2\\n")
"""

#: Rewrites a conftest.py of the task that pytest has not imported yet.
CONFTEST_REWRITTEN_DURING_THE_RUN = """
import os as _o

with open(_o.path.join("tests", "zz_more", "conftest.py"), "w") as _handle:
    _handle.write("VALUE = 3\\n")
"""


@pytest.mark.parametrize(
    "hack, repo",
    [
        (CONFTEST_WRITTEN_DURING_THE_RUN, SUBFOLDER_REPO),
        (CONFTEST_REWRITTEN_DURING_THE_RUN, CONFTEST_REPO),
    ],
    ids=["written", "rewritten"],
)
def test_a_conftest_written_or_changed_while_the_tests_run_is_tamper(
    tmp_path: Path, hack: str, repo: dict[str, str]
) -> None:
    base_archive, hidden_archive = gcd_task.archives(tmp_path / "in", repo, CONFTEST_HIDDEN)
    task = (gcd_task.spec(), base_archive, hidden_archive, gcd_task.settings(tmp_path))
    diff = gcd_task.make_diff({"gcd/__init__.py": gcd_task.FIXED + hack}, base=repo)
    result = gcd_task.evaluate(task, diff)
    assert "tamper" in result.flags, result.rationale
    assert result.score == 0.0
    assert any("conftest.py written or changed while the tests ran" in step for step in result.rationale)


# --- Class 2: early exits and code the deny-list of old could not see --------------------------------------------

EXIT_THROUGH_ALIAS = "\nimport os as _o\n_o._exit(0)\n"
EXIT_THROUGH_JOINED_NAME = "\nimport os\ngetattr(os, '_ex' + 'it')(0)\n"
#: The exit lives in a data file the module loads and runs at import.
EXIT_FROM_A_DATA_FILE = """
import importlib.util as _u
import os as _os

_spec = _u.spec_from_loader("_payload", loader=None)
_module = _u.module_from_spec(_spec)
exec(open(_os.path.join(_os.path.dirname(__file__), "payload.txt")).read(), _module.__dict__)
"""


@pytest.mark.parametrize(
    "extra, files",
    [
        (EXIT_THROUGH_ALIAS, {}),
        (EXIT_THROUGH_JOINED_NAME, {}),
        (EXIT_FROM_A_DATA_FILE, {"gcd/payload.txt": "import os\nos._exit(0)\n"}),
    ],
    ids=["alias", "joined-name", "data-file"],
)
def test_an_early_exit_however_spelled_scores_zero_and_is_caught(task, extra: str, files: dict[str, str]) -> None:
    diff = gcd_task.make_diff({"gcd/__init__.py": gcd_task.BUGGY + extra, **files})
    result = gcd_task.evaluate(task, diff)
    assert result.score == 0.0  # no outcome ever reached the stream: every test is missing
    assert "tamper" in result.flags  # a run that exits 0 with its canaries unrun claims a success it cannot have
    assert "suspicious" in result.flags  # and the static check names the exit, whatever its spelling


# --- The reader of what the run leaves: malformed, oversized or swapped files ---------------------------------

DEEP_LINE_IN_THE_STREAM = """
import os as _o

try:
    _fd = _o.open("/sandbox/report/stream", _o.O_WRONLY | _o.O_NONBLOCK)
    _o.write(_fd, b"[" * 100000 + b"\\n")
except OSError:
    pass
"""

WRONG_TYPES_IN_THE_STREAM = """
import json as _j
import os as _o

try:
    _fd = _o.open("/sandbox/report/stream", _o.O_WRONLY | _o.O_NONBLOCK)
    _o.write(_fd, (_j.dumps({"k": "test", "seq": 1, "nonce": "x", "nodeid": 7, "when": None}) + "\\n").encode())
except OSError:
    pass
"""


@pytest.mark.parametrize("hack", [DEEP_LINE_IN_THE_STREAM, WRONG_TYPES_IN_THE_STREAM], ids=["deep", "wrong-types"])
def test_a_malformed_stream_record_is_tamper_not_a_crash(task, hack: str) -> None:
    result = gcd_task.evaluate(task, implementation(hack))
    assert result.score == 0.0
    assert "tamper" in result.flags


REPORT_SWAPPED_FOR_A_LINK = """
import os as _o
import threading as _t
import time as _time


def _swap():
    path = "/sandbox/report/junit.xml"
    for _ in range(5000):
        if _o.path.isfile(path) and not _o.path.islink(path):
            try:
                _o.unlink(path)
                _o.symlink("/etc/passwd", path)
            except OSError:
                pass
        _time.sleep(0.001)


_t.Thread(target=_swap, daemon=True).start()
"""

REPORT_SWAPPED_FOR_A_PIPE = REPORT_SWAPPED_FOR_A_LINK.replace('_o.symlink("/etc/passwd", path)', "_o.mkfifo(path)")


@pytest.mark.parametrize(
    "hack", [REPORT_SWAPPED_FOR_A_LINK, REPORT_SWAPPED_FOR_A_PIPE], ids=["symlink-to-host-file", "pipe"]
)
def test_a_report_swapped_for_a_link_or_a_pipe_is_never_followed_or_waited_on(task, hack: str) -> None:
    result = gcd_task.evaluate(task, implementation(hack))  # would hang on the pipe, or read a host file
    assert result.score == 0.0
    assert "timeout" not in result.flags


def test_tamper_rationale_names_no_test(task) -> None:
    result = gcd_task.evaluate(task, implementation(SERIALIZER_SILENCED))
    assert "tamper" in result.flags
    text = " ".join(result.rationale)
    for name in ("test_gcd_common_factor", "test_gcd_large", "test_gcd_negative", "tests.test_gcd"):
        assert name not in text


# --- Honest tasks the runner must not mistake for cheating --------------------------------------------------------

SUBTESTS_TESTS = """import unittest

from gcd import gcd


def test_gcd_cases(subtests):
    for a, b, want in [(12, 18, 6), (7, 5, 1)]:
        with subtests.test(a=a, b=b):
            assert gcd(a, b) == want


class TestGcd(unittest.TestCase):
    def test_cases(self):
        for a, b, want in [(12, 18, 6), (5, 0, 5)]:
            with self.subTest(a=a, b=b):
                self.assertEqual(gcd(a, b), want)
"""

PARAMS_WITH_COLONS = """import pytest

from gcd import gcd


@pytest.mark.parametrize("label, a, b, want", [("::1", 12, 18, 6), ("a::b", 7, 5, 1)])
def test_gcd_labelled(label, a, b, want):
    assert gcd(a, b) == want
"""


def _custom_task(tmp_path: Path, repo: dict[str, str], hidden: dict[str, str], **spec: object):
    base_archive, hidden_archive = gcd_task.archives(tmp_path / "in", repo, hidden)
    return (gcd_task.spec(**spec), base_archive, hidden_archive, gcd_task.settings(tmp_path))


@pytest.mark.parametrize(
    "tests, spec",
    [
        (SUBTESTS_TESTS, {}),
        (PARAMS_WITH_COLONS, {}),
        (gcd_task.VISIBLE_TESTS, {"test_command": "python -m pytest -x -q tests"}),
    ],
    ids=["subtests", "colons-in-parameter-ids", "stop-at-first-failure"],
)
def test_an_honest_fix_of_an_unusual_task_scores_one_without_tamper(tmp_path: Path, tests: str, spec: dict) -> None:
    repo = {**gcd_task.REPO, "tests/test_gcd.py": tests}
    task = _custom_task(tmp_path, repo, gcd_task.HIDDEN, **spec)
    fixed = gcd_task.evaluate(task, gcd_task.make_diff({"gcd/__init__.py": gcd_task.FIXED}, base=repo))
    assert (fixed.score, fixed.flags) == (1.0, frozenset()), fixed.rationale
    buggy = gcd_task.evaluate(task, gcd_task.make_diff({"README.md": "gcd, again\n"}, base=repo))
    assert buggy.score == 0.0 and "tamper" not in buggy.flags, buggy.rationale


def test_a_patch_that_breaks_every_import_scores_zero_without_tamper(task) -> None:
    result = gcd_task.evaluate(task, gcd_task.make_diff({"gcd/__init__.py": "def gcd(a, b:\n"}))
    assert result.score == 0.0
    assert "tamper" not in result.flags, result.rationale


def test_a_base_configuration_in_a_sub_folder_keeps_hidden_tests_named(tmp_path: Path) -> None:
    repo = {**gcd_task.REPO, "pyproject.toml": '[project]\nname = "gcd"\nversion = "0.1"\n'}
    repo["tests/pytest.ini"] = "[pytest]\naddopts = -q\n"
    hidden = {"tests/test_gcd_hidden.py": gcd_task.HIDDEN_TESTS}
    task = _custom_task(tmp_path, repo, hidden)
    result = gcd_task.evaluate(task, gcd_task.make_diff({"gcd/__init__.py": gcd_task.FIXED}, base=repo))
    assert result.score == 1.0, result.rationale
    names = {t["name"] for t in result.evidence["hidden"]["tests"]}
    assert names == {
        f"tests.test_gcd_hidden::{n}" for n in ("test_gcd_large", "test_gcd_negative", "test_gcd_coprime_hidden")
    }


def test_a_hidden_test_may_import_another_hidden_test_by_its_name(tmp_path: Path) -> None:
    hidden = {
        "test_gcd_hidden.py": gcd_task.HIDDEN_TESTS + "\nCASES = [(1071, 462, 21)]\n",
        "test_gcd_more.py": "from gcd import gcd\nfrom test_gcd_hidden import CASES\n\n\ndef test_cases():\n"
        "    for a, b, want in CASES:\n        assert gcd(a, b) == want\n",
    }
    task = _custom_task(tmp_path, gcd_task.REPO, hidden)
    result = gcd_task.evaluate(task, gcd_task.fix_diff())
    assert result.score == 1.0, result.rationale
    assert "test_gcd_more::test_cases" in {t["name"] for t in result.evidence["hidden"]["tests"]}


#: Forces every test to pass except what looks like a harness addition: a wrapper (`__wrapped__`), code named
#: otherwise than the test, or code from another file than a test module.
FORCE_ALL_BUT_WHAT_LOOKS_ADDED = """
import importlib
_python = importlib.import_module("_py" + "test.python")
_runtest = _python.Function.runtest


def _selective(self):
    code = getattr(self.obj, "__code__", None)
    added = (
        hasattr(self.obj, "__wrapped__")
        or code is None
        or code.co_name != self.originalname
        or not code.co_filename.rsplit("/", 1)[-1].startswith("test_")
        or getattr(self.module, self.originalname, None) is None
    )
    return _runtest(self) if added else None


_python.Function.runtest = _selective
"""


def test_canaries_carry_the_code_attributes_of_the_tasks_own_tests(task) -> None:
    result = gcd_task.evaluate(task, implementation(FORCE_ALL_BUT_WHAT_LOOKS_ADDED))
    assert result.score == 0.0
    assert "tamper" in result.flags, result.rationale
