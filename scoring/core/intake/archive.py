"""Safe unpacking of uploaded repository archives (.tar.gz / .tgz / .tar / .zip).

An archive comes from an API client and is treated as hostile. `safe_extract` checks every member before
a byte of it is written and refuses, with a message naming the member, anything that could escape the
destination or exhaust the disk:

- the archive itself larger than `max_bytes`, or its members adding up to more than `max_bytes` uncompressed;
- more than `max_files` members;
- a compression ratio above `max_ratio` once more than `RATIO_FLOOR` bytes are unpacked (a zip or gzip bomb);
- absolute names, `..` components, backslashes, NUL or other control characters in a name;
- links of any kind. Symlinks and hard links are refused outright, even relative ones inside the tree: a task
  repository does not need them, and a tree without links cannot be written through by a patch or a test;
- device files, fifos and anything else that is not a regular file or a folder; encrypted zip members;
- the same file twice, two names that differ only in case, or one name used both as a file and as a folder.

Layout: when everything sits in one top-level folder (as in GitHub's "Download ZIP" and
`git archive --prefix`), that folder is stripped, so `dest` holds the repository's own top level.

Nothing is written outside `dest`: members are unpacked into a temporary folder next to it, which is renamed
to `dest` only when everything succeeded; on any error it is removed and `dest` does not exist.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

#: Below this many unpacked bytes the ratio is not checked: small text archives compress very well.
RATIO_FLOOR = 1 << 20
#: Tar headers and padding per member, allowed on top of `max_bytes` in the decompressed tar stream.
_TAR_OVERHEAD_PER_MEMBER = 4096
_CHUNK = 1 << 16


class ArchiveError(ValueError):
    """The archive is refused; the message says which rule it broke and, where there is one, which member."""


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at `path`, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = 200 << 20,
    max_files: int = 20_000,
    max_ratio: float = 200.0,
    strip_root: bool = True,
) -> None:
    """Unpack `archive` into `dest` (which must not exist yet), or raise ArchiveError and leave `dest` absent.

    The format is detected from the content, not the file name. See the module docstring for every rule.
    `strip_root=False` keeps a lone top-level folder (hidden tests overlay the tree as they are laid out).
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; safe_extract needs a fresh destination")
    size = Path(archive).stat().st_size
    if size > max_bytes:
        raise ArchiveError(f"archive is too large: {size} bytes, the limit is {max_bytes}")
    budget = _Budget(max_bytes=max_bytes, max_files=max_files, max_ratio=max_ratio, compressed=max(size, 1))
    dest.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        tree = holder / "tree"
        tree.mkdir()
        _extract_any(Path(archive), tree, budget)
        if not budget.files:
            raise ArchiveError("archive contains no files")
        os.rename(_strip_single_root(tree) if strip_root else tree, dest)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


@dataclass
class _Budget:
    """Running totals of one extraction, and the limits they must stay under."""

    max_bytes: int
    max_files: int
    max_ratio: float
    compressed: int
    members: int = 0
    unpacked: int = 0
    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    folded: dict[str, str] = field(default_factory=dict)

    def admit(self, raw_name: str, *, is_dir: bool, size: int) -> str:
        """Check one member against every rule; return its normalised relative name ("" for the root)."""
        self.members += 1
        if self.members > self.max_files:
            raise ArchiveError(f"archive has too many members: more than {self.max_files}")
        name = _normalise(raw_name)
        if not name:
            if is_dir:
                return ""
            raise ArchiveError(f"member {raw_name!r}: a file without a name")
        self.add_bytes(size, name)
        self._check_layout(name, is_dir=is_dir)
        return name

    def add_bytes(self, count: int, name: str) -> None:
        """Account for `count` more unpacked bytes of member `name`; refuse past the size or ratio limit."""
        self.unpacked += count
        if self.unpacked > self.max_bytes:
            raise ArchiveError(
                f"archive is too large uncompressed: more than {self.max_bytes} bytes (at member {name!r})"
            )
        ratio = self.unpacked / self.compressed
        if self.unpacked > RATIO_FLOOR and ratio > self.max_ratio:
            raise ArchiveError(
                f"archive looks like a zip bomb: compression ratio above {self.max_ratio:g} (at member {name!r})"
            )

    def _check_layout(self, name: str, *, is_dir: bool) -> None:
        """Refuse duplicates, case collisions, and a name used both as a file and a folder."""
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in self.files:
                raise ArchiveError(f"member {name!r}: {parent!r} is both a file and a folder")
            self._remember(parent, is_dir=True)
        if name in (self.dirs if not is_dir else self.files):
            raise ArchiveError(f"member {name!r}: the name is used both as a file and a folder")
        if not is_dir and name in self.files:
            raise ArchiveError(f"member {name!r}: the same file appears twice")
        self._remember(name, is_dir=is_dir)

    def _remember(self, name: str, *, is_dir: bool) -> None:
        seen = self.folded.setdefault(name.casefold(), name)
        if seen != name:
            raise ArchiveError(f"members {seen!r} and {name!r} differ only in case")
        (self.dirs if is_dir else self.files).add(name)


