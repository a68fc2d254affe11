"""What the review page shows, built from stored evidence: the highlighted diff with findings pinned to its
lines, evidence as readable HTML, and the numeric series the benchmark plot draws.

Diffs, test output and lint messages are attacker text: every piece goes through Pygments (which escapes) or
`conditional_escape` / `format_html` before it is marked safe. Nothing here knows a criterion by name; it reads
the shapes critics store (a list of dicts with `file` and `line` is a finding; a list of numbers is a series).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import unidiff
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound
from unidiff.errors import UnidiffParseError

#: The review page shows at most this many diff lines; the rest is summarised (the raw diff stays in the API).
MAX_DIFF_LINES = 4000
#: Evidence tables and lists are cut here; long text goes into a collapsed block.
MAX_ROWS = 60
MAX_TEXT = 4000
FORMATTER = HtmlFormatter(nowrap=True, classprefix="tok-")


@dataclass
class Finding:
    """A piece of evidence that points at a line of a changed file."""

    criterion: str
    label: str
    file: str
    line: int
    text: str
    severity: str = ""


@dataclass
class DiffLine:
    kind: str  # "add" | "del" | "ctx" | "hunk" | "note"
    old: int | None
    new: int | None
    html: SafeString
    findings: list[Finding] = field(default_factory=list)


@dataclass
class DiffFile:
    path: str
    lines: list[DiffLine]
    added: int = 0
    removed: int = 0


def _lexer(path: str):
    try:
        return get_lexer_for_filename(path, stripnl=False, stripall=False, ensurenl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=False)


def _highlight_lines(path: str, texts: list[str]) -> list[SafeString]:
    """Pygments-highlight the lines of one file in one call (so multi-line strings colour right), one per line."""
    if not texts:
        return []
    html = highlight("\n".join(texts), _lexer(path), FORMATTER)
    lines = html.split("\n")
    lines += [""] * (len(texts) - len(lines))
    return [mark_safe(line) for line in lines[: len(texts)]]  # noqa: S308 - Pygments escaped every token


def _text(line: unidiff.patch.Line) -> str:
    """A diff line's text without its line ending (a CRLF file's lines keep no stray carriage return)."""
    value = line.value
    if value.endswith("\n"):
        value = value[:-1]
    return value[:-1] if value.endswith("\r") else value


def _hunk_header(hunk: unidiff.Hunk) -> str:
    """The hunk's header as git writes it (a range of one line is written without its length)."""

    def span(start: int, length: int) -> str:
        return str(start) if length == 1 else f"{start},{length}"

    section = hunk.section_header.rstrip("\r")
    return f"@@ -{span(hunk.source_start, hunk.source_length)} +{span(hunk.target_start, hunk.target_length)} @@" + (
        f" {section}" if section else ""
    )


def render_diff(diff: str, findings: Sequence[Finding] = ()) -> tuple[list[DiffFile], int]:
    """The diff as files of numbered, highlighted lines with findings attached. Returns (files, rows left out).

    Parsed with unidiff, as intake parsed it (scoring.core.intake.diffcheck): the page shows the files and hunks the
    scorers saw. A file without hunks (binary, a rename, a mode change) has nothing to show. At most
    MAX_DIFF_LINES rows (hunk headers and lines) are shown; the count of the rest is returned.
    """
    by_line: dict[tuple[str, int], list[Finding]] = {}
    for finding in findings:
        by_line.setdefault((finding.file, finding.line), []).append(finding)
    try:
        patch = unidiff.PatchSet(diff)
    except (UnidiffParseError, ValueError):
        # Every stored diff passed intake's unidiff parse; a row from before that check is shown as plain text.
        lines = diff.splitlines()
        note = [DiffLine("note", None, None, conditional_escape(text)) for text in lines[:MAX_DIFF_LINES]]
        return [DiffFile(path="(unparsed diff)", lines=note)], max(0, len(lines) - MAX_DIFF_LINES)
    files: list[DiffFile] = []
    budget = MAX_DIFF_LINES
    omitted = 0
    for patched in patch:
        rows: list[tuple[str, int | None, int | None, str]] = []  # kind, old, new, text
        for hunk in patched:
            rows.append(("hunk", None, None, _hunk_header(hunk)))
            for line in hunk:
                kind = {"+": "add", "-": "del", " ": "ctx"}.get(line.line_type, "note")
                text = _text(line) if kind != "note" else line.line_type + _text(line)
                rows.append((kind, line.source_line_no, line.target_line_no, text))
        if not rows:
            continue
        shown, omitted = rows[: max(0, budget)], omitted + max(0, len(rows) - budget)
        budget -= len(shown)
        if not shown:
            continue
        current = DiffFile(
            path=patched.path.rstrip("\r"),
            lines=[],
            added=sum(kind == "add" for kind, *_ in shown),
            removed=sum(kind == "del" for kind, *_ in shown),
        )
        code = [(i, text) for i, (kind, _, _, text) in enumerate(shown) if kind in ("add", "del", "ctx")]
        html = dict(zip((i for i, _ in code), _highlight_lines(current.path, [t for _, t in code]), strict=True))
        for i, (kind, old, new, text) in enumerate(shown):
            row = DiffLine(kind, old, new, html.get(i, conditional_escape(text)))
            if kind in ("add", "ctx") and new is not None:
                row.findings = by_line.get((current.path, new), [])
            current.lines.append(row)
        files.append(current)
    return files, omitted


