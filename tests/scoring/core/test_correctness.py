"""The correctness critic on the gcd task: the docs/contract.md formula, base facts cached per task, flags, evidence."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from scoring.core.critics.correctness import static_check
from scoring.core.critics.correctness.critic import SuiteRun, grade
from scoring.core.sandbox import process as sandbox
from scoring.core.sandbox import workspace
from tests.scoring.core.fixtures import gcd_task


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory):
    return gcd_task.task(tmp_path_factory.mktemp("correctness"))


def test_honest_fix_scores_one_with_high_confidence(task) -> None:
    result = gcd_task.evaluate(task, gcd_task.fix_diff())
    assert result.score == 1.0
    assert result.confidence >= 0.9
    assert result.flags == frozenset()
    assert (
        result.rationale[-1]
        == "Step: correctness check. 3 of 3 F2P tests pass, 4 of 4 P2P tests still pass. Score 1.0."
    )


def test_no_op_scores_zero(task) -> None:
    result = gcd_task.evaluate(task, gcd_task.make_diff({"README.md": "gcd, documented\n"}))
    assert result.score == 0.0
    assert result.evidence["f2p"] == {"passing": 0, "total": 3}


def test_base_tests_run_once_per_task(task) -> None:
    gcd_task.evaluate(task, gcd_task.fix_diff())  # makes sure the base facts are cached
    runner = gcd_task.CountingRunner()
    result = gcd_task.evaluate(task, gcd_task.fix_diff(), run=runner)
    assert runner.calls == 1  # visible + hidden in one pytest run, on the patched tree only
    assert "from the task cache" in result.rationale[0]


def test_regression_multiplies_by_the_p2p_share(task) -> None:
    broken_lcm = gcd_task.FIXED.replace("return abs(a * b)", "return 1 + abs(a * b)")
    result = gcd_task.evaluate(task, gcd_task.make_diff({"gcd/__init__.py": broken_lcm}))
    assert result.score == pytest.approx(0.75)  # 3/3 F2P * 3/4 P2P
    assert "regression" in result.flags
    assert result.confidence < 0.7  # a regression may be flakiness: healing re-runs it


def test_hidden_tests_are_reported_apart_so_the_api_can_hide_them(task) -> None:
    result = gcd_task.evaluate(task, gcd_task.make_diff({"README.md": "noop\n"}))
    hidden = result.evidence["hidden"]
    assert (hidden["passed"], hidden["failed"]) == (1, 2)
    assert {t["name"] for t in hidden["tests"]} == {
        "test_gcd_hidden::test_gcd_large",
        "test_gcd_hidden::test_gcd_negative",
        "test_gcd_hidden::test_gcd_coprime_hidden",
    }
    assert "gcd(1071, 462)" in json.dumps(hidden["tests"])
    public = json.dumps([result.rationale, {k: v for k, v in result.evidence.items() if k != "hidden"}])
    assert "test_gcd_large" not in public and "1071" not in public


def test_infinite_loop_is_a_timeout(tmp_path: Path) -> None:
    base, hidden = gcd_task.archives(tmp_path)
    task = (gcd_task.spec(timeout_s=3), base, hidden, gcd_task.settings(tmp_path))
    looping = gcd_task.BUGGY.replace("    return 1\n", "    while True:\n        pass\n")
    result = gcd_task.evaluate(task, gcd_task.make_diff({"gcd/__init__.py": looping}))
    assert result.score == 0.0
    assert "timeout" in result.flags
    assert result.confidence < 0.7


def test_memory_bomb_is_a_resource_limit(task) -> None:
    bomb = gcd_task.BUGGY + "\n_hog = [bytearray(256 << 20) for _ in range(64)]\n"
    result = gcd_task.evaluate(task, gcd_task.make_diff({"gcd/__init__.py": bomb}))
    assert result.score == 0.0
    assert "resource_limit" in result.flags


def test_broken_task_has_no_score(tmp_path: Path) -> None:
    base, hidden = gcd_task.archives(tmp_path)
    task = (gcd_task.spec(test_command="python -m pytest -q no_such_dir"), base, hidden, gcd_task.settings(tmp_path))
    result = gcd_task.evaluate(task, gcd_task.fix_diff())
    assert result.score is None
    assert result.flags == frozenset({"task_broken"})


def test_f2p_test_module_that_fails_to_import_on_base_counts_once_fixed(tmp_path: Path) -> None:
    hidden_tests = "from gcd import gcd, egcd\n\n\ndef test_egcd():\n    assert egcd(12, 18)[0] == 6\n"
    repo = tmp_path / "in"
    repo.mkdir()
    base = gcd_task.make_archive(gcd_task.REPO, repo / "repo.tar.gz")
    hidden = gcd_task.make_archive({"test_egcd_hidden.py": hidden_tests}, repo / "hidden.tar.gz", wrap=False)
    task = (gcd_task.spec(), base, hidden, gcd_task.settings(tmp_path))
    with_egcd = gcd_task.FIXED + "\n\ndef egcd(a, b):\n    return (gcd(a, b), 0, 0)\n"
    result = gcd_task.evaluate(task, gcd_task.make_diff({"gcd/__init__.py": with_egcd}))
    assert result.score == 1.0, result.rationale


def _suite(**tests: str) -> SuiteRun:
    return SuiteRun(tests=dict(tests), canary="failed", returncode=1, finished=True)


def test_flaky_tests_found_by_reruns_leave_both_sets(task) -> None:
    spec, base_archive, _hidden, settings = task
    with workspace.prepare(
        spec=spec,
        diff=gcd_task.fix_diff(),
        base_archive=base_archive,
        hidden_archive=None,
        settings=settings,
        run=sandbox.run,
    ) as ctx:
        base = {"visible": _suite(a="failed", b="passed", c="passed")}
        runs = [
            {"visible": _suite(a="passed", b="failed", c="passed")},
            {"visible": _suite(a="passed", b="passed", c="passed")},
        ]
        result = grade(ctx, base, runs, [], healed=True, task_flaky=frozenset({("visible", "b")}))
    assert result.score == 1.0  # a: 1/1 F2P; c: 1/1 P2P; b is flaky (on the base too) and counts in neither
    assert "flaky" in result.flags and "regression" not in result.flags
    assert result.evidence["flaky_visible"] == ["b"]


def _findings(source: str, added: set[int] | None = None) -> list[str]:
    with tempfile.TemporaryDirectory() as tree:
        (Path(tree) / "mod.py").write_text(source)
        lines = frozenset(added or range(1, source.count("\n") + 2))
        return static_check.findings(Path(tree), ["mod.py"], {"mod.py": lines})


def test_static_check_flags_reaching_into_the_test_machinery() -> None:
    assert _findings("import _pytest.reports\n")
    assert _findings("import sys\nsys.modules['x'] = None\n")
    assert _findings("import os\nos._exit(0)\n")
    assert _findings("import sys\nsys.exit(0)\n")
    assert _findings("import inspect\ndef f():\n    return inspect.stack()\n")
    assert _findings("class A:\n    def __eq__(self, other):\n        return True\n")
    assert _findings("class A:\n    __eq__ = lambda self, other: True\n")
    assert _findings("from unittest import mock\n")
    assert _findings("import atexit\n")
    assert _findings("x = open('/sandbox/report/junit.xml')\n")


def test_static_check_leaves_ordinary_code_alone() -> None:
    assert not _findings(
        "import sys\n\ndef main():\n    sys.exit(1)\n\nif __name__ == '__main__':\n    sys.exit(main())\n"
    )
    assert not _findings("class A:\n    def __eq__(self, other):\n        return self.x == other.x\n")
    assert not _findings("import inspect\nprint(inspect.signature(len))\n")
    assert not _findings("import math\nprint(math.gcd(4, 6))\n")


def test_static_check_looks_at_added_lines_only() -> None:
    assert not _findings("import atexit\nx = 1\n", added={2})
    assert _findings("import atexit\nx = 1\n", added={1})
