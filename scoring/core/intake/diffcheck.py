"""Intake checks for submitted patches: is this a unified diff we are willing to apply?

A patch comes from an RL agent and is treated as hostile. `parse_diff` accepts only a plain-text unified diff
as `git diff` writes it (file names prefixed `a/` and `b/`, or /dev/null) and refuses, with a message saying
what was wrong, anything too large, empty, binary, with NUL bytes, with paths that are absolute, contain `..`
or touch `.git/`, with symlink or gitlink modes, copies, malformed hunks, or the same file twice. The
structure is checked line by line here (unidiff is lenient: it drops lines past a hunk's declared length);
unidiff then provides the model of files and added lines.

`check_paths_exist` compares the diff with a base tree; `diff_from_completion` pulls the diff out of an LLM
completion for the /rewards/ endpoint.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import unidiff
from unidiff.errors import UnidiffParseError

DEFAULT_MAX_BYTES = 1_000_000

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_MODE_LINE = re.compile(r"^(?:old mode|new mode|new file mode|deleted file mode) (\d+)$")
_INDEX_LINE = re.compile(r"^index [0-9a-fA-F]+\.\.[0-9a-fA-F]+ (\d+)$")
_BINARY_LINE = re.compile(r"^(?:GIT binary patch$|Binary files? .* differ$)")
_ALLOWED_MODES = {"100644": "a regular file", "100755": "an executable file"}
_REFUSED_MODES = {"120000": "symlink", "160000": "gitlink (submodule)"}
_FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_DIFF_FENCE_LANGS = ("diff", "patch", "udiff", "")


class DiffError(ValueError):
    """The diff is refused. `status` is the HTTP status an API answers with: 400, or 413 when too large."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FileChange:
    """One file the diff touches. `path` is the file after the change (before it, for a delete)."""

    path: str
    old_path: str | None  # the source of a rename, else None
    kind: str  # "add" | "modify" | "delete" | "rename"
    added_lines: frozenset[int]  # 1-based line numbers in the patched file
    is_python: bool


@dataclass(frozen=True)
class ParsedDiff:
    """A diff that passed every intake rule, with its files in the order the diff lists them."""

    text: str
    files: tuple[FileChange, ...]
    sha256: str


