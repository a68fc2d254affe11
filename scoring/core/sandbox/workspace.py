"""The trees a patch is scored on: cached base trees and task environments, and each patch's own patched copy.

`prepare` is the one entry point the pipeline uses. It applies the diff with strict `git apply` in a scratch
copy of the base (no git repository is ever created in or above the tree), then reverts what a patch may not
change: test files (flag `tests_modified`) and test or lint infrastructure (flag `tamper`). See
docs/correctness.md for the exact lists.

`check_applies` is the intake's question "does this diff apply to the base?". It asks libgit2 in-process first,
against a bare repository that `base_tree` keeps next to each base tree, and asks `git apply --check` whenever
libgit2 says no or git might answer differently, so git's verdict and git's message stand for every refusal.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import hashlib
import importlib.machinery
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from scoring.core.intake import applycheck, configread
from scoring.core.intake.archive import safe_extract, sha256_file
from scoring.core.intake.configread import ConfigError
from scoring.core.intake.diffcheck import DiffError, FileChange, ParsedDiff, parse_diff
from scoring.core.intake.spec import TaskSpec
from scoring.core.trees import make_read_only, remove_tree, scratch_copy
from scoring.core.types import PipelineSettings, Runner, ScoringContext
from scoring.core.versions import package_version

#: Bumped when what is cached per task changes meaning (the harness options, the base facts' format).
TASK_CACHE_FORMAT = 1
_GIT_TIMEOUT_S = 60
_TEST_DIRS = frozenset({"tests", "test", "testing"})
#: Files whose mere presence or edit changes how tests are collected, run or reported, wherever they are.
_INFRA_NAMES = frozenset(
    {
        "conftest.py",
        "pytest.ini",
        ".pytest.ini",
        "pytest.toml",  # pytest 9 reads these two first
        ".pytest.toml",
        "tox.ini",
        "sitecustomize.py",
        "usercustomize.py",
        "pylintrc",
        ".pylintrc",
        ".bandit",
        "noxfile.py",
    }
)
#: What `python -m pytest` imports besides the standard library: a module of the tree's root with one of these
#: names (or a standard library name) would be imported instead, and would run the tests itself.
_RUNNER_MODULES = frozenset({"pytest", "_pytest", "pluggy", "iniconfig", "packaging", "py", "pygments"})
_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd")
#: Files that mix project metadata with test or lint configuration: only changes to the configuring part are
#: infrastructure edits. Sections of pyproject.toml ([tool.*] prefixes) and setup.cfg that configure tools:
_SECTIONED_CONFIG_NAMES = frozenset({"pyproject.toml", "setup.cfg"})
_PYPROJECT_TABLES = ("pytest", "pylint", "bandit")
#: setup.cfg: the sections pytest reads ([pytest] only to fail on it, a way to make every test fail), read with
#: pytest's own parser, and the linters' sections, read with configparser as pylint does.
_SETUP_CFG_PYTEST_SECTIONS = frozenset({"tool:pytest", "pytest"})
_SETUP_CFG_LINT_SECTIONS = ("pylint", "bandit")


class WorkspaceError(RuntimeError):
    """The task's files could not be prepared (its requirements do not install, an archive is refused...)."""


def base_tree(archive: Path, *, cache_root: Path, strip_root: bool = True, sha256: str | None = None) -> Path:
    """Return the read-only tree of `archive`, extracted once per archive content (sha256) under cache_root/bases.

    `strip_root=False` for hidden tests: they overlay the tree exactly as laid out in their archive.
    `sha256`, when the caller already knows the archive's digest, saves hashing it again (the intake hot path).

    Safe when several processes ask at once: each extracts into its own temporary folder and the first rename
    wins. Raises scoring.core.intake.archive.ArchiveError for a refused archive.
    """
    digest = sha256 or sha256_file(archive)
    target = cache_root / "bases" / (digest if strip_root else f"{digest}-overlay")
    if target.is_dir():
        if strip_root:
            applycheck.ensure_check_repo(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=target.parent))
    try:
        tree = holder / "tree"
        safe_extract(archive, tree, strip_root=strip_root)
        make_read_only(tree)
        with contextlib.suppress(FileExistsError, OSError):
            os.rename(tree, target)  # fails harmlessly when another process won the race
    finally:
        remove_tree(holder)
    if not target.is_dir():
        raise WorkspaceError(f"could not cache the tree of {archive.name}")
    if strip_root:
        applycheck.ensure_check_repo(target)
    return target


