"""The comparison, done here in the harness on plain data: no object of the patch's code is ever asked anything.

`same` is structural equality of two encoded values (probe.encode): the types must match exactly (True is not
1, a tuple is not a list, an object is not the builtin value it imitates); numbers compare with a relative
tolerance of 1e-9; dicts and sets ignore order. `verdict` turns the reference's and the patch's outcomes for one
case into agree / disagree and a sentence; `render` prints values the way Python would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scoring.core.critics.discriminator.probe import canonical

_REL_TOL = 1e-9
_ABS_TOL = 1e-12
_RENDER_CHARS = 160
#: Characters of a call written out in full (a training row's input); a longer call is not written out.
FULL_CALL_CHARS = 1000


def same(a: Any, b: Any) -> bool:
    """True when two encoded values are equal as plain data (see the module docstring)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)
    if isinstance(a, dict) and isinstance(b, dict):
        if a.get("t") != b.get("t") or a.get("cls") != b.get("cls"):
            return False
        tag, x, y = a.get("t"), a.get("v"), b.get("v")
        if tag in ("list", "tuple", "complex"):
            return isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and all(map(same, x, y))
        if tag in ("set", "frozenset"):
            return isinstance(x, list) and isinstance(y, list) and _same_unordered(x, y)
        if tag == "dict":
            return isinstance(x, list) and isinstance(y, list) and _same_pairs(x, y)
        if tag == "object":
            return (
                isinstance(x, dict)
                and isinstance(y, dict)
                and x.keys() == y.keys()
                and all(same(x[k], y[k]) for k in x)
            )
        return x == y
    return type(a) is type(b) and a == b


def _same_unordered(x: list[Any], y: list[Any]) -> bool:
    if len(x) != len(y):
        return False
    left = sorted(x, key=canonical)
    right = sorted(y, key=canonical)
    return all(map(same, left, right))


def _same_pairs(x: list[Any], y: list[Any]) -> bool:
    if len(x) != len(y):
        return False
    right = {canonical(pair[0]): pair[1] for pair in y if isinstance(pair, list) and len(pair) == 2}
    for pair in x:
        if not (isinstance(pair, list) and len(pair) == 2) or canonical(pair[0]) not in right:
            return False
        if not same(pair[1], right[canonical(pair[0])]):
            return False
    return True


