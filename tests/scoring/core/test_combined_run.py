"""Both suites in one pytest process: when it is allowed, that it gives each suite the results of its own run, and
that the critic's guarantees (tamper, overfit, like-with-like grading, healing) hold in that mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.core.critics.correctness.combine import combine_blocker
from scoring.core.critics.correctness.critic import SUITES, CorrectnessCritic, choose_mode, run_combined, run_suite
from scoring.core.sandbox import process as sandbox
from scoring.core.sandbox import workspace
from tests.scoring.core.fixtures import gcd_task

# --- the pure rule ----------------------------------------------------------------------------------------------


def blocker(**overrides: object) -> str | None:
    """combine_blocker for the gcd task (visible tests in tests/, one hidden test file at the root), overridden."""
    facts: dict[str, object] = {
        "test_command": "python -m pytest -q tests",
        "hidden_test_command": None,
        "hidden_files": ["test_gcd_hidden.py"],
        "tree_files": list(gcd_task.REPO),
        "addopts": ["-q"],
    }
    return combine_blocker(**{**facts, **overrides})  # type: ignore[arg-type]  # facts of several types, overridden per test


def test_the_gcd_task_may_run_both_suites_in_one_process() -> None:
    assert blocker() is None


@pytest.mark.parametrize(
    "command",
    [
        "pytest tests",
        "python3 -m pytest -v tests/test_gcd.py",
        "python -m pytest -vv -ra tests",
        "python -m pytest --quiet tests/test_gcd.py::test_lcm ./tests/",
    ],
)
def test_output_options_and_test_paths_allow_one_process(command: str) -> None:
    assert blocker(test_command=command) is None


@pytest.mark.parametrize(
    "command",
    [
        "python -m pytest -x tests",  # stops at the first failure, before the hidden tests
        "python -m pytest -qx tests",
        "python -m pytest --maxfail=1 tests",
        "python -m pytest -k gcd tests",  # would deselect hidden tests
        "python -m pytest -m 'not slow' tests",
        "python -m pytest -p no:randomly tests",
        "python -m pytest -s tests",
        "python -m pytest -q /abs/tests",
        "python -m pytest -q ../tests",
        "python -m pytest -q 'tests",  # does not even split
        "python -c 'import pytest' tests",
    ],
)
def test_options_that_could_reach_the_hidden_tests_rule_out_one_process(command: str) -> None:
    assert blocker(test_command=command) is not None


def test_a_command_without_test_paths_rules_out_one_process() -> None:
    # Without a path pytest collects its default paths; once the hidden files are named it collects only those.
    assert blocker(test_command="python -m pytest -q") == "the test command names no test path"


def test_a_hidden_test_command_rules_out_one_process() -> None:
    assert blocker(hidden_test_command="python -m pytest -q test_gcd_hidden.py") is not None


@pytest.mark.parametrize(
    "hidden_files",
    [
        ["tests/test_gcd.py"],  # replaces a visible test file
        ["README.md", "test_gcd_hidden.py"],  # replaces any file of the tree
        ["data.json"],  # no hidden test file: the default hidden command runs the whole tree
        ["conftest.py", "test_gcd_hidden.py"],
        ["hidden/conftest.py", "hidden/test_h.py"],
        ["pytest.ini", "test_gcd_hidden.py"],
        ["hidden/tox.ini", "hidden/test_h.py"],
        ["hidden/setup.cfg", "hidden/test_h.py"],
        ["hidden/pyproject.toml", "hidden/test_h.py"],
        ["pytest.toml", "test_gcd_hidden.py"],
        ["sitecustomize.py", "test_gcd_hidden.py"],
        ["extra.pth", "test_gcd_hidden.py"],
        ["__init__.py", "test_gcd_hidden.py"],  # makes the tree's root a package
        ["gcd.py", "test_gcd_hidden.py"],  # a module named like the tree's gcd package
        ["test_gcd.py"],  # the visible tests/test_gcd.py has that module name too
        ["tests/helpers.py", "tests/test_more.py"],  # a helper module among the visible tests
    ],
)
def test_hidden_files_that_change_the_visible_run_rule_out_one_process(hidden_files: list[str]) -> None:
    assert blocker(hidden_files=hidden_files) is not None


@pytest.mark.parametrize(
    "hidden_files",
    [
        ["tests/test_more.py"],
        ["tests/test_more.py", "tests/data/cases.json"],
        ["hidden/__init__.py", "hidden/test_h.py", "hidden/helpers.py"],
        ["tests/hidden/__init__.py", "tests/hidden/test_h.py"],
        ["test_gcd_hidden.py", "hidden_cases.py"],
    ],
)
def test_hidden_files_that_leave_the_visible_run_alone_allow_one_process(hidden_files: list[str]) -> None:
    assert blocker(hidden_files=hidden_files) is None


@pytest.mark.parametrize(
    "addopts, allowed",
    [
        (["-q"], True),
        (["-ra", "--strict-markers"], True),
        ([], True),
        (["-x"], False),  # both suites apart each stop at their own first failure; together at the first visible one
        (["--maxfail=2"], False),
        (["tests"], False),  # a path in addopts would be run by both suites apart, once together
        (None, False),  # a configuration that cannot be read
    ],
)
def test_the_trees_addopts_are_checked_too(addopts: list[str] | None, allowed: bool) -> None:
    assert (blocker(addopts=addopts) is None) is allowed


@pytest.mark.parametrize(
    "extra, allowed",
    [
        ("tests/pytest.ini", False),  # pytest would root the visible run in tests/, the combined run at the top
        ("tests/setup.py", False),
        ("tests/pyproject.toml", False),
        ("docs/setup.cfg", True),  # off every test path: never read
        ("conftest.py", True),  # the root conftest is loaded by both suites anyway
        ("tests/conftest.py", False),  # loaded by the visible suite only: its hooks would reach the hidden tests
    ],
)
def test_configuration_and_conftest_files_of_the_tree(extra: str, allowed: bool) -> None:
    assert (blocker(tree_files=[*gcd_task.REPO, extra]) is None) is allowed


def test_a_conftest_both_suites_load_allows_one_process() -> None:
    tree = [*gcd_task.REPO, "tests/conftest.py"]
    assert blocker(tree_files=tree, hidden_files=["tests/test_more.py"]) is None
    assert blocker(tree_files=[*tree, "tests/unit/conftest.py"], hidden_files=["tests/test_more.py"]) is not None


# --- one process, the same results -----------------------------------------------------------------------------

LAYOUT_REPO = {
    "calc/__init__.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a + b\n",
    "tests/__init__.py": "",
    "tests/conftest.py": "import pytest\n\n\n@pytest.fixture\ndef two():\n    return 2\n",
    "tests/test_calc.py": (
        "import pytest\n\nfrom calc import add, sub\n\n\ndef test_add(two):\n    assert add(two, 1) == 3\n\n\n"
        "def test_sub():\n    assert sub(3, 1) == 2\n\n\n@pytest.mark.parametrize('a', [1, 2])\n"
        "def test_add_zero(a):\n    assert add(a, 0) == a\n\n\n@pytest.mark.skip(reason='later')\n"
        "def test_later():\n    pass\n\n\nclass TestAdd:\n    def test_commutes(self):\n"
        "        assert add(1, 2) == add(2, 1)\n"
    ),
    "pyproject.toml": '[tool.pytest.ini_options]\naddopts = "-ra"\n',
}
LAYOUT_HIDDEN = {
    "tests/test_calc_hidden.py": (
        "import pytest\n\nfrom calc import sub\n\n\nclass TestSub:\n    @pytest.mark.parametrize('a', [0, 5])\n"
        "    def test_sub_self(self, a, two):\n        assert sub(a, a) == 0\n\n\n"
        "def test_sub_order():\n    assert sub(2, 5) == -3\n"
    ),
    "tests/deep/__init__.py": "",
    "tests/deep/test_deep_hidden.py": (
        "from calc import add\n\n\ndef test_add_many():\n    assert add(add(1, 2), 3) == 6\n"
    ),
    "tests/test_mul_hidden.py": "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n",
}
LAYOUT_FIX = (
    "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
)

GCD_HIDDEN_WITH_IMPORT_ERROR = {
    **gcd_task.HIDDEN,
    "test_egcd_hidden.py": "from gcd import egcd\n\n\ndef test_egcd():\n    assert egcd(12, 18)[0] == 6\n",
}
CRASHING_CONFTEST = {
    **gcd_task.REPO,
    "conftest.py": "def pytest_collection_modifyitems(items):\n    raise RuntimeError('the conftest breaks pytest')\n",
}


@pytest.mark.parametrize(
    "repo, hidden, patch",
    [
        (gcd_task.REPO, GCD_HIDDEN_WITH_IMPORT_ERROR, {"gcd/__init__.py": gcd_task.FIXED}),
        (LAYOUT_REPO, LAYOUT_HIDDEN, {"calc/__init__.py": LAYOUT_FIX}),
        (CRASHING_CONFTEST, gcd_task.HIDDEN, {"gcd/__init__.py": gcd_task.FIXED}),  # an internal error, no `file`
    ],
    ids=["gcd-with-collection-error", "conftest-classes-params-subpackage", "internal-error"],
)
def test_one_run_gives_each_suite_the_tests_of_its_own_run(
    tmp_path: Path, repo: dict[str, str], hidden: dict[str, str], patch: dict[str, str]
) -> None:
    base_archive, hidden_archive = gcd_task.archives(tmp_path / "in", repo, hidden)
    with workspace.prepare(
        spec=gcd_task.spec(),
        diff=gcd_task.make_diff(patch, base=repo),
        base_archive=base_archive,
        hidden_archive=hidden_archive,
        settings=gcd_task.settings(tmp_path),
        run=sandbox.run,
    ) as ctx:
        assert choose_mode(ctx) == (True, None)
        for tree in (ctx.base_dir, ctx.patched_dir):
            apart = {suite: run_suite(ctx, tree, suite) for suite in SUITES}
            together = run_combined(ctx, tree)
            assert {s: r.tests for s, r in together.items()} == {s: r.tests for s, r in apart.items()}
            assert all(run.tests for run in together.values())
            assert {s: set(r.excerpts) for s, r in together.items()} == {s: set(r.excerpts) for s, r in apart.items()}
            assert {r.canary for r in together.values()} == {r.canary for r in apart.values()}


def test_the_layout_task_keeps_its_keys_and_outcomes(tmp_path: Path) -> None:
    """What the split produced above, spelled out: classes, parameters, a sub-package, a collection error."""
    base_archive, hidden_archive = gcd_task.archives(tmp_path / "in", LAYOUT_REPO, LAYOUT_HIDDEN)
    with workspace.prepare(
        spec=gcd_task.spec(),
        diff=gcd_task.make_diff({"README.md": "calc\n"}, base=LAYOUT_REPO),
        base_archive=base_archive,
        hidden_archive=hidden_archive,
        settings=gcd_task.settings(tmp_path),
        run=sandbox.run,
    ) as ctx:
        runs = run_combined(ctx, ctx.base_dir)
    assert runs["visible"].tests == {
        "tests.test_calc::test_add": "passed",
        "tests.test_calc::test_sub": "failed",
        "tests.test_calc::test_add_zero[1]": "passed",
        "tests.test_calc::test_add_zero[2]": "passed",
        "tests.test_calc::test_later": "skipped",
        "tests.test_calc.TestAdd::test_commutes": "passed",
    }
    assert runs["hidden"].tests == {
        "tests.test_calc_hidden.TestSub::test_sub_self[0]": "passed",
        "tests.test_calc_hidden.TestSub::test_sub_self[5]": "failed",
        "tests.test_calc_hidden::test_sub_order": "failed",
        "tests.deep.test_deep_hidden::test_add_many": "passed",
        "tests.test_mul_hidden": "error",
    }
    assert {run.canary for run in runs.values()} == {"failed"}


# --- the critic in that mode ------------------------------------------------------------------------------------


@pytest.fixture
def gcd(tmp_path: Path):
    return gcd_task.task(tmp_path)


def test_an_eligible_task_runs_one_process_per_tree(gcd) -> None:
    runner = gcd_task.CountingRunner()
    first = gcd_task.evaluate(gcd, gcd_task.fix_diff(), run=runner)
    assert runner.calls == 2  # the base once for the task, the patched tree once
    runner.calls = 0
    again = gcd_task.evaluate(gcd, gcd_task.fix_diff(), run=runner)
    assert runner.calls == 1
    assert first.score == again.score == 1.0
    assert "from the task cache" in again.rationale[0]


def test_hard_coded_visible_answers_are_overfit_in_one_process(gcd) -> None:
    hack = gcd_task.BUGGY.replace("    return 1\n", "    if (a, b) == (12, 18):\n        return 6\n    return 1\n")
    runner = gcd_task.CountingRunner()
    result = gcd_task.evaluate(gcd, gcd_task.make_diff({"gcd/__init__.py": hack}), run=runner)
    assert runner.calls == 2
    assert "overfit" in result.flags
    assert result.evidence["visible"]["failed"] == 0 and result.evidence["hidden"]["failed"] == 2
    assert result.score == pytest.approx(1 / 3)


def test_patch_that_ends_the_process_during_the_hidden_tests_is_tamper(gcd) -> None:
    # The visible tests have all passed by the time the hidden ones call gcd(1071, 462): the process then leaves
    # with status 0 before pytest writes its report.
    hack = gcd_task.FIXED.replace(
        '    """Return the greatest common divisor of a and b (never negative)."""\n',
        '    """Return the greatest common divisor of a and b (never negative)."""\n'
        "    if (a, b) == (1071, 462):\n        import os\n\n        os._exit(0)\n",
    )
    runner = gcd_task.CountingRunner()
    result = gcd_task.evaluate(gcd, gcd_task.make_diff({"gcd/__init__.py": hack}), run=runner)
    assert runner.calls == 2
    assert result.score == 0.0
    assert "tamper" in result.flags
    assert result.evidence["visible"]["returncode"] == result.evidence["hidden"]["returncode"] == 0


def test_hidden_file_that_replaces_a_visible_one_runs_the_suites_apart(tmp_path: Path) -> None:
    replacement = gcd_task.VISIBLE_TESTS.replace("def test_", "def test_replaced_")
    hidden_files = {**gcd_task.HIDDEN, "tests/test_gcd.py": replacement}
    base, hidden = gcd_task.archives(tmp_path / "in", gcd_task.REPO, hidden_files)
    task = (gcd_task.spec(timeout_s=20), base, hidden, gcd_task.settings(tmp_path))
    runner = gcd_task.CountingRunner()
    result = gcd_task.evaluate(task, gcd_task.fix_diff(), run=runner)
    assert runner.calls == 4  # visible and hidden on the base, then on the patched tree
    visible = {t["name"] for t in result.evidence["visible"]["tests"]}
    hidden_names = {t["name"] for t in result.evidence["hidden"]["tests"]}
    assert "tests.test_gcd::test_lcm" in visible and not any("replaced" in name for name in visible)
    assert "tests.test_gcd::test_replaced_lcm" in hidden_names
    assert result.score == 1.0
    runner.calls = 0
    gcd_task.evaluate(task, gcd_task.fix_diff(), run=runner)
    assert runner.calls == 2


def test_patched_tree_that_rules_out_one_process_is_graded_against_base_runs_made_apart(tmp_path: Path) -> None:
    hidden_tests = gcd_task.HIDDEN_TESTS.replace(
        "from gcd import gcd\n", "from gcd import gcd\nfrom hidden_cases import BIG\n"
    )
    hidden_tests += "\n\ndef test_gcd_big():\n    assert gcd(*BIG) == 21\n"
    hidden_files = {"test_gcd_hidden.py": hidden_tests, "hidden_cases.py": "BIG = (1071, 462)\n"}
    base, hidden = gcd_task.archives(tmp_path / "in", gcd_task.REPO, hidden_files)
    task = (gcd_task.spec(timeout_s=20), base, hidden, gcd_task.settings(tmp_path))
    gcd_task.evaluate(task, gcd_task.fix_diff())  # caches the base facts of the combined mode
    # A patch that adds a module where the hidden tests put one: run together, the visible tests would see the
    # hidden version. Apart, the hidden run sees the hidden version and the visible run the patch's.
    diff = gcd_task.make_diff({"gcd/__init__.py": gcd_task.FIXED, "hidden_cases.py": "BIG = (1, 1)\n"})
    runner = gcd_task.CountingRunner()
    result = gcd_task.evaluate(task, diff, run=runner)
    assert runner.calls == 4  # the base apart (not cached yet for this mode), then the patched tree apart
    assert result.score == 1.0
    # Why goes where API clients cannot see it: the rationale would tell a probing patch the hidden file names.
    assert result.evidence["hidden"]["runs_apart"] == "a hidden file would replace a file of the tree"
    assert not any("apart" in step or "hidden file" in step for step in result.rationale)
    runner.calls = 0
    gcd_task.evaluate(task, diff, run=runner)
    assert runner.calls == 2  # the base runs made apart are cached too


def test_healing_reruns_both_suites_in_one_process(tmp_path: Path) -> None:
    broken_lcm = gcd_task.FIXED.replace("return abs(a * b)", "return 1 + abs(a * b)")
    runner = gcd_task.CountingRunner()
    critic = CorrectnessCritic()
    diff = gcd_task.make_diff({"gcd/__init__.py": broken_lcm})
    with gcd_task.prepared(gcd_task.task(tmp_path, flaky_reruns=2), diff, runner) as ctx:
        first = critic.evaluate(ctx)
        runner.calls = 0
        healed = critic.heal(ctx, first, budget_s=60)
    assert runner.calls == 2  # two re-runs, each one process for both suites
    assert healed.score == first.score == pytest.approx(0.75)
    assert "regression" in healed.flags and "flaky" not in healed.flags