def task_env(requirements: Sequence[str], *, cache_root: Path, timeout_s: float) -> Path | None:
    """Return a folder with `requirements` installed (`pip install --target`), built once per requirement set.

    None when there are no requirements. Raises WorkspaceError with pip's last lines when installation fails
    or takes longer than `timeout_s`.
    """
    if not requirements:
        return None
    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()
    target = cache_root / "envs" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=target.parent))
    try:
        staging = holder / "env"
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-input",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--target",
            str(staging),
            *sorted(requirements),
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise WorkspaceError(f"installing the task's requirements took longer than {timeout_s:g} s") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise WorkspaceError(f"the task's requirements do not install: {tail}")
        with contextlib.suppress(OSError):
            os.rename(staging, target)
    finally:
        remove_tree(holder)
    return target


def check_applies(diff: ParsedDiff | str, base_dir: Path, *, in_process_only: bool = False) -> bool:
    """Raise DiffError (with git's message, host paths removed) unless `diff` applies cleanly to `base_dir`.

    git is the judge. libgit2 answers in-process, without a subprocess, only when it accepts the diff and git
    would accept it the same way (applycheck.libgit2_accepts); a libgit2 refusal, and any case where the two
    could differ, goes to `git apply --check`, so every refusal is git's, with git's message. A `base_dir` that
    base_tree did not cache has no check repository and always goes to git.

    Returns True once the diff is known to apply. With `in_process_only`, returns False instead of asking git,
    so a caller can run the git checks of a batch in parallel (it then calls again without the flag).
    """
    if applycheck.libgit2_accepts(diff, base_dir):
        return True
    if in_process_only:
        return False
    _git_apply(diff, base_dir, check=True)
    return True


def apply_diff(diff: ParsedDiff | str, tree: Path) -> None:
    """Apply `diff` to `tree` with strict `git apply`, or raise DiffError (the discriminator's reference tree)."""
    _git_apply(diff, tree, check=False)