def expected_of(outcome: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the reference's outcome makes the expected outcome of a case; None when the case is dropped.

    A return keeps the value and the arguments after the call; a raise keeps the exception type, which the patch
    must match when the reference raised it with a `raise` statement (its contract); an exception from inside an
    operation (unpacking a malformed record, say) only asks the patch to raise too. A hang, a crash or an
    unrepresentable result drops the case (the reason is counted by the caller).
    """
    status = outcome.get("status")
    if status == "ok":
        return {
            "status": "ok",
            "result": outcome.get("result"),
            "args": outcome.get("args"),
            "kwargs": outcome.get("kwargs"),
            "time_s": float(outcome.get("time_s") or 0.0),
        }
    if status == "raised":
        return {
            "status": "raised",
            "exc": str(outcome.get("exc")),
            "deliberate": bool(outcome.get("deliberate")),
            "time_s": float(outcome.get("time_s") or 0.0),
        }
    return None


def verdict(expected: Mapping[str, Any], got: Mapping[str, Any]) -> tuple[str, str] | None:
    """None when the patch's outcome agrees with the expected one; else (what the patch did, what the reference
    did), as phrases: ("the patch returns [(1, 3)]", "the reference [(1, 5)]").

    `got` is whatever the patch's process wrote: a value nested too deeply to compare is a disagreement.
    """
    try:
        return _verdict(expected, got)
    except RecursionError:
        return "the patch returns a value nested too deeply to compare", "the reference does not"


def _verdict(expected: Mapping[str, Any], got: Mapping[str, Any]) -> tuple[str, str] | None:
    status = got.get("status")
    if expected["status"] == "ok":
        if status == "ok":
            if not same(expected["result"], got.get("result")):
                return f"the patch returns {render(got.get('result'))}", f"the reference {render(expected['result'])}"
            for key in ("args", "kwargs"):
                if not same(expected.get(key), got.get(key)):
                    return (
                        f"the patch leaves the arguments as {render(got.get(key))}",
                        f"the reference as {render(expected.get(key))}",
                    )
            return None
        return _what_patch_did(got), f"the reference returns {render(expected['result'])}"
    if status == "raised" and (got.get("exc") == expected["exc"] or not expected.get("deliberate", True)):
        return None
    return _what_patch_did(got), f"the reference raises {_short(expected['exc'])}"


def _what_patch_did(got: Mapping[str, Any]) -> str:
    status = got.get("status")
    if status == "ok":
        return f"the patch returns {render(got.get('result'))}"
    if status == "raised":
        return f"the patch raises {_short(str(got.get('exc')))}"
    if status == "timeout":
        return "the patch did not return within its time cap"
    if status == "unrepresentable":
        return f"the patch returns something that is not plain data ({str(got.get('reason'))[:80]})"
    if status == "no_entry":
        return f"the entry point cannot be called on the patched tree ({str(got.get('reason'))[:80]})"
    if status == "not_run":
        return "the patch's run ran out of time before this input"
    return "the patch's process died on this input"


def describe_call(entry: str, args: Any, kwargs: Any) -> str:
    """`merge([(1, 5), (2, 3)])`: the call as Python source, long values cut."""
    return _call(entry, args, kwargs, render)


def full_call(entry: str, args: Any, kwargs: Any) -> str | None:
    """The call as Python source with nothing cut, or None past FULL_CALL_CHARS."""
    text = _call(entry, args, kwargs, _render)
    return text if len(text) <= FULL_CALL_CHARS else None


def _call(entry: str, args: Any, kwargs: Any, show: Any) -> str:
    function = entry.rpartition(":")[2]
    parts = [show(item) for item in (args or {}).get("v", [])]
    parts += [f"{show(k)[1:-1]}={show(v)}" for k, v in (kwargs or {}).get("v", [])]
    return f"{function}({', '.join(parts)})"


def render(value: Any) -> str:
    """An encoded value as Python would print it (objects as Class(field=...)), cut past 160 characters."""
    text = _render(value)
    return text if len(text) <= _RENDER_CHARS else text[: _RENDER_CHARS - 3] + "..."


def _render(value: Any) -> str:
    if not isinstance(value, dict):
        return repr(value).encode("utf-8", "backslashreplace").decode("utf-8")
    tag = value.get("t")
    raw: Any = value.get("v")  # plain JSON whose shape the tag names
    if tag == "float":
        return f"float({raw!r})"
    if tag == "list":
        return "[" + ", ".join(map(_render, raw)) + "]"
    if tag == "tuple":
        return "(" + ", ".join(map(_render, raw)) + ("," if len(raw) == 1 else "") + ")"
    if tag in ("set", "frozenset"):
        inner = ", ".join(map(_render, raw))
        return (f"{{{inner}}}" if raw else "set()") if tag == "set" else f"frozenset({{{inner}}})"
    if tag == "dict":
        return "{" + ", ".join(f"{_render(k)}: {_render(v)}" for k, v in raw) + "}"
    if tag in ("bytes", "bytearray"):
        text = repr(bytes.fromhex(raw))
        return text if tag == "bytes" else f"bytearray({text})"
    if tag == "complex":
        return f"complex({_render(raw[0])}, {_render(raw[1])})"
    cls = _short(str(value.get("cls", "?")))
    if tag == "enum":
        return f"{cls}.{raw}"
    if tag == "object":
        return f"{cls}(" + ", ".join(f"{k}={_render(v)}" for k, v in raw.items()) + ")"
    if tag == "repr":
        return str(raw)
    return repr(value)


def _short(qualified: str) -> str:
    """`builtins.ValueError` -> `ValueError`; other classes keep their last part."""
    return qualified.rpartition(".")[2] or qualified
