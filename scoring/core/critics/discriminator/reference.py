"""A task's reference solution: what forms it takes, how its tree is built, and the check at task upload.

A reference is a unified diff against the base, or files that overlay the base as they are laid out (a folder,
or a .tar.gz / .zip archive). It is never inside a patched run: its tree exists only in scratch copies the
harness makes for the trace and the reference runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scoring.core.intake.archive import ArchiveError, safe_extract
from scoring.core.intake.diffcheck import DiffError, parse_diff
from scoring.core.intake.spec import TaskSpec
from scoring.core.sandbox import workspace
from scoring.core.trees import remove_tree, scratch_copy
from scoring.core.types import RunLimits, Runner

_ARCHIVE_MAGIC = (b"\x1f\x8b", b"PK\x03\x04")
_MAX_DIFF_BYTES = 5 << 20


class ReferenceError(ValueError):
    """The reference is refused (it does not apply, or fails the visible tests); the message says why."""


def digest(reference: Path) -> str:
    """The sha256 of a reference's content (a file's bytes, or a folder's paths and bytes in sorted order)."""
    sha = hashlib.sha256()
    if reference.is_dir():
        for path in sorted(reference.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                sha.update(path.relative_to(reference).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    else:
        sha.update(reference.read_bytes())
    return sha.hexdigest()


def is_archive(reference: Path) -> bool:
    """True when the file's first bytes say gzip or zip (the format is read from the content, not the name)."""
    with open(reference, "rb") as handle:
        head = handle.read(4)
    return any(head.startswith(magic) for magic in _ARCHIVE_MAGIC)


@contextlib.contextmanager
def reference_tree(reference: Path, *, base_dir: Path, work_root: Path) -> Iterator[Path]:
    """Yield a scratch copy of the base with the reference applied; removed on exit.

    Raises ReferenceError when the diff is refused or does not apply, or the archive is refused.
    """
    with scratch_copy(base_dir, work_root=work_root, prefix="reference-") as tree:
        if reference.is_dir():
            _overlay(reference, tree)
        elif is_archive(reference):
            holder = Path(tempfile.mkdtemp(prefix="reference-files-", dir=work_root))
            try:
                safe_extract(reference, holder / "files", strip_root=False)
                _overlay(holder / "files", tree)
            except ArchiveError as exc:
                raise ReferenceError(f"the reference archive is refused: {exc}") from exc
            finally:
                remove_tree(holder)
        else:
            _apply(reference, tree)
        yield tree


def _apply(reference: Path, tree: Path) -> None:
    if reference.stat().st_size > _MAX_DIFF_BYTES:
        raise ReferenceError(f"the reference diff is larger than {_MAX_DIFF_BYTES} bytes")
    try:
        text = reference.read_text(encoding="utf-8")
        workspace.apply_diff(parse_diff(text), tree)
    except UnicodeDecodeError as exc:
        raise ReferenceError("the reference is neither a .tar.gz / .zip archive nor a UTF-8 diff") from exc
    except DiffError as exc:
        message = str(exc).replace(str(tree), "")
        if message.startswith("the diff "):
            raise ReferenceError(f"the reference diff {message.removeprefix('the diff ')}") from exc
        raise ReferenceError(f"the reference diff is refused: {message}") from exc


def _overlay(files: Path, tree: Path) -> None:
    """Copy every file of `files` over `tree` at the same relative path."""
    for source in sorted(files.rglob("*")):
        if source.is_symlink():
            continue
        target = tree / source.relative_to(files)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                target.unlink()
            shutil.copyfile(source, target)


def visible_tests_argv(test_command: str, *, plugin: str | None = None) -> list[str]:
    """The spec's visible pytest command as `python -m pytest`, plugin autoload off, optionally one plugin on."""
    argv = shlex.split(test_command)
    if argv[:1] == ["pytest"]:
        argv = ["python", "-m", "pytest", *argv[1:]]
    elif argv[:1] == ["python3"]:
        argv = ["python", *argv[1:]]
    extra = ["-p", plugin] if plugin else []
    return ["env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", *argv, *extra, "-p", "no:cacheprovider", "-q"]


def check(*, spec: TaskSpec, reference: Path, base_dir: Path, work_root: Path, run: Runner, cache_dir: Path) -> None:
    """Refuse a reference that does not apply to the base or does not pass the visible tests (ReferenceError).

    A reference that passed once is remembered in `cache_dir` (by its digest, the base and the test command), so
    registering the task again or scoring with `score_patch` again does not re-run the tests.
    """
    if not reference.exists():
        raise ReferenceError(f"{reference} does not exist")
    key = hashlib.sha256(
        f"{digest(reference)}\0{base_dir.name}\0{spec.test_command}\0{getattr(spec, 'timeout_s', 60)}".encode()
    ).hexdigest()
    marker = cache_dir / "references" / f"{key}.ok"
    if marker.exists():
        return
    with reference_tree(reference, base_dir=base_dir, work_root=work_root) as tree:
        timeout = float(getattr(spec, "timeout_s", 60))
        result = run(
            visible_tests_argv(spec.test_command),
            tree=tree,
            limits=RunLimits(wall_s=timeout, cpu_s=timeout),
        )
    if result.returncode != 0:
        how = "timed out" if result.timed_out else f"exit status {result.returncode}"
        tail = "\n".join(result.output.strip().splitlines()[-8:])
        raise ReferenceError(f"the reference fails the visible tests ({how}):\n{tail}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