def _git_apply(diff: ParsedDiff | str, tree: Path, *, check: bool) -> None:
    """Run strict `git apply` (no fuzz, no rejects) in `tree`, outside any repository, or raise DiffError.

    GIT_CEILING_DIRECTORIES stops git from finding a repository above the tree (a checkout the worker runs in),
    so paths are taken relative to the tree and no git metadata is read or written; no global or system git
    configuration can change the behaviour.

    git also lists the paths it applies to (`--numstat -z`), and they must be exactly the paths the intake parser
    read: every revert, the static check and the critics judge the parser's paths, so a name git reads otherwise
    (a date after a space, `+++ b/conftest.py 2026-12-06 21:00:00`, which git cuts off and a parser may keep)
    would let a file into the tree that nothing judges. In a scratch tree the refusal comes after git wrote.
    """
    text = diff.text if isinstance(diff, ParsedDiff) else diff
    with tempfile.TemporaryDirectory(prefix="git-home-") as home:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": home,
            "LANG": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CEILING_DIRECTORIES": str(tree.parent),
        }
        # --numstat alone only reads the diff: --check (which also tests that it applies) or --apply is added.
        argv = ["git", "apply", "--whitespace=nowarn", "--numstat", "-z", "--check" if check else "--apply", "-"]
        try:
            done = subprocess.run(
                argv, input=text.encode(), cwd=tree, env=env, capture_output=True, timeout=_GIT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise DiffError("git apply took too long") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").replace(str(tree), "").strip()
        raise DiffError(f"the diff does not apply to the base repository: {message[:1000]}")
    _check_git_read_the_parsed_paths(diff if isinstance(diff, ParsedDiff) else parse_diff(diff), done.stdout)


def _check_git_read_the_parsed_paths(parsed: ParsedDiff, numstat: bytes) -> None:
    """Raise DiffError unless the paths in git's `--numstat -z` output are the paths `parsed` writes or deletes.

    git names one path per file: the new one (the old one of a deletion). The source of a rename is not listed;
    git checks it against the '---' name itself (an "inconsistent old filename" is refused).
    """
    by_git = {
        record.split(b"\t", 2)[-1].decode("utf-8", "surrogateescape") for record in numstat.split(b"\0") if record
    }
    by_parser = {change.path for change in parsed.files}
    if by_git != by_parser:
        only_git = ", ".join(repr(path) for path in sorted(by_git - by_parser)) or "nothing else"
        only_parser = ", ".join(repr(path) for path in sorted(by_parser - by_git)) or "nothing else"
        raise DiffError(
            f"git reads the file names of this diff otherwise than its headers say: git would write {only_git}"[:500]
            + f", the headers name {only_parser}"[:500]
            + ". Write file names as `git diff` does (a name with a space ends with a tab)."
        )


def is_test_path(path: str, spec: object) -> bool:
    """True for a test file: test_*.py / *_test.py, anything under a tests/ or test/ folder or a spec test path."""
    pure = PurePosixPath(path)
    if fnmatch.fnmatch(pure.name, "test_*.py") or fnmatch.fnmatch(pure.name, "*_test.py"):
        return True
    if any(part in _TEST_DIRS for part in pure.parts[:-1]):
        return True
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in _spec_test_roots(spec))


def _spec_test_roots(spec: object) -> list[str]:
    """Relative paths named in the spec's test commands (pytest's positional arguments), without node ids."""
    roots = []
    for command in (getattr(spec, "test_command", None), getattr(spec, "hidden_test_command", None)):
        for token in shlex.split(command or ""):
            path = token.split("::", 1)[0]
            if not token.startswith("-") and (path.endswith(".py") or "/" in path or path in _TEST_DIRS):
                roots.append(path.strip("./") or path)
    return roots


def infra_reason(path: str, spec: object) -> str | None:
    """Why `path` is test or lint infrastructure that a patch may not touch (None when it is not)."""
    pure = PurePosixPath(path)
    if pure.name in _INFRA_NAMES:
        return f"{pure.name} configures how tests or linters run"
    if pure.suffix == ".pth":
        return ".pth files run code when Python starts"
    if any(part.endswith((".dist-info", ".egg-info")) for part in pure.parts):
        return "package metadata can register pytest plugins"
    lint_config = getattr(spec, "lint_config", None)
    if lint_config and path == PurePosixPath(lint_config).as_posix():
        return "it is the task's lint configuration"
    for pattern in getattr(spec, "protected_paths", ()) or ():
        if fnmatch.fnmatch(path, pattern):
            return f"the task protects {pattern}"
    return None


def _shadow_reason(path: str, base: Path, tests_import: Callable[[str], bool], env_dir: Path | None) -> str | None:
    """Why a new file at `path` would shadow a module the test runner or the tests import (None when it would not).

    The tree's root comes first on sys.path when `python -m pytest` starts there, so a new root module or
    package named like a standard library module or a part of pytest replaces it: the patch would run the
    tests itself, canary included. Named like a library installed beside them (the task's environment, the
    interpreter's site-packages) that a test imports (`tests_import`), it replaces what the tests run: a
    `numpy/testing.py` whose `assert_equal` returns, a `hypothesis` whose `given` never calls the test, and failing
    tests pass. One no test imports is the task's own code. One the base already has is the task's own business.
    """
    parts = PurePosixPath(path).parts
    if len(parts) == 1:
        if not parts[0].endswith(_MODULE_SUFFIXES):
            return None
        name = parts[0].split(".")[0]
    else:
        name = parts[0]
    if name in _TEST_DIRS or (base / parts[0]).exists() or (base / f"{name}.py").exists():
        return None
    if name in _RUNNER_MODULES or name in sys.stdlib_module_names:
        return f"a new {name!r} module at the tree's root would replace the one the test runner imports"
    if _installed(name, env_dir) and tests_import(name):
        return f"a new {name!r} module at the tree's root would replace the installed one that tests import"
    return None


