"""Diff-aware findings: keep only what a patch introduces, as pure functions over plain data.

A finding is identified by its tool, its message id and a context that survives lines shifting: the enclosing
def/class and the whitespace-normalised source line. Base and patched findings of one file are matched as
multisets on that identity, so a function moved unchanged, or code pushed down by an insertion above it, brings
no new findings. A finding the patch fixed is only reported as fixed, never as a penalty.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: pylint messages that mean the file could not be judged at all (fatal category aside): it does not parse, or the
#: patch told pylint to skip it (`# pylint: skip-file`).
FATAL_SYMBOLS: frozenset[str] = frozenset({"syntax-error", "file-ignored"})


@dataclass(frozen=True)
class Finding:
    """One pylint message or bandit issue, located in one file.

    `id` is pylint's msg id (W0612) or bandit's test id (B602); `name` is pylint's symbol (unused-variable) or
    bandit's test name; `severity` is pylint's category (error, warning, refactor, convention, fatal, info) or
    bandit's severity (HIGH, MEDIUM, LOW). `scope` is the dotted enclosing def/class ("" at module level),
    `context` the whitespace-normalised source line. `suppressed` marks a pylint message that a pragma hid.
    """

    tool: str
    id: str
    name: str
    severity: str
    line: int
    column: int
    message: str
    scope: str = ""
    context: str = ""
    confidence: str = ""
    cwe: int | None = None
    suppressed: bool = False

    @property
    def is_fatal(self) -> bool:
        """True when this finding means the file could not be analysed (a parse failure, a skip-file pragma)."""
        return self.tool == "pylint" and (self.severity == "fatal" or self.name in FATAL_SYMBOLS)

    def identity(self) -> tuple[str, str, str, str]:
        """What must be equal for a base and a patched finding to be the same finding, wherever the line moved.

        A fatal finding is the same whatever line it lands on: a file that did not parse before and does not parse
        now was not broken by the patch.
        """
        if self.is_fatal:
            return (self.tool, self.id, "", "")
        return (self.tool, self.id, self.scope, self.context)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(**data)


@dataclass(frozen=True)
class FindingDiff:
    """The findings of one file that the patch introduced and those it fixed."""

    introduced: tuple[Finding, ...]
    fixed: tuple[Finding, ...]


def normalise_context(line_text: str) -> str:
    """The matching form of a source line: surrounding whitespace stripped, inner runs collapsed to one space."""
    return " ".join(line_text.split())


def diff_findings(base: Sequence[Finding], patched: Sequence[Finding], added_lines: Iterable[int]) -> FindingDiff:
    """Match one file's base and patched findings; return those the patch introduced and those it fixed.

    Introduced: a patched finding with no base twin (same identity, counted as a multiset) that sits on a line the
    patch added or changed; a fatal finding counts wherever it sits, since a parse error is often reported on a
    line after the edit. Patched findings on untouched lines claim their base twins first, so when the patch adds
    a copy of an existing problem, the copy (on an added line) is the one reported.
    Fixed: base findings left without a patched twin.
    """
    added = frozenset(added_lines)
    unmatched_base = Counter(finding.identity() for finding in base)
    untouched_first = sorted(patched, key=lambda finding: (finding.line in added, finding.line))
    introduced = []
    for finding in untouched_first:
        identity = finding.identity()
        if unmatched_base[identity] > 0:
            unmatched_base[identity] -= 1
        elif finding.line in added or finding.is_fatal:
            introduced.append(finding)
    fixed = []
    for finding in base:
        if unmatched_base[finding.identity()] > 0:
            unmatched_base[finding.identity()] -= 1
            fixed.append(finding)
    by_line = sorted(introduced, key=lambda finding: (finding.line, finding.column, finding.id))
    return FindingDiff(introduced=tuple(by_line), fixed=tuple(fixed))
