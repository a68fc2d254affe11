"""The discriminator's probe: the one file that runs inside the sandbox, next to the task's code.

Self-contained on purpose (standard library only): it is copied into the sandbox, where the project is not
importable. The harness imports the same file for `encode` / `decode`, so the plain-data format has one
definition.

Two roles:

- a pytest plugin (`-p <module>` in a run of the visible tests on the REFERENCE tree): a profile hook records
  every call that a test file makes into a module-level function of the task's code, with its arguments as plain
  data, into the file named by the environment variable DISCRIMINATOR_TRACE;
- a script (`python probe.py CASES OUTPUTS`): calls entry points on the cases of CASES and appends one JSON line
  per case to OUTPUTS as soon as it is known (the return value and the arguments after the call, as plain data,
  or the type of the exception raised, or "timeout"). The harness reads the lines and compares; nothing this
  process says is trusted beyond being the patch's answer (see docs/correctness.md, "Discriminator");
- the same script with a coverage plan (`python probe.py CASES OUTPUTS PLAN`): each line also says which of the
  plan's lines (the patched lines) the call ran, signed with a key the plan holds. The plan file is read and
  deleted before any code of the tree is imported, and the key lives only in a local variable, so the tree's
  code cannot sign a claim of coverage it did not earn (short of reading this process's memory, which the
  static check's frame and garbage-collector rules flag). The harness only ever lets coverage add inputs.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import importlib
import json
import linecache
import math
import os
import signal
import sys
import time
import types

# This file runs on the sandbox's bare interpreter, so it imports nothing for typing at run time: the constant is
# False there, and mypy reads the block as always taken (as it does `typing.TYPE_CHECKING`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from _typeshed import TraceFunction

#: Size caps of one encoded value: nesting depth, number of nodes, characters of one string.
MAX_DEPTH = 24
MAX_NODES = 20_000
MAX_TEXT = 100_000
#: Traced calls kept per entry point (the first ones, distinct).
MAX_SEEDS_PER_ENTRY = 60


#: Values that are code, not data: their state says nothing about what they compute.
_CODE_LIKE = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.ModuleType,
    types.CodeType,
    type,
)


class Unrepresentable(ValueError):
    """A value that cannot be carried as plain data (the message says why)."""


def encode(value: Any, *, _depth: int = 0, _budget: list[int] | None = None) -> Any:
    """Return `value` as plain JSON data that names every type, or raise Unrepresentable.

    Exact builtin types only: a subclass (a list whose `__eq__` lies, an int subclass) is encoded as an object
    of its class, so it never compares equal to the builtin value it imitates. Objects with a `__dict__` or
    `__slots__` are encoded by class name and state; others by a repr that does not name a memory address.
    """
    budget = _budget if _budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise Unrepresentable(f"more than {MAX_NODES} values")
    if _depth > MAX_DEPTH:
        raise Unrepresentable(f"nested deeper than {MAX_DEPTH} levels")
    kind = type(value)

    def sub(item: object) -> Any:
        return encode(item, _depth=_depth + 1, _budget=budget)

    if value is None or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
    if kind is str:
        if len(value) > MAX_TEXT:
            raise Unrepresentable(f"a string longer than {MAX_TEXT} characters")
        return value
    if kind in (list, tuple):
        return {"t": kind.__name__, "v": [sub(item) for item in value]}
    if kind in (set, frozenset):
        items = [sub(item) for item in value]
        return {"t": kind.__name__, "v": sorted(items, key=canonical)}
    if kind is dict:
        return {"t": "dict", "v": [[sub(k), sub(v)] for k, v in value.items()]}
    if kind in (bytes, bytearray):
        return {"t": kind.__name__, "v": bytes(value).hex()}
    if kind is complex:
        return {"t": "complex", "v": [sub(value.real), sub(value.imag)]}
    return _encode_object(value, sub)


def _encode_object(value: Any, sub: Callable[[object], Any]) -> dict[str, Any]:
    """An instance of any other class: its class name plus its state, or a deterministic repr."""
    kind = type(value)
    cls = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, enum.Enum):
        return {"t": "enum", "cls": cls, "v": value.name}
    if isinstance(value, _CODE_LIKE):
        raise Unrepresentable(f"a {cls} is code, not data")
    state: dict[str, Any] = {}
    bases: tuple[type[Any], ...] = (list, tuple, dict, set, frozenset, str, int, float, bytes)
    for base in bases:
        if isinstance(value, base):
            state["__base__"] = sub(base(value))
            break
    try:
        attrs = vars(value)
    except TypeError:
        attrs = None
    if attrs is not None:
        state.update({str(k): v for k, v in attrs.items()})
    for klass in kind.__mro__:
        for slot in getattr(klass, "__slots__", ()) or ():
            if isinstance(slot, str) and slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                state[slot] = getattr(value, slot)
    if attrs is not None or state:
        return {"t": "object", "cls": cls, "v": {k: (v if k == "__base__" else sub(v)) for k, v in state.items()}}
    text = repr(value)
    if " at 0x" in text or len(text) > MAX_TEXT:
        raise Unrepresentable(f"a {cls} has no plain-data form and no stable repr")
    return {"t": "repr", "cls": cls, "v": text}


def decode(data: Any) -> Any:
    """Rebuild Python values from `encode`'s output (inputs only hold decodable kinds)."""
    if isinstance(data, list):  # plain JSON lists (hand-written inputs) are lists
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    tag = data.get("t")
    raw: Any = data.get("v")  # plain JSON whose shape the tag names
    if tag == "float":
        return float(raw)
    if tag in ("list", "tuple", "set", "frozenset"):
        items = [decode(item) for item in raw]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict":
        return {decode(k): decode(v) for k, v in raw}
    if tag in ("bytes", "bytearray"):
        return (bytes if tag == "bytes" else bytearray)(bytes.fromhex(raw))
    if tag == "complex":
        return complex(decode(raw[0]), decode(raw[1]))
    if "__tuple__" in data and len(data) == 1:
        return tuple(decode(item) for item in data["__tuple__"])
    if tag is None:
        return {key: decode(value) for key, value in data.items()}
    raise Unrepresentable(f"cannot rebuild a {data.get('cls', tag)} from plain data")