def _test_imports(spec: object, base: Path, hidden: Path | None) -> frozenset[str]:
    """Top-level module names that the base's test files and conftest.py files, and the hidden tests, import."""
    sources = [path for path in base.rglob("*.py") if _is_test_source(path.relative_to(base).as_posix(), spec)]
    sources += list(hidden.rglob("*.py")) if hidden is not None else []
    names: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source.read_bytes())
        except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return frozenset(names)


def _is_test_source(path: str, spec: object) -> bool:
    return is_test_path(path, spec) or PurePosixPath(path).name == "conftest.py"


def _installed(name: str, env_dir: Path | None) -> bool:
    """True when the sandboxed Python would find a top-level module `name` outside the tree: in the task's
    environment or in the interpreter's own site-packages (both are on its path, after the tree)."""
    folders = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    if env_dir is not None:
        folders.add(str(env_dir))
    try:
        return importlib.machinery.PathFinder.find_spec(name, sorted(folders)) is not None
    except (ImportError, ValueError):  # a name no import statement could spell
        return False


def _config_section_changed(path: str, base: Path, patched: Path) -> str | None:
    """For a pyproject.toml / setup.cfg the patch adds, edits, renames or deletes: why the change touches test or
    lint configuration, else None. A patched file that cannot be read the way pytest and the linters read it is
    hostile, never "absent": pytest might read it differently, or fail on it on purpose."""
    name = PurePosixPath(path).name
    if name not in _SECTIONED_CONFIG_NAMES:
        return None
    try:
        after = _config_sections(patched / path, name)
    except ConfigError as exc:
        return f"{path} {exc}, so the test and lint configuration in it cannot be checked"
    try:
        before = _config_sections(base / path, name)
    except ConfigError:
        return f"the base's {path} cannot be read, so no change to it can be checked"
    if before == after:
        return None
    changed = sorted(key for key in {*before, *after} if before.get(key) != after.get(key))
    return f"{path}: the patch changes its {', '.join(changed)} configuration"


def _config_sections(path: Path, name: str) -> dict[str, object]:
    """The pytest / pylint / bandit parts of a pyproject.toml or setup.cfg, keyed by section ({} when absent).

    Raises ConfigError when the file cannot be read by pytest's parser or by configparser (pylint's).
    """
    text = configread.read_text(path)
    if text is None:
        return {}
    if name == "pyproject.toml":
        tool = configread.table(configread.load_toml(text), "tool")
        return {f"[tool.{key}]": value for key, value in tool.items() if key.startswith(_PYPROJECT_TABLES)}
    sections: dict[str, object] = {
        f"[{section}]": items
        for section, items in configread.pytest_ini_sections(text, path=name).items()
        if section in _SETUP_CFG_PYTEST_SECTIONS
    }
    sections.update(
        (f"[{section}]", items)
        for section, items in configread.configparser_sections(text).items()
        if section.startswith(_SETUP_CFG_LINT_SECTIONS)
    )
    return sections


def _revert(change: FileChange, base: Path, tree: Path) -> None:
    """Put every path of `change` back as it is in the base: restore the base file, or delete an added one."""
    for path in filter(None, (change.path, change.old_path)):
        source, target = base / path, tree / path
        if target.is_file() or target.is_symlink():
            target.unlink()
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            target.chmod(0o644)


