"""Scratch copies of trees and the host-wide lock that keeps benchmarks alone on the cores."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def scratch_copy(src: Path, *, work_root: Path, prefix: str = "tree-") -> Iterator[Path]:
    """Yield a private, writable copy of `src` under `work_root`; it is removed on exit, whatever happened.

    A real copy, never hard links: code running in the copy could otherwise write through a link into the
    shared base tree. Symlinks are copied as links (the diff checks refuse to add any).
    """
    work_root.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=prefix, dir=work_root))
    tree = holder / "tree"
    try:
        shutil.copytree(src, tree, symlinks=True)
        for path in [tree, *tree.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        yield tree
    finally:
        remove_tree(holder)


def remove_tree(path: Path) -> None:
    """Remove `path` even if sandboxed code made parts of it read-only."""

    def _make_writable_and_retry(func, failed_path, _exc):  # type: ignore[no-untyped-def]  # shutil.rmtree's onexc callback, whatever it is given
        with contextlib.suppress(OSError):
            Path(failed_path).parent.chmod(0o755)
            Path(failed_path).chmod(0o755)
            func(failed_path)

    shutil.rmtree(path, onerror=_make_writable_and_retry)  # onexc needs Python 3.12


@contextlib.contextmanager
def host_lock(lock_dir: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the host-wide benchmark lock: exclusive for a benchmark, shared for test runs.

    A benchmark waits until no test run is active on this host and keeps new ones out while it measures, so its
    timings are not polluted by a neighbour. Works across processes (flock on a file in `lock_dir`).
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "host.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pack_tree(src: Path, dest: Path) -> Path:
    """Write `src` as a reproducible .tar.gz at `dest` (sorted names, zeroed times and owners) and return it.

    The same folder always packs to the same bytes, so its sha256 identifies the task's base tree.
    """

    def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "__pycache__" in Path(info.name).parts or info.name.endswith(".pyc"):
            return None
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=path.relative_to(src).as_posix(), recursive=False, filter=_normalise)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buffer.getvalue())
    return dest


def make_read_only(tree: Path) -> None:
    """Drop write permission everywhere in `tree`: the shared cache must never change after extraction."""
    for path in sorted(tree.rglob("*"), reverse=True):
        mode = stat.S_IMODE(path.lstat().st_mode)
        path.chmod(mode & ~0o222)
    tree.chmod(0o555)


def read_regular_file(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of `path` if it is a regular file of at most `max_bytes`, else None. For files in folders sandboxed
    code could write: links are not followed (O_NOFOLLOW) and a pipe or device is never waited on (O_NONBLOCK,
    then fstat), so a run cannot make the worker read a host file or block on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
