"""The demo tasks and patches are sound data: every patch is a valid diff that applies, every task has a bug.

This checks the data shipped in scoring/demo with real git and real pytest, outside the sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.core.intake.diffcheck import check_paths_exist, parse_diff
from scoring.core.intake.spec import parse_spec

DEMO = Path(__file__).resolve().parents[3] / "scoring" / "demo"
MANIFEST = json.loads((DEMO / "manifest.json").read_text())
TASKS = {task["name"]: task for task in MANIFEST["tasks"]}
ENTRIES = [(task["name"], entry) for task in MANIFEST["tasks"] for entry in task["patches"]]


# The task's commands run as a task author would: no plugins from this project's venv, no Django settings.
CLEAN_ENV = {"PATH": os.environ["PATH"], "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run(argv: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, input=stdin, env=CLEAN_ENV, capture_output=True, text=True, timeout=120, check=False
    )


def task_copy(name: str, tmp_path: Path, *, with_hidden: bool = False) -> Path:
    """A private copy of the task's base repository (plus its hidden tests when asked)."""
    spec = parse_spec(json.loads((DEMO / TASKS[name]["spec"]).read_text()), spec_dir=DEMO / "tasks" / name)
    tree = tmp_path / name
    shutil.copytree(spec.repo, tree)
    if with_hidden:
        shutil.copytree(spec.hidden_tests, tree, dirs_exist_ok=True)
    return tree


def pytest_run(tree: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets], tree)


def test_manifest_covers_every_kind_for_three_tasks() -> None:
    assert len(TASKS) == 3
    for task in MANIFEST["tasks"]:
        kinds = {entry["kind"] for entry in task["patches"]}
        assert {"good", "bad", "cheating", "borderline"} <= kinds or {"good", "cheating", "borderline"} <= kinds
        assert 4 <= len(task["patches"]) <= 6
        assert all(entry["description"] and entry["kind"] in MANIFEST["kinds"] for entry in task["patches"])


@pytest.mark.parametrize(("name", "entry"), ENTRIES, ids=[entry["file"] for _, entry in ENTRIES])
def test_demo_patch_is_a_valid_diff_that_applies_to_its_repo(name: str, entry: dict, tmp_path: Path) -> None:
    tree = task_copy(name, tmp_path)
    text = (DEMO / entry["file"]).read_text()
    parsed = parse_diff(text)
    check_paths_exist(parsed, tree)
    applied = run(["git", "apply", "--check"], tree, stdin=text)
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize("name", sorted(TASKS))
def test_base_repo_fails_a_visible_test_and_the_good_patch_passes_everything(name: str, tmp_path: Path) -> None:
    tree = task_copy(name, tmp_path, with_hidden=True)
    hidden = sorted(path.name for path in tree.glob("test_hidden_*.py"))
    assert hidden
    base = pytest_run(tree, "tests")
    assert base.returncode == 1 and " failed" in base.stdout, base.stdout
    good = next(entry for entry in TASKS[name]["patches"] if entry["kind"] == "good")
    applied = run(["git", "apply"], tree, stdin=(DEMO / good["file"]).read_text())
    assert applied.returncode == 0, applied.stderr
    patched = pytest_run(tree, "tests", *hidden)
    assert patched.returncode == 0, patched.stdout


@pytest.mark.parametrize("name", sorted(TASKS))
def test_benchmark_prints_seconds_on_its_last_line_in_well_under_a_second(name: str, tmp_path: Path) -> None:
    tree = task_copy(name, tmp_path)
    spec = parse_spec(json.loads((DEMO / TASKS[name]["spec"]).read_text()), spec_dir=DEMO / "tasks" / name)
    argv = spec.argv(spec.benchmark_command or "")
    result = run([sys.executable, *argv[1:]], tree)
    assert result.returncode == 0, result.stderr
    seconds = json.loads(result.stdout.strip().splitlines()[-1])["seconds"]
    assert 0 < seconds < 1.0
