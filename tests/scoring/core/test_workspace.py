"""Workspace: cached base trees and environments, strict application of the diff, and the reverts."""

from __future__ import annotations

import stat
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest

from scoring.core.intake.diffcheck import DiffError
from scoring.core.sandbox import process as sandbox
from scoring.core.sandbox import workspace
from tests.scoring.core.fixtures import gcd_task


@pytest.fixture
def task(tmp_path: Path):
    base, hidden = gcd_task.archives(tmp_path / "in")
    return gcd_task.spec(protected_paths=["data/**"], lint_config="lint/pylintrc"), base, hidden, tmp_path


def prepared(task, diff: str):
    spec, base, hidden, root = task
    return workspace.prepare(
        spec=spec,
        diff=diff,
        base_archive=base,
        hidden_archive=hidden,
        settings=gcd_task.settings(root),
        run=sandbox.run,
    )


def test_base_tree_is_extracted_once_and_read_only(tmp_path: Path) -> None:
    base, _ = gcd_task.archives(tmp_path / "in")
    first = workspace.base_tree(base, cache_root=tmp_path / "cache")
    second = workspace.base_tree(base, cache_root=tmp_path / "cache")
    assert first == second
    assert (first / "gcd" / "__init__.py").read_text() == gcd_task.BUGGY
    assert not any(p.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) for p in [first, *first.rglob("*")])


