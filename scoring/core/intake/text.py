"""Text as databases store it. PostgreSQL refuses NUL in text and in JSON, and no UTF-8 text holds a lone
surrogate, which JSON can carry ("\\ud800"). Input holding either is refused where it comes in (`unstorable`);
text that must be kept anyway (a rejected completion, a command's output) is stored escaped (`storable`)."""

from __future__ import annotations


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, as a phrase that follows the field's name; None when it can."""
    if "\x00" in text:
        return "holds a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text (it holds a lone surrogate)"
    return None


def storable(text: str) -> str:
    """`text` with NUL and lone surrogates written as backslash escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
