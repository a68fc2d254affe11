"""Small helpers shared by the Django tests."""

from __future__ import annotations

from pathlib import Path

TINY = Path(__file__).resolve().parent / "fixtures" / "tiny"


def other_diff(fix: str) -> str:
    """A second valid diff of the tiny task, on the same file as its fix."""
    return fix.replace("+    return a + b", "+    return b + a")