def canonical(data: object) -> str:
    """One string per encoded value (key order fixed), for sorting, de-duplication and sizes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- pytest plugin: trace the visible tests' calls into the task's code ------------------------------------


def _is_test_file(path: str) -> bool:
    name = os.path.basename(path)
    parts = path.replace(os.sep, "/").split("/")
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
        or any(part in ("tests", "test", "testing") for part in parts[:-1])
    )


def pytest_configure(config: object) -> None:
    """Start recording calls from test files into module-level functions under the tree (the working folder)."""
    out_path = os.environ.get("DISCRIMINATOR_TRACE")
    if not out_path:
        return
    root = os.getcwd().rstrip(os.sep) + os.sep
    here = os.path.abspath(__file__)
    seen: dict[str, set[str]] = {}
    out = open(out_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run

    def record(frame: types.FrameType) -> None:
        code = frame.f_code
        filename = code.co_filename
        if not filename.startswith(root) or filename == here or _is_test_file(filename[len(root) :]):
            return
        caller = frame.f_back
        if caller is None or not caller.f_code.co_filename.startswith(root):
            return
        if not _is_test_file(caller.f_code.co_filename[len(root) :]):
            return
        qualname = getattr(code, "co_qualname", code.co_name)
        module = frame.f_globals.get("__name__", "")
        if "." in qualname or "<" in qualname or not module or module == "__main__":
            return
        function = frame.f_globals.get(code.co_name)
        if getattr(function, "__code__", None) is not code:
            return
        entry = f"{module}:{qualname}"
        calls = seen.setdefault(entry, set())
        if len(calls) >= MAX_SEEDS_PER_ENTRY:
            return
        line: dict[str, Any] = {"entry": entry, "annotations": _annotations(function)}
        try:
            args, kwargs = _arguments(frame)
            line["args"], line["kwargs"] = encode(args), encode(kwargs)
        except Unrepresentable as exc:
            line["unrepresentable"] = str(exc)
        key = canonical(line)
        if key not in calls:
            calls.add(key)
            out.write(key + "\n")
            out.flush()

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call":
            with contextlib.suppress(Exception):  # a tracing problem must never fail the tests
                record(frame)

    sys.setprofile(profile)


def pytest_unconfigure(config: object) -> None:
    sys.setprofile(None)


def _arguments(frame: types.FrameType) -> tuple[list[Any], dict[str, Any]]:
    """(args, kwargs) of a call, read from the frame at its 'call' event, before the body ran."""
    code = frame.f_code
    names = code.co_varnames
    positional = code.co_argcount
    kwonly = code.co_kwonlyargcount
    local = frame.f_locals
    args = [local[name] for name in names[:positional]]
    kwargs = {name: local[name] for name in names[positional : positional + kwonly]}
    index = positional + kwonly
    if code.co_flags & 0x04:  # *args
        args.extend(local[names[index]])
        index += 1
    if code.co_flags & 0x08:  # **kwargs
        kwargs.update(local[names[index]])
    return args, kwargs


def _annotations(function: object) -> dict[str, str]:
    try:
        items = getattr(function, "__annotations__", {}) or {}
        return {str(k): v if isinstance(v, str) else getattr(v, "__name__", repr(v)) for k, v in items.items()}
    except Exception:
        return {}


# --- script: call entry points on cases, one output line per case ------------------------------------------


class _Timeout(BaseException):
    """Raised by the per-case alarm; a BaseException so that `except Exception` in the called code misses it."""


def _on_alarm(signum: int, frame: types.FrameType | None) -> None:
    raise _Timeout


def _outcome(function: Callable[..., object], case: dict[str, Any]) -> dict[str, Any]:
    """Call `function` on the case and describe what happened as one JSON-able dict."""
    try:
        args = decode(case["args"])
        kwargs = decode(case.get("kwargs") or {"t": "dict", "v": []})
    except Unrepresentable as exc:
        return {"status": "unrepresentable", "reason": str(exc)}
    signal.setitimer(signal.ITIMER_REAL, float(case["cap_s"]))
    started = time.perf_counter()
    try:
        value = function(*args, **kwargs)
    except _Timeout:
        return {"status": "timeout"}
    except BaseException as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        kind = type(exc)
        return {
            "status": "raised",
            "exc": f"{kind.__module__}.{kind.__qualname__}",
            "deliberate": _deliberate(exc),
            "time_s": time.perf_counter() - started,
        }
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    elapsed = time.perf_counter() - started
    try:
        return {
            "status": "ok",
            "result": encode(value),
            "args": encode(args),
            "kwargs": encode(kwargs),
            "time_s": elapsed,
        }
    except Unrepresentable as exc:
        return {"status": "unrepresentable", "reason": str(exc), "time_s": elapsed}


def _deliberate(exc: BaseException) -> bool:
    """True when the exception came from a `raise` statement of Python code (not from inside an operation such
    as unpacking or indexing): only then is its type part of the function's contract."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
    return line.startswith("raise")