def test_concurrent_base_tree_requests_agree(tmp_path: Path) -> None:
    base, _ = gcd_task.archives(tmp_path / "in")
    found: list[Path] = []
    threads = [
        threading.Thread(target=lambda: found.append(workspace.base_tree(base, cache_root=tmp_path / "cache")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1
    # One tree and its check repository, nothing left over from the losers of the race.
    names = sorted(p.name for p in (tmp_path / "cache" / "bases").iterdir())
    assert names == [found[0].name, found[0].name + ".check.git"]
    workspace.check_applies(gcd_task.fix_diff(), found[0])


def _wheel(dest: Path) -> Path:
    """A minimal pure-Python wheel, so installing needs no network."""
    path = dest / "tinydep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("tinydep/__init__.py", "VALUE = 7\n")
        wheel.writestr("tinydep-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n")
        wheel.writestr(
            "tinydep-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr("tinydep-1.0.dist-info/RECORD", "")
    return path


def test_task_env_installs_once_per_requirement_set(tmp_path: Path) -> None:
    assert workspace.task_env([], cache_root=tmp_path, timeout_s=60) is None
    wheel = _wheel(tmp_path)
    env = workspace.task_env([str(wheel)], cache_root=tmp_path / "cache", timeout_s=120)
    assert (env / "tinydep" / "__init__.py").is_file()
    assert workspace.task_env([str(wheel)], cache_root=tmp_path / "cache", timeout_s=120) == env
    tree = tmp_path / "tree"
    tree.mkdir()
    result = sandbox.run(["python", "-c", "import tinydep; print(tinydep.VALUE)"], tree=tree, env_dir=env)
    assert result.output == "7\n"


def test_task_env_that_cannot_install_says_so(tmp_path: Path) -> None:
    with pytest.raises(workspace.WorkspaceError, match="do not install"):
        workspace.task_env([str(tmp_path / "missing.whl")], cache_root=tmp_path, timeout_s=60)


def test_check_applies_reports_gits_reason_without_host_paths(tmp_path: Path) -> None:
    base, _ = gcd_task.archives(tmp_path / "in")
    tree = workspace.base_tree(base, cache_root=tmp_path / "cache")
    workspace.check_applies(gcd_task.fix_diff(), tree)
    stale = gcd_task.make_diff({"gcd/__init__.py": "x = 1\n"}, base={"gcd/__init__.py": "y = 2\n"})
    with pytest.raises(DiffError, match="does not apply") as caught:
        workspace.check_applies(stale, tree)
    assert str(tree) not in str(caught.value)


def test_patch_is_applied_to_a_private_copy_without_git_history(task) -> None:
    with prepared(task, gcd_task.fix_diff()) as ctx:
        assert (ctx.patched_dir / "gcd" / "__init__.py").read_text() == gcd_task.FIXED
        assert (ctx.base_dir / "gcd" / "__init__.py").read_text() == gcd_task.BUGGY
        assert not list(ctx.patched_dir.rglob(".git"))
        assert ctx.changed_files == ("gcd/__init__.py",)
        assert ctx.added_lines["gcd/__init__.py"] == frozenset({8, 9, 10, 11})
        assert ctx.flags == frozenset()
        patched = ctx.patched_dir
    assert not patched.exists()


def test_patch_applies_relative_to_the_tree_even_inside_a_git_checkout(task) -> None:
    _spec, _base, _hidden, root = task
    subprocess.run(["git", "init", "-q", str(root)], check=True, timeout=30)
    with prepared(task, gcd_task.fix_diff()) as ctx:
        assert (ctx.patched_dir / "gcd" / "__init__.py").read_text() == gcd_task.FIXED


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("conftest.py", "x = 1\n"),
        ("gcd/conftest.py", "x = 1\n"),
        ("pytest.ini", "[pytest]\n"),
        ("tox.ini", "[tox]\n"),
        ("sitecustomize.py", "x = 1\n"),
        ("gcd/evil.pth", "import os\n"),
        (".pylintrc", "[MESSAGES CONTROL]\ndisable=all\n"),
        ("lint/pylintrc", "[MESSAGES CONTROL]\ndisable=all\n"),
        ("data/answers.json", "{}\n"),
        ("evil-1.0.dist-info/entry_points.txt", "[pytest11]\nevil = gcd\n"),
    ],
)
def test_added_infrastructure_is_deleted_and_flagged_tamper(task, path: str, text: str) -> None:
    with prepared(task, gcd_task.make_diff({path: text, "gcd/__init__.py": gcd_task.FIXED})) as ctx:
        assert not (ctx.patched_dir / path).exists()
        assert "tamper" in ctx.flags
        assert ctx.changed_files == ("gcd/__init__.py",)
        assert any(path in note and "tamper" in note for note in ctx.notes)


def test_pyproject_edit_outside_tool_sections_stands(task) -> None:
    edited = gcd_task.REPO["pyproject.toml"].replace('version = "0.1"', 'version = "0.2"')
    with prepared(task, gcd_task.make_diff({"pyproject.toml": edited})) as ctx:
        assert ctx.flags == frozenset()
        assert 'version = "0.2"' in (ctx.patched_dir / "pyproject.toml").read_text()


def test_pyproject_pytest_section_edit_is_reverted(task) -> None:
    edited = gcd_task.REPO["pyproject.toml"].replace('addopts = "-q"', 'addopts = "-x"')
    with prepared(task, gcd_task.make_diff({"pyproject.toml": edited})) as ctx:
        assert "tamper" in ctx.flags
        assert (ctx.patched_dir / "pyproject.toml").read_text() == gcd_task.REPO["pyproject.toml"]


def test_edited_added_and_deleted_tests_are_reverted(task) -> None:
    diff = gcd_task.make_diff(
        {
            "tests/test_gcd.py": None,
            "tests/test_more.py": "def test_x():\n    pass\n",
            "gcd/helper_test.py": "x = 1\n",
            "gcd/__init__.py": gcd_task.FIXED,
        }
    )
    with prepared(task, diff) as ctx:
        assert (ctx.patched_dir / "tests" / "test_gcd.py").read_text() == gcd_task.VISIBLE_TESTS
        assert not (ctx.patched_dir / "tests" / "test_more.py").exists()
        assert not (ctx.patched_dir / "gcd" / "helper_test.py").exists()
        assert ctx.flags == frozenset({"tests_modified"})
        assert ctx.changed_files == ("gcd/__init__.py",)
        assert len(ctx.notes) == 3


def test_deleted_source_files_are_listed(task) -> None:
    with prepared(task, gcd_task.make_diff({"README.md": None})) as ctx:
        assert ctx.deleted_files == ("README.md",)
        assert ctx.changed_files == ()


def test_task_cache_dir_depends_on_the_spec(task) -> None:
    _spec, base, hidden, root = task
    with prepared(task, gcd_task.fix_diff()) as ctx:
        first = ctx.task_cache_dir
    other = (gcd_task.spec(test_command="python -m pytest tests"), base, hidden, root)
    with prepared(other, gcd_task.fix_diff()) as ctx:
        assert ctx.task_cache_dir != first
        assert ctx.task_cache_dir.parent == first.parent


#: The gcd task without its pyproject.toml: pytest then reads the first configuration file a patch adds.
BARE = {path: text for path, text in gcd_task.REPO.items() if path != "pyproject.toml"}


@pytest.fixture
def bare_task(tmp_path: Path):
    base, hidden = gcd_task.archives(tmp_path / "in", repo=BARE)
    return gcd_task.spec(), base, hidden, tmp_path


def rename(old: str, new: str, old_text: str, new_text: str) -> str:
    """A git rename diff from `old` to `new` that also rewrites the content."""
    minus = "".join(f"-{line}\n" for line in old_text.splitlines())
    plus = "".join(f"+{line}\n" for line in new_text.splitlines())
    return (
        f"diff --git a/{old} b/{new}\nsimilarity index 10%\nrename from {old}\nrename to {new}\n"
        f"--- a/{old}\n+++ b/{new}\n@@ -1,{len(old_text.splitlines())} +1,{len(new_text.splitlines())} @@\n"
        + minus
        + plus
    )


ADDED_CONFIGURATION = {
    "setup.cfg [tool:pytest]": ("setup.cfg", "[metadata]\nname = gcd\n\n[tool:pytest]\naddopts = -p evil\n"),
    "setup.cfg [pytest]": ("setup.cfg", "[pytest]\naddopts = -p evil\n"),
    "setup.cfg [pylint]": ("setup.cfg", "[pylint.messages control]\ndisable = all\n"),
    "nested setup.cfg": ("gcd/setup.cfg", "[tool:pytest]\naddopts = -p evil\n"),
    "pyproject ini_options": (
        "pyproject.toml",
        '[project]\nname = "gcd"\n\n[tool.pytest.ini_options]\naddopts = "-p evil"\n',
    ),
    "pyproject native": ("pyproject.toml", '[tool.pytest]\naddopts = ["-p", "evil"]\n'),
    "pyproject dotted keys": ("pyproject.toml", 'tool.pytest.ini_options.addopts = "-p evil"\n'),
    "pyproject pylint": ("pyproject.toml", '[tool.pylint."messages control"]\ndisable = "all"\n'),
    "pyproject bandit": ("pyproject.toml", '[tool.bandit]\nskips = ["B101"]\n'),
}


@pytest.mark.parametrize(("path", "text"), ADDED_CONFIGURATION.values(), ids=ADDED_CONFIGURATION)
def test_added_test_or_lint_configuration_is_deleted_and_flagged_tamper(bare_task, path: str, text: str) -> None:
    diff = gcd_task.make_diff({path: text, "evil.py": "X = 1\n", "gcd/__init__.py": gcd_task.FIXED}, base=BARE)
    with prepared(bare_task, diff) as ctx:
        assert not (ctx.patched_dir / path).exists()
        assert "tamper" in ctx.flags
        assert set(ctx.changed_files) == {"evil.py", "gcd/__init__.py"}
        assert any(f"Reverted added {path} and flagged tamper" in note for note in ctx.notes), ctx.notes


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("setup.cfg", "[tool:pytest]\naddopts = -p evil\n"),
        ("pyproject.toml", '[tool.pytest]\naddopts = ["-p", "evil"]\n'),
        ("pytest.ini", "[pytest]\naddopts = -p evil\n"),
        ("tox.ini", "[pytest]\naddopts = -p evil\n"),
        ("gcd/conftest.py", "X = 1\n"),
    ],
)
def test_configuration_renamed_into_place_is_reverted_and_flagged_tamper(bare_task, name: str, text: str) -> None:
    with prepared(bare_task, rename("README.md", name, BARE["README.md"], text)) as ctx:
        assert not (ctx.patched_dir / name).exists()
        assert (ctx.patched_dir / "README.md").read_text() == BARE["README.md"]
        assert "tamper" in ctx.flags
        assert any(f"renamed README.md -> {name}" in note for note in ctx.notes), ctx.notes