def _review_changes(
    diff: ParsedDiff, spec: object, base: Path, tree: Path, hidden: Path | None, env_dir: Path | None
) -> tuple[set[str], list[str], list[FileChange]]:
    """Revert forbidden edits in `tree`; return (flags, notes, the changes that stand)."""
    imported: list[frozenset[str]] = []  # the tests' imports, read only when a new root module needs them

    def tests_import(name: str) -> bool:
        if not imported:
            imported.append(_test_imports(spec, base, hidden))
        return name in imported[0]

    flags: set[str] = set()
    notes: list[str] = []
    kept: list[FileChange] = []
    for change in diff.files:
        paths = [p for p in (change.path, change.old_path) if p]
        infra = next(filter(None, (infra_reason(p, spec) for p in paths)), None)
        if infra is None:  # added, edited, renamed into place or away, deleted: all change the configuration
            infra = next(filter(None, (_config_section_changed(p, base, tree) for p in paths)), None)
        if infra is None and change.kind in ("add", "rename"):
            infra = _shadow_reason(change.path, base, tests_import, env_dir)
        if infra is not None:
            _revert(change, base, tree)
            flags.add("tamper")
            notes.append(f"Reverted {_describe(change)} and flagged tamper: {infra}.")
        elif any(is_test_path(p, spec) for p in paths):
            _revert(change, base, tree)
            flags.add("tests_modified")
            notes.append(f"Reverted {_describe(change)}: test files are graded as the task wrote them.")
        else:
            kept.append(change)
    return flags, notes, kept


def _describe(change: FileChange) -> str:
    verb = {"add": "added", "modify": "edited", "delete": "deleted", "rename": "renamed"}[change.kind]
    if change.kind == "rename":
        return f"{verb} {change.old_path} -> {change.path}"
    return f"{verb} {change.path}"


def task_cache_key(*, base_sha: str, hidden_sha: str | None, spec: object) -> str:
    """The key of everything cached per task: base, hidden tests, spec and the toolchain that ran them."""
    spec_json = spec.to_json() if hasattr(spec, "to_json") else repr(spec)
    material = {
        "base": base_sha,
        "hidden": hidden_sha,
        "spec": spec_json,
        "python": platform.python_version(),
        "pytest": package_version("pytest"),
        "format": TASK_CACHE_FORMAT,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def prepare(
    *,
    spec: TaskSpec,
    diff: ParsedDiff | str,
    base_archive: Path,
    hidden_archive: Path | None,
    settings: PipelineSettings,
    run: Runner,
) -> Iterator[ScoringContext]:
    """Yield the ScoringContext of one patch: base, hidden tests, task env, and the patched tree after reverts.

    Raises DiffError when the diff is refused or does not apply, ArchiveError / WorkspaceError when the task's
    files cannot be prepared. The patched tree is removed on exit.
    """
    parsed = diff if isinstance(diff, ParsedDiff) else parse_diff(diff)
    cache_root = settings.cache_root
    base = base_tree(base_archive, cache_root=cache_root)
    hidden = base_tree(hidden_archive, cache_root=cache_root, strip_root=False) if hidden_archive is not None else None
    env = task_env(getattr(spec, "requirements", ()), cache_root=cache_root, timeout_s=600)
    key = task_cache_key(base_sha=base.name, hidden_sha=hidden.name if hidden else None, spec=spec)
    task_cache_dir = cache_root / "tasks" / key
    task_cache_dir.mkdir(parents=True, exist_ok=True)
    with scratch_copy(base, work_root=settings.work_root, prefix="patched-") as tree:
        _git_apply(parsed, tree, check=False)
        flags, notes, kept = _review_changes(parsed, spec, base, tree, hidden, env)
        changed = tuple(c.path for c in kept if c.kind != "delete")
        deleted = tuple(c.path for c in kept if c.kind == "delete") + tuple(
            c.old_path for c in kept if c.kind == "rename" and c.old_path
        )
        yield ScoringContext(
            spec=spec,
            diff=parsed,
            base_dir=base,
            patched_dir=tree,
            hidden_dir=hidden,
            env_dir=env,
            task_cache_dir=task_cache_dir,
            settings=settings,
            run=run,
            changed_files=changed,
            added_lines={c.path: c.added_lines for c in kept if c.kind != "delete"},
            deleted_files=deleted,
            flags=frozenset(flags),
            notes=tuple(notes),
        )