def _normalise(raw_name: str) -> str:
    """Return the member name as a clean relative posix path; raise if it could escape or is unprintable."""
    if "\0" in raw_name:
        raise ArchiveError(f"member {raw_name!r}: NUL byte in name")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in raw_name):
        raise ArchiveError(f"member {raw_name!r}: control character in name")
    if "\\" in raw_name:
        raise ArchiveError(f"member {raw_name!r}: backslash in name")
    path = PurePosixPath(raw_name)
    if path.is_absolute() or (len(raw_name) > 1 and raw_name[1] == ":"):
        raise ArchiveError(f"member {raw_name!r}: absolute path")
    if ".." in path.parts:
        raise ArchiveError(f"member {raw_name!r}: '..' in path")
    return "/".join(part for part in path.parts if part != ".")


def _extract_any(archive: Path, tree: Path, budget: _Budget) -> None:
    """Detect the format from the first bytes and unpack into `tree`; wrap library errors in ArchiveError."""
    with open(archive, "rb") as handle:
        head = handle.read(512)
    try:
        if head.startswith(b"\x1f\x8b"):
            with gzip.open(archive, "rb") as raw:
                limit = budget.max_bytes + budget.max_files * _TAR_OVERHEAD_PER_MEMBER + (1 << 20)
                _extract_tar(_BoundedReader(raw, limit), tree, budget)
        elif head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            _extract_zip(archive, tree, budget)
        elif head[257:262] == b"ustar":
            with open(archive, "rb") as raw:
                _extract_tar(raw, tree, budget)
        else:
            raise ArchiveError("not a .tar.gz, .tar or .zip archive")
    except ArchiveError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise ArchiveError(f"archive is corrupt: {exc}") from exc
    except NotImplementedError as exc:  # zipfile: an unsupported compression method
        raise ArchiveError(f"archive uses an unsupported feature: {exc}") from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise ArchiveError(f"archive could not be unpacked: {exc}") from exc


def _extract_tar(fileobj: _ReadSeek, tree: Path, budget: _Budget) -> None:
    """Unpack a tar stream member by member, checking each one before it is written."""
    # mode "r:" only reads, seeks and tells: typeshed's tarfile asks for write() and close() even to read.
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:  # type: ignore[call-overload]  # typeshed wants write()
        for member in tar:  # lazy: a member is checked before the stream moves past its data
            if member.issym() or member.islnk():
                raise ArchiveError(f"member {member.name!r}: links are not allowed (points to {member.linkname!r})")
            if not (member.isreg() or member.isdir()):
                raise ArchiveError(f"member {member.name!r}: device files, fifos and other special files are refused")
            name = budget.admit(member.name, is_dir=member.isdir(), size=member.size if member.isreg() else 0)
            if name:
                # The data filter is a second defence behind the checks above (modes, owners, escapes).
                tar.extract(member.replace(name=name, deep=False), tree, set_attrs=True, filter="data")


def _extract_zip(archive: Path, tree: Path, budget: _Budget) -> None:
    """Unpack a zip member by member, counting the bytes actually inflated, not the sizes it claims."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            raw_name = info.orig_filename
            mode = info.external_attr >> 16
            file_type = stat.S_IFMT(mode)
            if stat.S_ISLNK(mode):
                raise ArchiveError(f"member {raw_name!r}: links are not allowed")
            if file_type and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ArchiveError(f"member {raw_name!r}: device files, fifos and other special files are refused")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"member {raw_name!r}: encrypted members are refused")
            is_dir = info.is_dir() or stat.S_ISDIR(mode)
            name = budget.admit(raw_name, is_dir=is_dir, size=0)
            if not name:
                continue
            target = tree / name
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "xb") as out:
                while chunk := src.read(_CHUNK):
                    budget.add_bytes(len(chunk), name)
                    out.write(chunk)
            target.chmod(0o755 if mode & 0o100 else 0o644)


def _strip_single_root(tree: Path) -> Path:
    """Return the one top-level folder when it wraps everything, else `tree` itself."""
    children = list(tree.iterdir())
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return tree


class _ReadSeek(Protocol):
    """What tarfile reads an uncompressed stream through: a gzip file, or a _BoundedReader over one."""

    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int: ...
    def tell(self) -> int: ...


class _BoundedReader:
    """A read-only, seekable view of a decompressed stream that refuses to go past `limit` bytes.

    A gzip member can inflate to far more than the tar members it declares (huge pax headers, padding);
    this caps the work and memory spent on such a stream whatever the tar headers say.
    """

    def __init__(self, raw: _ReadSeek, limit: int) -> None:
        self._raw = raw
        self._limit = limit

    def read(self, size: int = -1) -> bytes:
        room = self._limit + 1 - self._raw.tell()  # never inflate more than one byte past the limit
        data = self._raw.read(room if size is None or size < 0 else min(size, room))
        self._check()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._raw.seek(offset, whence)
        self._check()
        return position

    def tell(self) -> int:
        return self._raw.tell()

    def _check(self) -> None:
        if self._raw.tell() > self._limit:
            raise ArchiveError(f"archive is too large uncompressed: the tar stream exceeds {self._limit} bytes")
