"""Strict parsing of the critic's answer: the last JSON object in the text, or a clear error. Never a guess."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scoring.core.critics.registry import CRITERIA


class VerdictError(ValueError):
    """The critic's output holds no valid verdict; the message says what was wrong."""


@dataclass(frozen=True)
class Verdict:
    """What the critic concluded: a score in [0, 1] or None per criterion, a comment, and its reasoning lines."""

    subscores: Mapping[str, float | None]
    comment: str
    reasoning: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"subscores": dict(self.subscores), "comment": self.comment, "reasoning": list(self.reasoning)}


def parse_verdict(text: str, *, criteria: Sequence[str] = CRITERIA) -> Verdict:
    """Return the verdict in the last JSON object of `text`; raise VerdictError if it is missing or invalid.

    The object must have exactly the keys `criteria` + "comment"; each criterion a finite number in [0, 1] or
    null, "comment" a string. Lines before the object are the reasoning.
    """
    found = _last_object(text)
    if found is None:
        raise VerdictError(f"no JSON object in the critic's output: {_excerpt(text)!r}")
    start, verdict = found
    expected = [*criteria, "comment"]
    missing = [key for key in expected if key not in verdict]
    unknown = sorted(set(verdict) - set(expected))
    if missing or unknown:
        raise VerdictError(f"verdict keys wrong: missing {missing}, unknown {unknown}; expected {expected}")
    subscores = {name: _score(name, verdict[name]) for name in criteria}
    if not isinstance(verdict["comment"], str):
        raise VerdictError(f"comment must be a string, got {type(verdict['comment']).__name__}")
    reasoning = tuple(line.strip() for line in text[:start].splitlines() if line.strip())
    return Verdict(subscores=subscores, comment=verdict["comment"].strip(), reasoning=reasoning)


def parse_agreement(text: str) -> bool:
    """Return the answer of a discriminator row's critic: the last JSON object must be {"agrees": true|false}.

    Raises VerdictError otherwise (never a guess).
    """
    found = _last_object(text)
    if found is None:
        raise VerdictError(f"no JSON object in the critic's output: {_excerpt(text)!r}")
    answer = found[1]
    if set(answer) != {"agrees"} or not isinstance(answer["agrees"], bool):
        raise VerdictError(f'expected {{"agrees": true}} or {{"agrees": false}}, got {_excerpt(json.dumps(answer))!r}')
    return answer["agrees"]


def _last_object(text: str) -> tuple[int, dict[str, Any]] | None:
    """Return (start offset, object) of the last top-level JSON object in `text`, or None."""
    decoder = json.JSONDecoder()
    found, position = None, text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found = (position, value)
        # Skip past a decoded object so nested objects are never mistaken for the verdict.
        position = text.find("{", end)
    return found


def _score(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VerdictError(f"{name}: {value!r} is not a number or null")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise VerdictError(f"{name}: {value!r} is outside [0, 1]")
    return float(value)


def _excerpt(text: str, limit: int = 120) -> str:
    text = text.strip()
    return text if len(text) <= limit else f"...{text[-limit:]}"