def test_pytest_configuration_renamed_away_is_restored_and_flagged_tamper(task) -> None:
    pyproject = gcd_task.REPO["pyproject.toml"]
    with prepared(task, rename("pyproject.toml", "notes.toml", pyproject, '[project]\nname = "gcd"\n')) as ctx:
        assert (ctx.patched_dir / "pyproject.toml").read_text() == pyproject
        assert not (ctx.patched_dir / "notes.toml").exists()
        assert "tamper" in ctx.flags


def test_deleting_the_pyproject_that_configures_pytest_is_reverted_and_flagged_tamper(task) -> None:
    with prepared(task, gcd_task.make_diff({"pyproject.toml": None})) as ctx:
        assert (ctx.patched_dir / "pyproject.toml").read_text() == gcd_task.REPO["pyproject.toml"]
        assert "tamper" in ctx.flags


UNREADABLE = {
    "invalid TOML": ("pyproject.toml", "[tool.pytest.ini_options\naddopts = '-p evil'\n"),
    "TOML nested past the recursion limit": ("pyproject.toml", "x = " + "[" * 1000 + "]" * 1000 + "\n"),
    "[tool] not a table": ("pyproject.toml", 'tool = "pytest"\n'),
    "setup.cfg duplicate sections": ("setup.cfg", "[tool:pytest]\naddopts = -q\n[tool:pytest]\naddopts = -p evil\n"),
    "setup.cfg pytest cannot parse": ("setup.cfg", "  addopts = -p evil\n[tool:pytest]\n"),
    "setup.cfg configparser cannot parse": ("setup.cfg", "[metadata]\nname = a\nname = b\n"),
}