def findings_of(criterion: str, label: str, evidence: Mapping[str, Any]) -> list[Finding]:
    """Every evidence entry that names a file and a line (pylint messages, bandit findings, ...)."""
    found = []
    for value in evidence.values():
        if not isinstance(value, list):
            continue
        for entry in value:
            if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)):
                continue
            try:
                line = int(entry["line"])
            except (KeyError, TypeError, ValueError):
                continue
            code = " ".join(str(entry[k]) for k in ("id", "symbol", "test") if entry.get(k))
            message = str(entry.get("message") or entry.get("text") or "")
            found.append(
                Finding(criterion, label, entry["file"], line, f"{code}: {message}" if code else message,
                        str(entry.get("severity") or ""))
            )  # fmt: skip
    return found


def numeric_series(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Lists of numbers in the evidence (benchmark runs, timings), for a small plot. Empty if there are none."""
    return [
        {"label": key.replace("_", " "), "data": [round(float(v), 6) for v in value]}
        for key, value in evidence.items()
        if isinstance(value, list)
        and len(value) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ]


NONE = format_html('<span class="muted">{}</span>', "none")


def _scalar(value: Any) -> SafeString:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return format_html("{}", "yes" if value else "no")
    if isinstance(value, float):
        return conditional_escape(f"{value:.4g}")
    text = str(value)
    if "\n" in text or len(text) > 160:
        cut = text[:MAX_TEXT] + ("\n… (cut)" if len(text) > MAX_TEXT else "")
        return format_html(
            '<details class="out"><summary>{} lines</summary><pre>{}</pre></details>', text.count("\n") + 1, cut
        )
    return conditional_escape(text)


def _table(rows: list[dict[str, Any]]) -> SafeString:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    head = format_html_join("", "<th>{}</th>", ((k.replace("_", " "),) for k in keys))
    cells = (format_html_join("", "<td>{}</td>", ((render_evidence(row.get(k)),) for k in keys)) for row in rows)
    body = format_html_join("", "<tr>{}</tr>", ((cell,) for cell in cells))
    return format_html('<table class="ev"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)


def render_evidence(value: Any) -> SafeString:
    """Evidence as nested HTML (definition lists, tables, collapsed output), every string escaped."""
    if isinstance(value, dict):
        if not value:
            return NONE
        pairs = ((k.replace("_", " "), render_evidence(v)) for k, v in value.items())
        return format_html('<dl class="ev">{}</dl>', format_html_join("", "<dt>{}</dt><dd>{}</dd>", pairs))
    if not isinstance(value, list):
        return _scalar(value)
    if not value:
        return NONE
    shown = value[:MAX_ROWS]
    more = format_html('<p class="muted">and {} more</p>', len(value) - MAX_ROWS) if len(value) > MAX_ROWS else ""
    if all(isinstance(v, dict) for v in shown):
        return format_html("{}{}", _table(shown), more)
    if all(not isinstance(v, dict | list) and len(str(v)) < 80 for v in shown):
        return format_html("{}{}", format_html_join(", ", "{}", ((_scalar(v),) for v in shown)), more)
    items = format_html_join("", "<li>{}</li>", ((render_evidence(v),) for v in shown))
    return format_html('<ul class="ev">{}</ul>{}', items, more)
