"""The intake's fast answer to "does this diff apply to the base?": libgit2 in-process, where git would agree.

sandbox.workspace.check_applies asks `libgit2_accepts` first and `git apply --check` whenever it says False,
so git's verdict and message stand for every refusal; `ensure_check_repo` builds, once per cached base tree, the
bare repository libgit2 checks against. tests/scoring/core/test_apply_check.py compares the two on ~2,000 diffs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

import pygit2
from pygit2.enums import ApplyLocation, DeltaStatus, FileMode

from scoring.core.intake.diffcheck import DiffError, FileChange, ParsedDiff, parse_diff
from scoring.core.trees import make_read_only, remove_tree

#: base_tree keeps `<digest>.check.git` next to `<digest>`: a bare repository whose index holds the base's files.
_CHECK_REPO_SUFFIX = ".check.git"
#: Open check repositories kept per thread (a libgit2 repository is not shared between threads).
_CHECK_REPOS_PER_THREAD = 32
_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)
_EOFNL_ORIGINS = frozenset("=<>")  # libgit2's "\ No newline at end of file" lines
#: A backslash line other than git's own marker: libgit2 takes any, git only "\ " and 11 characters or more.
_ODD_MARKER = re.compile(r"^\\(?! No newline at end of file$)", re.MULTILINE)


log = logging.getLogger(__name__)


def ensure_check_repo(tree: Path) -> None:
    """Build, once, the bare repository next to a cached base tree that check_applies hands to libgit2.

    Its index lists the tree's regular files (blobs with their executable bit); nothing else is in it: no commit,
    no ref. A file left out (a symlink, a name libgit2 will not store) is safe: a diff touching it does not apply
    for libgit2 and goes to git. Built in a temporary folder and renamed into place like the tree itself, so
    racing processes are fine. A failure is logged and leaves intake on `git apply --check` alone, never fails.
    """
    target = tree.with_name(tree.name + _CHECK_REPO_SUFFIX)
    if target.is_dir():
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{tree.name[:12]}-check-", dir=tree.parent))
    try:
        staging = holder / "repo.git"
        repo = pygit2.init_repository(str(staging), bare=True)
        index = repo.index
        for path in _regular_files(tree):
            mode = FileMode.BLOB_EXECUTABLE if path.stat().st_mode & 0o111 else FileMode.BLOB
            with contextlib.suppress(pygit2.GitError, ValueError):  # an odd name: left out, see above
                blob = repo.create_blob_fromdisk(str(path))
                index.add(pygit2.IndexEntry(path.relative_to(tree).as_posix(), blob, mode))
        index.write()
        repo.free()
        make_read_only(staging)
        with contextlib.suppress(OSError):
            os.rename(staging, target)  # fails harmlessly when another process won the race
    except (OSError, pygit2.GitError) as exc:
        log.warning("no in-process apply check for %s (git apply --check decides alone): %s", tree.name, exc)
    finally:
        remove_tree(holder)


def _regular_files(tree: Path) -> Iterator[Path]:
    """The regular files under `tree`, never following or listing a symlink."""
    for folder, dirs, files in os.walk(tree):
        dirs[:] = [name for name in dirs if not os.path.islink(os.path.join(folder, name))]
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink() and path.is_file():
                yield path


def libgit2_accepts(diff: ParsedDiff | str, base_dir: Path) -> bool:
    """True when libgit2 applies `diff` to the base's check repository and git would accept it there too.

    False means "ask git", never "refused". libgit2 tries each hunk only at the line its header names, which is
    also where git looks first (git then searches further, libgit2 does not), so where both make the same checks
    libgit2 never accepts more than git. libgit2 skips some of git's checks, though, and those diffs go to git
    (tests/scoring/core/test_apply_check.py shows libgit2 alone accepting each kind that git refuses):
    - libgit2 must read the same files, kinds and hunk headers from the text as the intake parser, so that the
      checks below look at what git will look at;
    - a deleted file: libgit2 does not compare the deleted lines with the file;
    - an added or renamed-to path that is in the base, or under a file or a symlink: libgit2 does not look;
    - a path with an empty, "." or ".." part (a trailing slash, say): git calls it invalid;
    - a hunk that changes nothing, a backslash line that is not git's "\\ No newline" marker: git calls them
      corrupt;
    - hunk positions git forbids (see _hunks_agree_with_git).
    """
    if not base_dir.name:
        return False
    checker = _check_repo(base_dir.with_name(base_dir.name + _CHECK_REPO_SUFFIX))
    if checker is None:
        return False
    try:
        parsed = diff if isinstance(diff, ParsedDiff) else parse_diff(diff)
        if any(change.kind == "delete" for change in parsed.files) or _ODD_MARKER.search(parsed.text):
            return False
        found = pygit2.Diff.parse_diff(parsed.text)
        return checker.applies(found) and _git_would_agree(found, parsed, base_dir)
    except (DiffError, pygit2.GitError, ValueError, KeyError, OSError):
        return False


_KINDS = {"add": DeltaStatus.ADDED, "modify": DeltaStatus.MODIFIED, "rename": DeltaStatus.RENAMED}


def _git_would_agree(found: pygit2.Diff, parsed: ParsedDiff, base_dir: Path) -> bool:
    """True when nothing libgit2 skipped would make git refuse `found`, which libgit2 accepted."""
    if len(found) != len(parsed.files):
        return False
    headers = []
    for patch, change in zip(found, parsed.files, strict=True):
        # pygit2 declares None for a delta without a patch; a diff built from patch text has one per file.
        assert patch is not None
        delta = patch.delta
        read = (delta.status, delta.old_file.path, delta.new_file.path)
        if read != (_KINDS.get(change.kind), change.old_path or change.path, change.path):
            return False
        if not all(_plain_path(path) for path in (change.path, change.old_path) if path):
            return False
        if change.kind in ("add", "rename") and not _free_in_base(base_dir, change.path):
            return False
        hunks = patch.hunks
        if not _hunks_agree_with_git(hunks, functools.partial(_line_count, base_dir, change)):
            return False
        headers += [(hunk.old_start, hunk.old_lines, hunk.new_start, hunk.new_lines) for hunk in hunks]
    in_text = [(int(a), int(b or 1), int(c), int(d or 1)) for a, b, c, d in _HUNK_HEADER.findall(parsed.text)]
    return headers == in_text


def _plain_path(path: str) -> bool:
    """True when no part of `path` is empty, "." or ".." (git's verify_path refuses those; libgit2 may not)."""
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _free_in_base(base_dir: Path, path: str) -> bool:
    """True when `path` is not in the base and each part of it that is, is a real folder (not a file or a link)."""
    parts = PurePosixPath(path).parts
    current = base_dir
    for depth, part in enumerate(parts, start=1):
        current = current / part
        if not os.path.lexists(current):
            return True
        if depth == len(parts) or current.is_symlink() or not current.is_dir():
            return False
    return False


def _line_count(base_dir: Path, change: FileChange) -> int:
    """Lines of the base file that `change` edits, counted as git and libgit2 count them (0 for a new file)."""
    if change.kind == "add":
        return 0
    data = (base_dir / (change.old_path or change.path)).read_bytes()
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _hunks_agree_with_git(hunks: Sequence[pygit2.DiffHunk], base_lines: Callable[[], int]) -> bool:
    """True when git would take each hunk of one file where libgit2 applied it: at the header's new start.

    git tries that line first too, but refuses there what libgit2 takes (apply.c, parse_fragment and
    apply_one_fragment): a hunk with no + or - line (a corrupt patch); a hunk over lines an earlier hunk produced;
    a hunk from line 0 or 1 anywhere but the top of the file (match_beginning); a hunk without trailing context
    anywhere but the end of the file (match_end). `base_lines` gives the file's length before the first hunk;
    it is read only for that last rule.
    """
    end_of_previous = growth = 0
    for hunk in hunks:
        origins = [line.origin for line in hunk.lines if line.origin not in _EOFNL_ORIGINS]
        if "+" not in origins and "-" not in origins:
            return False
        at = hunk.new_start - 1 if hunk.new_start else 0
        if origins[-1] != " ":
            # libgit2 clamps the start to the file's end; with trailing context it matched inside the file.
            lines = base_lines() + growth
            at = min(at, lines)
            if at + hunk.old_lines != lines:
                return False
        if at < end_of_previous or (hunk.old_start <= 1 and at != 0):
            return False
        growth += hunk.new_lines - hunk.old_lines
        end_of_previous = at + hunk.new_lines
    return True


class _ScratchObjects(pygit2.OdbBackend):
    """An object store in memory, first in line for writes: libgit2 stores each postimage as a blob even when it
    only checks, and those blobs must not pile up on disk. Emptied after every check."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[pygit2.Oid, tuple[int, bytes]] = {}

    def read_cb(self, oid: pygit2.Oid) -> tuple[int, bytes]:
        return self.objects[oid]  # KeyError: not here, libgit2 asks the repository's own stores

    def read_header_cb(self, oid: pygit2.Oid) -> tuple[int, int]:
        kind, data = self.objects[oid]
        return kind, len(data)

    def read_prefix_cb(self, prefix: str) -> tuple[int, bytes, pygit2.Oid]:
        raise KeyError(prefix)

    def exists_cb(self, oid: pygit2.Oid) -> bool:
        return oid in self.objects

    def exists_prefix_cb(self, prefix: str) -> pygit2.Oid:
        raise KeyError(prefix)

    def write_cb(self, oid: pygit2.Oid, data: bytes, kind: int) -> None:
        self.objects[oid] = (kind, data)

    def refresh_cb(self) -> None:
        pass


class _CheckRepo:
    """A check repository opened by one thread, with its in-memory scratch store."""

    def __init__(self, path: Path) -> None:
        self.repo = pygit2.Repository(str(path))
        self.scratch = _ScratchObjects()
        self.repo.odb.add_backend(self.scratch, 1000)  # the highest priority: writes stop here

    def applies(self, diff: pygit2.Diff) -> bool:
        """libgit2's `git apply --cached --check` against the base's files; writes nothing to disk."""
        try:
            return self.repo.applies(diff, ApplyLocation.INDEX)
        finally:
            self.scratch.objects.clear()


_thread_state = threading.local()


def _check_repo(path: Path) -> _CheckRepo | None:
    """This thread's open handle on the check repository at `path`, or None when there is none."""
    if getattr(_thread_state, "pid", None) != os.getpid():  # never reuse libgit2 handles across a fork
        _thread_state.pid, _thread_state.repos = os.getpid(), {}
    repos: dict[Path, _CheckRepo] = _thread_state.repos
    checker = repos.get(path)
    if checker is None:
        if not path.is_dir():
            return None
        try:
            checker = _CheckRepo(path)
        except (pygit2.GitError, OSError):
            return None
        if len(repos) >= _CHECK_REPOS_PER_THREAD:
            repos.pop(next(iter(repos)))
        repos[path] = checker
    return checker