@pytest.mark.parametrize(("path", "text"), UNREADABLE.values(), ids=UNREADABLE)
def test_added_configuration_that_does_not_parse_is_hostile_not_absent(bare_task, path: str, text: str) -> None:
    with prepared(bare_task, gcd_task.make_diff({path: text, "gcd/__init__.py": gcd_task.FIXED}, base=BARE)) as ctx:
        assert not (ctx.patched_dir / path).exists()
        assert "tamper" in ctx.flags
        assert ctx.changed_files == ("gcd/__init__.py",)
        assert any(f"{path} is not" in note or f"{path} has a" in note for note in ctx.notes), ctx.notes


@pytest.mark.parametrize("text", [v[1] for k, v in UNREADABLE.items() if v[0] == "pyproject.toml"])
def test_an_edit_that_makes_pyproject_unparseable_is_reverted_and_flagged_tamper(task, text: str) -> None:
    edited = gcd_task.REPO["pyproject.toml"] + text
    with prepared(task, gcd_task.make_diff({"pyproject.toml": edited})) as ctx:
        assert (ctx.patched_dir / "pyproject.toml").read_text() == gcd_task.REPO["pyproject.toml"]
        assert "tamper" in ctx.flags


HONEST = {
    "pyproject.toml": (
        '[project]\nname = "gcd"\nversion = "0.2"\ndependencies = ["attrs"]\n\n[tool.ruff]\nline-length = 100\n'
    ),
    "setup.cfg": "[metadata]\nname = gcd\n\n[flake8]\nmax-line-length = 100\n",
}


@pytest.mark.parametrize("path", sorted(HONEST))
def test_added_configuration_without_test_or_lint_sections_stands(bare_task, path: str) -> None:
    with prepared(bare_task, gcd_task.make_diff({path: HONEST[path]}, base=BARE)) as ctx:
        assert ctx.flags == frozenset()
        assert ctx.changed_files == (path,)
        assert (ctx.patched_dir / path).read_text() == HONEST[path]


def test_pyproject_dependency_edit_stands(task) -> None:
    edited = gcd_task.REPO["pyproject.toml"].replace('version = "0.1"\n', 'version = "0.1"\ndependencies = ["attrs"]\n')
    with prepared(task, gcd_task.make_diff({"pyproject.toml": edited})) as ctx:
        assert ctx.flags == frozenset()
        assert ctx.changed_files == ("pyproject.toml",)
