"""When the visible and hidden suites of a task can share one pytest process, and the file facts that decide it.

Pure: no sandbox, no Django. scoring.core.critics.correctness.critic runs the two suites as one process when
`combine_blocker` finds nothing that one process could change, and splits the report back by each test's file.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from scoring.core.intake import configread
from scoring.core.intake.configread import ConfigError
from scoring.core.intake.spec import PYTEST_PREFIXES

#: Options that change only what pytest prints; `-r<chars>` (the summary) too, see `_combinable_option`.
_OUTPUT_OPTIONS = frozenset({"-q", "-qq", "--quiet", "-v", "-vv", "--verbose"})
#: Options that the tree's configuration (addopts) may carry in a combined run: they already apply to both
#: suites when they run apart, and what they do to a test does not depend on the other tests in the process.
_SHARED_OPTIONS = frozenset({"--strict-markers", "--strict-config", "--strict"})
#: Files pytest reads to choose its rootdir and configuration (pytest 9 reads pytest.toml first).
_PYTEST_CONFIG_NAMES = frozenset(
    {"pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", "setup.py"}
)
#: Files that change every test in the process just by being there.
_PROCESS_WIDE_NAMES = _PYTEST_CONFIG_NAMES | {"conftest.py", "sitecustomize.py", "usercustomize.py"}


def combine_blocker(
    *,
    test_command: str,
    hidden_test_command: str | None,
    hidden_files: Collection[str],
    tree_files: Collection[str],
    addopts: Sequence[str] | None,
) -> str | None:
    """Why the visible and hidden suites must run as two pytest processes on this tree; None when one will do.

    Pure. Paths are relative posix paths: `hidden_files` every file of the hidden tests, `tree_files` every file
    of the tree they are overlaid on; `addopts` the options of the tree's root pytest configuration (None when it
    cannot be read). One process gives each suite the per-test results of its own run only if nothing in it
    depends on the other suite's files being there or being named. Each rule closes one way that could happen:

    - a `hidden_test_command` may carry options and paths of its own: only the default (pytest on the hidden
      test files) can be appended to the visible command;
    - with no hidden test file the default hidden command runs pytest without a path, that is on the whole tree;
    - the visible command must be plain pytest with test paths and output-only options (-q, -v, -vv, -r...):
      any other option would now reach the hidden tests too (-x and --maxfail stop before them, -k, -m, -p, -s
      select or change them), and without a path pytest collects its default paths only as long as no file is
      named, so appending the hidden files would drop the visible tests;
    - the tree's addopts already apply to both runs, so only the output options and a few whose effect on a
      test does not depend on its neighbours pass (-x there would stop the combined run at a visible failure);
    - a hidden file at a path of the tree replaces that file for the visible tests too;
    - a hidden conftest.py, pytest or packaging configuration, sitecustomize.py, usercustomize.py or .pth file
      changes how every test in the process is collected, configured or run;
    - a hidden __init__.py in a folder of the tree turns it into a package: visible modules import differently;
    - a name the hidden tests add (module or folder) that the tree already uses: one interpreter holds one module
      per name, so the two would clash ("import file mismatch", or the other suite's module from sys.modules);
    - a hidden non-test module under a visible path could be collected there by the visible command;
    - a configuration file in a sub-folder on the way from a test path up to the root: pytest chooses its rootdir
      and configuration from the common folder of the paths, which the hidden paths would move (and with the
      rootdir, every test's name);
    - both suites must load the same conftest.py files: a conftest's hooks (pytest_collection_modifyitems) and its
      import-time side effects reach every test in the process, not only those below its folder.
    """
    if hidden_test_command:
        return "the task has its own hidden_test_command"
    hidden_tests = hidden_test_files(hidden_files)
    if not hidden_tests:
        return "the hidden tests add no test file"
    visible = _plain_pytest_paths(test_command)
    if visible is None:
        return "the test command has options that could change which hidden tests run or how"
    if not visible:
        return "the test command names no test path"
    if addopts is None or not all(_combinable_option(option, shared=True) for option in addopts):
        return "the tree's pytest configuration adds options (addopts) that could change how the hidden tests run"
    tree = frozenset(tree_files)
    folders = {folder for path in tree for folder in _folders(path)}
    names = {os.path.splitext(part)[0] for path in tree for part in path.split("/")}
    for path in sorted(hidden_files):  # sorted: the same task always gets the same reason
        pure = PurePosixPath(path)
        if path in tree:
            return "a hidden file would replace a file of the tree"
        if pure.name in _PROCESS_WIDE_NAMES or pure.suffix == ".pth":
            return "a hidden file configures pytest or Python for every test of the process"
        if pure.name == "__init__.py" and _folders(path)[0] in folders:
            return "a hidden __init__.py would change how the tree's modules are imported"
        if pure.suffix != ".py":
            continue
        added = _new_names(pure, folders)
        if (added - {"__init__"}) & names:
            return "a hidden module or folder has the name of a module of the tree"
        if pure.name != "__init__.py" and path not in hidden_tests and any(_within(path, arg) for arg in visible):
            return "a hidden helper module lies under a visible test path"
    args = [*visible, *hidden_tests]
    for path in sorted(tree):
        folder, _, name = path.rpartition("/")
        if name in _PYTEST_CONFIG_NAMES and folder and any(_within(arg, folder) for arg in args):
            return f"{path} would give the suites different pytest roots or configurations"
    conftests = [path for path in tree if path.rpartition("/")[2] == "conftest.py"]
    if _conftests_for(conftests, visible, folders) != _conftests_for(conftests, hidden_tests, folders):
        return "the suites load different conftest.py files, whose hooks would reach the other suite's tests"
    return None


def _plain_pytest_paths(command: str) -> list[str] | None:
    """The test paths of a pytest command ('' for the root), or None if it has an option beyond the output ones."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    prefix = next((p for p in PYTEST_PREFIXES if tuple(argv[: len(p)]) == p), None)
    if prefix is None:
        return None
    paths = []
    for token in argv[len(prefix) :]:
        if token.startswith("-"):
            if not _combinable_option(token, shared=False):
                return None
            continue
        path = PurePosixPath(token.split("::", 1)[0])
        if path.is_absolute() or ".." in path.parts or "\\" in token:
            return None
        paths.append(path.as_posix() if path.parts else "")
    return paths


def _combinable_option(token: str, *, shared: bool) -> bool:
    """True for an option that cannot change which tests run or how (`shared`: also those fine in addopts)."""
    if token in _OUTPUT_OPTIONS or re.fullmatch(r"-r[a-zA-Z]+", token):
        return True
    return shared and token in _SHARED_OPTIONS


def _new_names(path: PurePosixPath, folders: Collection[str]) -> set[str]:
    """The module names (file and folder stems) a hidden file adds: those of its parts the tree does not have."""
    return {
        os.path.splitext(part)[0] for i, part in enumerate(path.parts) if "/".join(path.parts[: i + 1]) not in folders
    }


def _folders(path: str) -> list[str]:
    """The folders that hold `path` (relative, posix, normalised), innermost first, the root as ''."""
    folders = []
    while path:
        path = path.rpartition("/")[0]
        folders.append(path)
    return folders


def _within(path: str, folder: str) -> bool:
    """True when `path` is `folder` or inside it ('' is the root, which holds everything)."""
    return not folder or path == folder or path.startswith(folder + "/")


def _conftests_for(conftests: Iterable[str], args: Iterable[str], folders: Collection[str]) -> set[str]:
    """The conftest.py files pytest loads for test paths `args`: those in a folder above or at each path, and for a
    folder argument every one below it too (collection imports them)."""
    args = list(args)
    return {
        conftest
        for conftest in conftests
        for arg in args
        if _within(arg, _folders(conftest)[0]) or (arg in folders and _within(conftest, arg))
    }


def hidden_test_files(files: Iterable[str]) -> list[str]:
    """The hidden files the default hidden command runs: test_*.py and *_test.py, sorted."""
    return sorted(path for path in files if re.fullmatch(r"test_.*\.py|.*_test\.py", PurePosixPath(path).name))


def tree_files(tree: Path) -> frozenset[str]:
    """Every file under `tree` (not folders), as relative posix paths."""
    found: set[str] = set()
    for folder, _dirs, names in os.walk(tree):
        relative = Path(folder).relative_to(tree).as_posix()
        found.update(name if relative == "." else f"{relative}/{name}" for name in names)
    return frozenset(found)


@functools.lru_cache(maxsize=32)
def cached_tree_files(tree: Path) -> frozenset[str]:
    """`_files` of a tree that never changes once made: the cached base and hidden trees, extracted read-only
    into a folder named after their content. Listing a large base for every patch would eat what one run saves."""
    return tree_files(tree)


def root_addopts(tree: Path) -> list[str] | None:
    """The addopts of every pytest configuration file at the root of `tree`, split; None if one cannot be read.

    All of them, not only the file pytest would pick: more options can only rule a combined run out. Total: a
    hostile file (scoring.core.intake.configread) or value (`addopts = 7`) gives None, never an exception.
    """
    options: list[str] = []
    for name in sorted(_PYTEST_CONFIG_NAMES - {"setup.py"}):
        try:
            text = configread.read_text(tree / name)
            values = _addopts_values(name, text) if text is not None else []
        except ConfigError:
            return None
        for value in values:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                return None
            try:
                options += [option for item in items for option in shlex.split(item)]
            except ValueError:  # unbalanced quotes: pytest would refuse them too
                return None
    return options


def _addopts_values(name: str, text: str) -> list[Any]:
    """The raw `addopts` values of one configuration file: TOML tables [tool.pytest], [tool.pytest.ini_options],
    [pytest] (pytest.toml) and its ini_options; ini sections [pytest] and [tool:pytest], as pytest's parser and
    configparser read them (both: the union can only rule more out). Raises ConfigError."""
    if name.endswith(".toml"):
        data = configread.load_toml(text)
        tables = [configread.table(data, "tool", "pytest"), configread.table(data, "pytest")]
        tables += [configread.table(table, "ini_options") for table in tables]
        return [table["addopts"] for table in tables if "addopts" in table]
    values = []
    for sections in (configread.pytest_ini_sections(text, path=name), configread.configparser_sections(text)):
        values += [sections[s]["addopts"] for s in ("pytest", "tool:pytest") if "addopts" in sections.get(s, {})]
    return values
