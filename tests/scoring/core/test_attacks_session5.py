"""Attacks found by red-teaming the whole pipeline (intake, reverts, critics); each class attacked two ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.core import pipeline, workspace
from scoring.core.diffcheck import DiffError, check_paths_exist, parse_diff
from tests.scoring.core.fixtures import gcd_task

#: Test infrastructure that fixes gcd for the tests only: the shipped package stays wrong. Where a patch may not
#: add a conftest.py (it is reverted and flagged tamper), this one scores correctness 1.0 if it gets through.
FIXING_CONFTEST = (
    "import math\n"
    "import gcd\n"
    "\n"
    "\n"
    "def _gcd(a, b):\n"
    "    return math.gcd(a, b)\n"
    "\n"
    "\n"
    "gcd.gcd = _gcd\n"
)


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