def coverage_signature(key: str, ident: str, covered: list[list[int]]) -> str:
    """The signature of one case's coverage claim: HMAC-SHA256 over its id and lines (the harness checks it)."""
    message = json.dumps([ident, covered], separators=(",", ":")).encode()
    return hmac.new(bytes.fromhex(key), message, hashlib.sha256).hexdigest()


def _coverage(plan_path: str) -> tuple[str, set[tuple[int, int]], Callable[[], None]]:
    """Read and delete the plan; return (key, files, hits, start): `start()` begins recording for one case.

    Only frames of the plan's files get a line tracer, and only the plan's lines are kept. Recording happens in
    this thread only: code that moves work to another thread, or replaces the tracer, earns no coverage.
    """
    with open(plan_path, encoding="utf-8") as handle:
        plan = json.load(handle)
    os.unlink(plan_path)
    root = os.getcwd()
    files = sorted(plan["files"])
    wanted = {os.path.join(root, name): (index, frozenset(plan["files"][name])) for index, name in enumerate(files)}
    hits: set[tuple[int, int]] = set()

    def local(frame: types.FrameType, event: str, arg: object) -> TraceFunction:
        if event == "line":
            index, lines = wanted[frame.f_code.co_filename]
            if frame.f_lineno in lines:
                hits.add((index, frame.f_lineno))
        return local

    def scout(frame: types.FrameType, event: str, arg: object) -> TraceFunction | None:
        return local if frame.f_code.co_filename in wanted else None

    def start() -> None:
        hits.clear()
        sys.settrace(scout)

    return plan["key"], hits, start


def main(argv: list[str]) -> int:
    """Run the cases of argv[1] (JSON) and append one line per case to argv[2] (with a plan argv[3]: coverage)."""
    with open(argv[1], encoding="utf-8") as handle:
        cases = json.load(handle)
    key, hits, start = _coverage(argv[3]) if len(argv) > 3 else (None, None, None)
    out = os.open(argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.path.insert(0, os.getcwd())
    sys.setrecursionlimit(4000)
    signal.signal(signal.SIGALRM, _on_alarm)
    functions: dict[str, Callable[..., object]] = {}
    for case in cases:
        entry = case["entry"]
        try:
            if entry not in functions:
                module, _, name = entry.partition(":")
                functions[entry] = getattr(importlib.import_module(module), name)
            if start is not None:
                start()
            line = _outcome(functions[entry], case)
        except _Timeout:
            line = {"status": "timeout"}
        except BaseException as exc:
            functions.pop(entry, None)
            line = {"status": "no_entry", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        if key is not None and hits is not None:  # both set by _coverage, or neither
            sys.settrace(None)
            covered = sorted([index, number] for index, number in hits)
            line["cov"], line["sig"] = covered, coverage_signature(key, case["id"], covered)
        line["id"] = case["id"]
        try:
            text = json.dumps(line, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            text = json.dumps({"id": case["id"], "status": "unrepresentable", "reason": str(exc)[:300]})
        os.write(out, (text + "\n").encode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
