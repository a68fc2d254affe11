"""Runs a Python benchmark once and records what of the tree it could depend on (copied into the base tree's copy).

Usage, inside the sandbox, from the tree's root: `python -P tracer.py OUT [--files-only] script.py ARGS` or
`python -P tracer.py OUT [--files-only] -m module ARGS` (-P: this file's folder is not put first on sys.path; the
benchmark gets the sys.path[0] a plain `python script.py` or `python -m module` would give it). `--files-only`
records no functions (no sys.settrace, so the run costs about what a plain one does): for a caller that compares
only files whose code is the same.

OUT gets a JSON object, written only when the benchmark completed:
- "functions": per file (relative to the tree), the qualified names of the Python functions that started;
- "modules": the files whose module code ran (imported);
- "read": files and folders the benchmark itself opened, listed or looked at (not the import system's reads);
- "searched": every module name the import system looked for, and those imported before the tracer started;
- "incomplete": what makes the record incomplete (a subprocess, a fork, native code from the tree, another
  tracer): a record with any of these is never used to skip a benchmark.
Standard library only, and nothing from the tree is imported before the benchmark starts.
"""

import json
import os
import runpy
import sys
import threading

# Annotations here are evaluated when this file runs (no `from __future__ import annotations`, which would be one
# more module for the benchmark's record), so a name only mypy knows is quoted. TYPE_CHECKING is False when the
# file runs, and mypy reads the block as always taken: nothing is imported for typing at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    #: What an audit event or a watched os function is given as a path (a descriptor, or None, says none).
    _Path = int | str | bytes | os.PathLike[str] | os.PathLike[bytes] | None

ROOT = os.getcwd()
_OUT = sys.argv[1]
_CALLS = sys.argv[2:3] != ["--files-only"]
_ARGS = sys.argv[2:] if _CALLS else sys.argv[3:]
_functions: dict[str, set[str]] = {}
_read: set[str] = set()
_searched = set(sys.modules)
_incomplete: set[str] = set()
_ESCAPES = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
            "ctypes.dlopen", "sys.settrace", "sys.setprofile", "os.startfile", "pty.spawn")  # fmt: skip


#: Where the import system's own reads come from (runpy reads the script or module it runs).
_IMPORT_SYSTEM = ("<frozen importlib.", "<frozen zipimport>", "<frozen runpy>")
_state = {"running": False}


def _by_import_system() -> bool:
    frame = sys._getframe(2)  # 0: this function, 1: the hook, 2: the code that opened or listed
    return frame is not None and frame.f_code.co_filename.startswith(_IMPORT_SYSTEM)


def _note_path(path: "_Path") -> None:
    if isinstance(path, int) or path is None:
        return
    _read.add(os.path.abspath(os.fsdecode(path)))


def _audit(event: str, args: "tuple[Any, ...]") -> None:
    if not _state["running"]:
        return
    if event == "open":
        if not _by_import_system():
            _note_path(args[0])
    elif event in ("os.listdir", "os.scandir"):
        if not _by_import_system():
            _note_path(args[0] if args and args[0] is not None else ".")
    elif event == "import":
        _searched.add(args[0])
    elif event == "sys.settrace" and sys._getframe(1).f_code.co_name == "_bootstrap_inner":
        pass  # a new thread taking up this tracer (threading.settrace)
    elif event.startswith(_ESCAPES):
        _incomplete.add(event)


def _watching(function: "Callable[..., object]") -> "Callable[..., object]":
    def watched(path: "_Path", *args: object, **kwargs: object) -> object:
        _note_path(path)
        return function(path, *args, **kwargs)

    return watched


# Looking at a path without opening it raises no audit event: the os functions the benchmark's code can reach are
# wrapped (the import system keeps its own references to the originals).
for _name in ("stat", "lstat", "access"):
    setattr(os, _name, _watching(getattr(os, _name)))


def _trace(frame: "FrameType", event: str, arg: object) -> None:
    code = frame.f_code
    _functions.setdefault(code.co_filename, set()).add(code.co_qualname)


def _relative(path: str) -> "str | None":
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path == ROOT or path.startswith(ROOT + os.sep) else None


def _write() -> None:
    inside: dict[str, list[str]] = {}
    for filename, names in _functions.items():
        relative = _relative(filename) if filename.startswith(os.sep) else None  # not "<frozen ...>" or "<string>"
        if relative is not None:
            inside[relative] = sorted(names)
    modules: set[str] = set()
    for module in list(sys.modules.values()):
        relative = _relative(getattr(module, "__file__", None) or "/")
        if relative is None:
            continue
        if not relative.endswith(".py"):
            _incomplete.add(f"native or compiled module from the tree: {relative}")
        modules.add(relative)
    read = sorted(filter(None, (_relative(path) for path in _read)))
    outside = sorted(path for path in _read if _relative(path) is None and path != ROOT)
    record = {"functions": inside, "modules": sorted(modules), "read": read, "read_outside": outside,
              "searched": sorted(_searched), "incomplete": sorted(_incomplete)}  # fmt: skip
    with open(_OUT, "w") as handle:
        json.dump(record, handle)


def main() -> None:
    if _ARGS[:1] == ["-m"]:
        target, module = _ARGS[1], True
        sys.argv = [target, *_ARGS[2:]]
        sys.path.insert(0, ROOT)
    else:
        target, module = _ARGS[0], False
        sys.argv = list(_ARGS)
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
    if _CALLS:
        threading.settrace(_trace)
        sys.settrace(_trace)
    sys.addaudithook(_audit)
    _state["running"] = True  # after this tracer is set: from here on, another one means an incomplete record
    code = 0
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    _state["running"] = False
    sys.settrace(None)
    threading.settrace(None)
    if code == 0:
        _write()
    sys.exit(code)


main()
