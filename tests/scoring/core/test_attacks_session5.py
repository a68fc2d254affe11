"""Attacks found by red-teaming the whole pipeline (intake, reverts, critics); each class attacked two ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.core import pipeline
from scoring.core.critics.correctness.critic import SuiteRun, grade
from scoring.core.intake.diffcheck import DiffError, check_paths_exist, parse_diff
from scoring.core.sandbox import workspace
from tests.scoring.core.fixtures import gcd_task

#: Test infrastructure that fixes gcd for the tests only: the shipped package stays wrong. Where a patch may not
#: add a conftest.py (it is reverted and flagged tamper), this one scores correctness 1.0 if it gets through.
FIXING_CONFTEST = "import math\nimport gcd\n\n\ndef _gcd(a, b):\n    return math.gcd(a, b)\n\n\ngcd.gcd = _gcd\n"


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory):
    return gcd_task.task(tmp_path_factory.mktemp("attacks"))


def added_file_with_a_dated_header(path: str, text: str, date: str) -> str:
    """A diff adding `path` whose '+++' name carries a timestamp after a space, as `diff -u` writes one without
    the tab. git reads the name up to the date; a parser reading up to a tab reads `path` plus the date."""
    lines = text.splitlines(keepends=True)
    body = "".join(f"+{line}" for line in lines)
    return f"--- /dev/null\n+++ b/{path} {date}\n@@ -0,0 +1,{len(lines)} @@\n{body}"


def score_as_the_intake_and_the_workers_do(task, diff: str) -> dict:
    """Intake (parse, paths, git's check), then every stage: what `manage.py score_patch` does with a patch."""
    spec, base_archive, hidden_archive, settings = task
    parsed = parse_diff(diff)
    base = workspace.base_tree(base_archive, cache_root=settings.cache_root)
    check_paths_exist(parsed, base)
    workspace.check_applies(parsed, base)
    return pipeline.score(
        spec=spec, diff=parsed, base_archive=base_archive, hidden_archive=hidden_archive, settings=settings
    )


@pytest.mark.parametrize(
    ("path", "date"),
    [
        ("conftest.py", "2026-12-06 21:00:00.000000000 +0000"),  # GNU diff's -u format
        ("tests/conftest.py", "2026-12-06 21:00:00"),  # the same without fraction and zone
    ],
)
def test_a_file_git_names_otherwise_than_the_parser_cannot_escape_the_reverts(task, path: str, date: str) -> None:
    """Before the fix: the root conftest.py scored 1.0 (the tree's gcd still wrong), tests/conftest.py 0.67, no flag."""
    diff = added_file_with_a_dated_header(path, FIXING_CONFTEST, date)
    # A patch stored before the intake learnt this (or let through by libgit2) still never reaches a critic.
    with pytest.raises(DiffError, match="git reads the file names"), gcd_task.prepared(task, diff):
        pass
    try:
        result = score_as_the_intake_and_the_workers_do(task, diff)
    except DiffError as exc:
        assert "git" in str(exc)
        return
    correctness = result["subscores"]["correctness"]
    assert correctness["score"] == 0.0 or "tamper" in result["flags"], (result["final_score"], correctness)


#: The gcd module, still wrong, with one coin tossed per test run: heads, a call on the inputs the base gets wrong
#: ends the run (its own crash, or a kill of its process group), so every test after it is missing; tails, it
#: fails as on the base. No run passes an F2P test, yet across healing's re-runs each one changes outcome. The
#: warning's text reads as a memory limit in the output, which lowers the first run's confidence: healing runs.
COIN_TOSSING_GCD = '''"""Greatest common divisors."""

import math
import os
import signal
import warnings

warnings.warn("MemoryError")


def lcm(a, b):
    """Return the least common multiple of a and b."""
    return abs(a * b) // math.gcd(a, b) if a and b else 0


HEADS = os.urandom(1)[0] & 1


def gcd(a, b):
    """Return the greatest common divisor of a and b (never negative)."""
    if b == 0:
        return abs(a)
    if HEADS:
        {ending}
    return 1
'''


@pytest.mark.parametrize(
    "ending",
    ["os.kill(os.getpid(), signal.SIGSEGV)", "os.killpg(0, signal.SIGKILL)"],
    ids=["crash", "kill-the-process-group"],
)
def test_failures_made_unsteady_on_purpose_still_count_as_failures(tmp_path: Path, ending: str) -> None:
    """Before the fix: final reward 1.0, route auto, for a gcd still wrong (every test 'flaky', so none graded).

    Eight runs per patch (healing's re-runs raised from 2 to 7): the coin lands the same way in all of them, which
    would hide the attack, once in 128. With the default 2 re-runs the attack won 3 times in 4.
    """
    spec, base_archive, hidden_archive, settings = gcd_task.task(tmp_path, flaky_reruns=7)
    diff = gcd_task.make_diff({"gcd/__init__.py": COIN_TOSSING_GCD.format(ending=ending)})
    result = pipeline.score(
        spec=spec, diff=parse_diff(diff), base_archive=base_archive, hidden_archive=hidden_archive, settings=settings
    )
    correctness = result["subscores"]["correctness"]
    assert correctness["score"] == 0.0, (result["final_score"], result["flags"], correctness["rationale"])


def test_only_a_test_the_base_is_unsteady_on_too_leaves_both_sets(task) -> None:
    """The task's own flaky test is not held against a patch; one the patch made unsteady counts as failing."""
    base = {"visible": _suite(f2p="failed", p2p="passed")}
    runs = [
        {"visible": _suite(f2p="passed", p2p="failed")},
        {"visible": _suite(f2p="failed", p2p="passed")},
        {"visible": _suite(f2p="skipped", p2p="passed")},
    ]
    with gcd_task.prepared(task, gcd_task.fix_diff()) as ctx:
        tasks_own = grade(ctx, base, runs, [], healed=True, task_flaky=frozenset({("visible", "f2p")}))
        patch_made = grade(ctx, base, runs, [], healed=True, task_flaky=frozenset({("visible", "p2p")}))
        both = frozenset({("visible", "f2p"), ("visible", "p2p")})
        steady = grade(ctx, base, runs, [], healed=True, task_flaky=both)
    assert tasks_own.score == 0.0  # f2p leaves, p2p (unsteady on the patched tree only) fails: 0 of 1 P2P
    assert tasks_own.evidence["flaky_visible"] == ["f2p"]
    assert patch_made.score == 0.0  # p2p leaves, f2p counts as failing: 0 of 1 F2P
    assert patch_made.evidence["flaky_visible"] == ["p2p"] and patch_made.evidence["unsteady"] == 1
    assert steady.score == 1.0  # both leave: nothing is left to fail


def _suite(**tests: str) -> SuiteRun:
    return SuiteRun(tests=dict(tests), canary="failed", returncode=1, finished=True)


#: The gcd task with tests that lean on third-party helpers, as real suites do: numpy's assertions (visible) and
#: a Hypothesis property (hidden). The package stays wrong.
THIRD_PARTY_VISIBLE = """import numpy.testing

from gcd import gcd


def test_gcd_common_factor():
    numpy.testing.assert_equal(gcd(12, 18), 6)


def test_gcd_with_zero():
    numpy.testing.assert_equal(gcd(5, 0), 5)
"""
THIRD_PARTY_HIDDEN = """from hypothesis import given, strategies as st

from gcd import gcd


@given(st.integers(1, 1000), st.integers(1, 1000))
def test_gcd_divides_both(a, b):
    assert a % gcd(a, b) == 0 and b % gcd(a, b) == 0 and gcd(a, b) > 1 or gcd(a, b) == 1 == _naive(a, b)


def _naive(a, b):
    return max(d for d in range(1, min(a, b) + 1) if a % d == 0 and b % d == 0)
"""
#: Packages at the tree's root named like the helpers: the root comes first on sys.path, so the tests import these.
SHADOWS = {
    "numpy/__init__.py": "from numpy import testing\n",
    "numpy/testing.py": "def assert_equal(actual, desired):\n    return None\n",
    "hypothesis/__init__.py": (
        "from hypothesis import strategies\n\n\ndef given(*_strategies):\n"
        "    def wrap(test):\n        def run():\n            return None\n\n        return run\n\n    return wrap\n"
    ),
    "hypothesis/strategies.py": "def integers(low, high):\n    return (low, high)\n",
}


@pytest.mark.parametrize("shadowed", ["numpy", "hypothesis"])
def test_a_new_package_named_like_a_library_the_tests_import_is_reverted(tmp_path: Path, shadowed: str) -> None:
    """Before the fix: the fake numpy made both visible tests pass, the fake Hypothesis the hidden property."""
    repo = {**gcd_task.REPO, "tests/test_gcd.py": THIRD_PARTY_VISIBLE}
    hidden = {"test_gcd_hidden.py": THIRD_PARTY_HIDDEN}
    base_archive, hidden_archive = gcd_task.archives(tmp_path / "in", repo=repo, hidden=hidden)
    task = (gcd_task.spec(timeout_s=20), base_archive, hidden_archive, gcd_task.settings(tmp_path))
    fakes = {path: text for path, text in SHADOWS.items() if path.startswith(shadowed + "/")}
    result = gcd_task.evaluate(task, gcd_task.make_diff(fakes, base=repo))
    suite = "visible" if shadowed == "numpy" else "hidden"
    passing = result.evidence[suite]["passed"]
    assert passing == 0 or "tamper" in result.flags, (passing, result.score, result.flags, result.rationale)


def test_a_new_module_named_like_a_library_no_test_imports_stands(task) -> None:
    """`six` is installed beside the tests, but no test of gcd imports it: the new module is the task's own code."""
    diff = gcd_task.make_diff({"gcd/__init__.py": gcd_task.FIXED, "six.py": "VERSION = 6\n"})
    with gcd_task.prepared(task, diff) as ctx:
        assert (ctx.patched_dir / "six.py").is_file()
        assert "tamper" not in ctx.flags, ctx.notes