def parse_diff(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedDiff:
    """Return the parsed diff, or raise DiffError saying which rule `text` breaks."""
    if not isinstance(text, str):
        raise DiffError(f"diff must be text, not {type(text).__name__}")
    if len(text) > max_bytes:
        raise DiffError(f"diff is too large: more than {max_bytes} bytes", status=413)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DiffError("diff is not valid UTF-8 text") from exc
    if len(data) > max_bytes:
        raise DiffError(f"diff is too large: {len(data)} bytes, the limit is {max_bytes}", status=413)
    if "\0" in text:
        raise DiffError("diff contains NUL bytes; binary content is not accepted")
    if not text.strip():
        raise DiffError("diff is empty")
    _check_structure(text.split("\n"))
    try:
        patch = unidiff.PatchSet(text)
    except (UnidiffParseError, ValueError) as exc:
        raise DiffError(f"diff is malformed: {exc}") from exc
    if not len(patch):
        raise DiffError("not a unified diff: no file headers ('--- a/...', '+++ b/...' or 'diff --git') found")
    files = tuple(_file_change(patched) for patched in patch)
    _check_unique(files)
    return ParsedDiff(text=text, files=files, sha256=hashlib.sha256(data).hexdigest())


def _check_structure(lines: list[str]) -> None:
    """Walk the diff line by line: headers must be sane and every hunk exactly as long as its header says."""
    if lines and lines[-1] == "":
        lines = lines[:-1]
    if "***************" in lines:
        raise DiffError("not a unified diff: this is a context diff; send `git diff` or `diff -u` output")
    index = 0
    while index < len(lines):
        line = lines[index]
        if line == "-- ":  # `git format-patch` signature: the patch ended
            return
        if line.startswith("@@"):
            raise DiffError(f"hunk at line {index + 1} is not preceded by '---' and '+++' file headers")
        if line.startswith("--- "):
            index = _check_file_section(lines, index)
            continue
        if line.startswith("+++ "):
            raise DiffError(f"'+++' header at line {index + 1} is not preceded by a '---' header")
        _check_header_line(line, index + 1)
        index += 1


def _check_file_section(lines: list[str], index: int) -> int:
    """Check a '---'/'+++' pair and its hunks starting at `index`; return the index after them."""
    if index + 1 >= len(lines) or not lines[index + 1].startswith("+++ "):
        raise DiffError(f"'---' header at line {index + 1} is not followed by a '+++' header")
    _header_name(lines[index][4:], "a/", index + 1)
    _header_name(lines[index + 1][4:], "b/", index + 2)
    index += 2
    if index >= len(lines) or not lines[index].startswith("@@"):
        raise DiffError(f"file header at line {index - 1} is not followed by a hunk ('@@ -l,n +l,n @@')")
    while index < len(lines) and lines[index].startswith("@@"):
        index = _consume_hunk(lines, index)
    if index < len(lines) and lines[index][:1] in ("+", "-", " ") and not lines[index].startswith(("--- ", "-- ")):
        raise DiffError(f"hunk ending before line {index + 1} has more lines than its header says")
    return index


def _consume_hunk(lines: list[str], index: int) -> int:
    """Check the hunk whose header is at `index` against its line counts; return the index after it."""
    match = _HUNK_HEADER.match(lines[index])
    if not match:
        raise DiffError(f"malformed hunk header at line {index + 1}: {lines[index][:80]!r}")
    old_left = int(match.group(2) or 1)
    new_left = int(match.group(4) or 1)
    if old_left == 0 and new_left == 0:
        raise DiffError(f"hunk at line {index + 1} is empty")
    start = index + 1
    index += 1
    while old_left > 0 or new_left > 0:
        if index >= len(lines):
            raise DiffError(f"hunk at line {start - 1} is shorter than its header says")
        line = lines[index]
        marker = line[:1]
        if marker in (" ", ""):
            old_left, new_left = old_left - 1, new_left - 1
        elif marker == "-":
            old_left -= 1
        elif marker == "+":
            new_left -= 1
        elif marker != "\\":
            raise DiffError(f"hunk at line {start - 1} is shorter than its header says (line {index + 1})")
        if old_left < 0 or new_left < 0:
            raise DiffError(f"hunk at line {start - 1}: line counts do not match its header")
        index += 1
    while index < len(lines) and lines[index].startswith("\\"):  # "\ No newline at end of file"
        index += 1
    return index


def _check_header_line(line: str, number: int) -> None:
    """Refuse binary patches, copies, link modes and escaping names in a git extended header line."""
    if _BINARY_LINE.match(line):
        raise DiffError(f"binary patches are not accepted (line {number})")
    mode = _MODE_LINE.match(line) or _INDEX_LINE.match(line)
    if mode:
        _check_mode(mode.group(1), number)
    elif line.startswith(("copy from ", "copy to ")):
        raise DiffError(f"file copies are not accepted (line {number}); add the file instead")
    elif line.startswith(("rename from ", "rename to ")):
        _check_path(_unquote(line.split(" ", 2)[2], number), number)
    elif line.startswith("diff --git "):
        for token in line[len("diff --git ") :].split():
            name = token.strip('"')
            _check_escape(name[2:] if name[:2] in ("a/", "b/") else name, number)


def _check_mode(mode: str, number: int) -> None:
    if mode in _REFUSED_MODES:
        raise DiffError(f"{_REFUSED_MODES[mode]} entries (mode {mode}) are not accepted (line {number})")
    if mode not in _ALLOWED_MODES:
        raise DiffError(f"unsupported file mode {mode} (line {number})")


def _header_name(raw: str, prefix: str, number: int | None) -> str | None:
    """Return the repository path in a '---'/'+++' name (None for /dev/null); refuse odd names."""
    name = _unquote(raw.split("\t", 1)[0].rstrip("\r") if not raw.startswith('"') else raw, number)
    if name == "/dev/null":
        return None
    _check_escape(name, number)
    if not name.startswith(prefix):
        raise DiffError(
            f"line {number}: file name {name!r} must start with {prefix!r} (as `git diff` writes it) or be /dev/null"
        )
    return _check_path(name[len(prefix) :], number)


def _unquote(name: str, number: int | None) -> str:
    """Undo git's C-style quoting of unusual file names ("a/caf\\303\\251.py")."""
    name = name.strip()
    if not name.startswith('"'):
        return name
    end = name.rfind('"')
    if end <= 0:
        raise DiffError(f"line {number}: unterminated quoted file name")
    try:
        return codecs.escape_decode(name[1:end].encode("utf-8"))[0].decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DiffError(f"line {number}: bad quoted file name") from exc


def _check_path(path: str, number: int | None = None) -> str:
    """Return `path` if it stays inside the tree and is printable, else raise DiffError naming it."""
    where = f" (line {number})" if number else ""
    if not path:
        raise DiffError(f"empty file name{where}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        raise DiffError(f"control character in file name {path!r}{where}")
    if "\\" in path:
        raise DiffError(f"backslash in file name {path!r}{where}")
    _check_escape(path, number)
    if any(part in ("", ".") for part in path.split("/")):
        raise DiffError(f"file name {path!r} has an empty or '.' part{where}; `git diff` never writes one")
    return path


def _check_escape(path: str, number: int | None) -> None:
    """Refuse absolute paths, `..` components and anything inside a `.git` folder."""
    where = f" (line {number})" if number else ""
    if path.startswith("/"):
        raise DiffError(f"absolute path {path!r} is not allowed{where}")
    parts = path.split("/")  # as PurePosixPath(path).parts, plus empty and "." parts that match neither rule
    if ".." in parts:
        raise DiffError(f"path {path!r} leaves the repository ('..'){where}")
    if any(part.casefold() == ".git" for part in parts):
        raise DiffError(f"path {path!r} touches .git/, which is not allowed{where}")


def _file_change(patched: unidiff.PatchedFile) -> FileChange:
    """Build the FileChange for one of unidiff's files, checking its names again after unidiff's parsing."""
    if patched.is_binary_file:
        raise DiffError(f"binary patches are not accepted ({patched.path})")
    source = _header_name(patched.source_file, "a/", None)
    target = _header_name(patched.target_file, "b/", None)
    if patched.is_added_file or source is None:
        kind, path, old_path = "add", target, None
    elif patched.is_removed_file or target is None:
        kind, path, old_path = "delete", source, None
    elif source != target:
        kind, path, old_path = "rename", target, source
    else:
        kind, path, old_path = "modify", target, None
    if path is None:
        raise DiffError("a file in the diff goes from /dev/null to /dev/null")
    # unidiff types target_line_no as optional; an added line always has one.
    added = frozenset(
        line.target_line_no for hunk in patched for line in hunk if line.is_added and line.target_line_no is not None
    )
    return FileChange(path=path, old_path=old_path, kind=kind, added_lines=added, is_python=path.endswith(".py"))


def _check_unique(files: tuple[FileChange, ...]) -> None:
    """Refuse a diff that touches the same path twice: its added lines would be ambiguous."""
    seen: set[str] = set()
    for change in files:
        for path in filter(None, (change.path, change.old_path)):
            if path in seen:
                raise DiffError(f"{path!r} appears more than once in the diff")
            seen.add(path)


def check_paths_exist(diff: ParsedDiff, base_dir: Path) -> None:
    """Raise DiffError unless every modified, deleted or renamed file is in `base_dir` and no added one is.

    Also refuses a path that reaches through a symlink in the base tree to somewhere outside it.
    """
    root = os.path.realpath(base_dir)  # os.path rather than pathlib: this runs for every patch at intake
    for change in diff.files:
        target = _inside(root, change.path)
        if change.kind in ("modify", "delete") and not os.path.isfile(target):
            raise DiffError(f"{change.path!r} does not exist in the base repository (the diff {change.kind}s it)")
        if change.kind in ("add", "rename") and os.path.lexists(target):
            raise DiffError(f"{change.path!r} already exists in the base repository (the diff creates it)")
        if change.old_path is not None and not os.path.isfile(_inside(root, change.old_path)):
            raise DiffError(f"{change.old_path!r} does not exist in the base repository (the diff renames it)")


def _inside(root: str, relative: str) -> str:
    """`relative` joined to the resolved `root`, refused if following its symlinks leads out of `root`."""
    target = os.path.join(root, relative)
    resolved = os.path.realpath(target)
    if resolved != root and not resolved.startswith(root.rstrip("/") + "/"):
        raise DiffError(f"{relative!r} reaches outside the base repository through a symlink")
    return target


def diff_from_completion(completion: str | list[dict[str, Any]]) -> str | None:
    """Return the diff in an LLM completion, or None when it holds no usable one.

    A completion is a string or a chat message list (the last assistant message counts; its content is a
    string or a list of parts with "text"). The diff is the first fenced ```diff / ```patch (or unlabeled)
    block that parse_diff accepts, else the whole text if parse_diff accepts it.
    """
    text = _completion_text(completion)
    if not text:
        return None
    for match in _FENCE.finditer(text):
        if match.group("lang").lower() in _DIFF_FENCE_LANGS and _parses(match.group("body")):
            return match.group("body")
    return text if _parses(text) else None


def _completion_text(completion: Any) -> str | None:
    """Return the text of a completion string, or of the last assistant message of a chat list."""
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, list):
        return None
    for message in reversed(completion):
        if isinstance(message, dict) and message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                parts = [part.get("text") if isinstance(part, dict) else part for part in content]
                return "".join(part for part in parts if isinstance(part, str))
            return None
    return None


def _parses(text: str) -> bool:
    try:
        parse_diff(text)
    except DiffError:
        return False
    return True
