"""Style: the pylint messages a patch introduces, weighted as pylint weighs them, per statement it adds or changes.

The curve (docs/style-security.md has worked examples):

    weighted = 5 x errors + 1 x (warnings + refactors + conventions)     over the introduced messages
    density  = weighted / max(statements added or changed, MIN_STATEMENTS)
    score    = exp(-CURVE_K x density)

so a clean patch scores 1.0, one convention message in a 20-statement patch 0.88, one in a one-line patch 0.61,
one error in 10 statements 0.29. Any introduced fatal message (the file does not parse, or the patch added
`# pylint: skip-file`) gives 0 and is cited. A file the analyser could not finish (timeout, crash) also gives 0:
the patch made its judge fail.
"""

from __future__ import annotations

import math
from typing import Any

from scoring.core.analysis.analyser import PatchAnalysis, analyse_patch, tool_versions
from scoring.core.analysis.findings import Finding
from scoring.core.critics.base import Critic
from scoring.core.types import CriticResult, ScoringContext

#: pylint's own weighting (its evaluation formula): an error counts five times a warning, refactor or convention.
CATEGORY_WEIGHT = {"error": 5, "warning": 1, "refactor": 1, "convention": 1}
#: Steepness of the curve: density 0.2 (one message per five statements) scores exp(-0.5) = 0.61.
CURVE_K = 2.5
#: Small patches are divided by at least this many statements, so one message in a one-liner is not a zero.
MIN_STATEMENTS = 5
#: Confidence when every changed file was fully analysed: pylint is deterministic, the curve is a judgement.
FULL_CONFIDENCE = 0.95
#: At most this many findings are spelled out in the rationale; the evidence holds all of them.
MAX_CITED = 10


class StyleCritic(Critic):
    """Scores the pylint messages a patch introduces on the lines it adds or changes."""

    name = "style"
    label = "Style"
    default_weight = 0.2

    def evaluate(self, ctx: ScoringContext) -> CriticResult:
        """Analyse base and patched versions of the changed Python files and score what the patch introduced."""
        analysis = analyse_patch(ctx)
        flags = frozenset({"tamper"}) if analysis.lint_config_edited else frozenset()
        tamper_steps = []
        if analysis.lint_config_edited:
            tamper_steps.append(
                f"Step: the patch edits lint configuration ({', '.join(analysis.lint_config_edited)}). The judge "
                "reads its configuration from the base tree only, so the edit changes nothing here; flagged tamper."
            )
        if not analysis.files:
            nothing = "Step: style check. The patch changes no Python file: nothing to judge."
            return self._result(1.0, 1.0, [nothing, *tamper_steps], {}, flags)
        steps = [self._opening(analysis), *tamper_steps]
        steps += [f"Step: {note}." for note in analysis.config_notes]
        diffs = analysis.diffs("pylint")
        introduced = [finding_entry(path, f) for path, diff in diffs.items() for f in diff.introduced]
        fixed = sum(len(diff.fixed) for diff in diffs.values())
        statements = sum(
            len(item.patched.statement_lines & item.added_lines) for item in analysis.files if item.path in diffs
        )
        evidence: dict[str, Any] = {
            "introduced": introduced,
            "fixed": fixed,
            "statements": statements,
            "config": analysis.config,
            "tools": tool_versions(),
            "files": [item.path for item in analysis.files],
            "caveats": [sentence for _, sentence in analysis.caveats()],
            "weighted": sum(entry["weight"] for entry in introduced),
        }
        score, scoring_steps = score_style(analysis, introduced, statements, fixed)
        steps += scoring_steps
        steps += [f"Step: confidence lowered: {sentence}." for _, sentence in analysis.caveats()]
        confidence = analysis.confidence(FULL_CONFIDENCE)
        if analysis.failed:
            confidence = min(confidence, 0.3)
        return self._result(score, confidence, steps, evidence, flags)

    def _opening(self, analysis: PatchAnalysis) -> str:
        count = len(analysis.files)
        return (
            f"Step: style check with pylint {tool_versions()['pylint']} and {analysis.config}, "
            f"on {count} changed Python file{'s' if count != 1 else ''}."
        )

    def _result(
        self,
        score: float,
        confidence: float,
        steps: list[str],
        evidence: dict[str, Any] | None = None,
        flags: frozenset[str] = frozenset(),
    ) -> CriticResult:
        return CriticResult(
            criterion=self.name,
            score=round(score, 4),
            confidence=confidence,
            rationale=tuple(steps),
            evidence=evidence or {},
            flags=flags,
        )


def finding_entry(path: str, finding: Finding) -> dict[str, Any]:
    """An introduced pylint message as evidence the review page can pin to a diff line."""
    return {
        "file": path,
        "line": finding.line,
        "id": finding.id,
        "symbol": finding.name,
        "message": finding.message,
        "severity": finding.severity,
        "weight": CATEGORY_WEIGHT.get(finding.severity, 0),
        "fatal": finding.is_fatal,
        "suppressed": finding.suppressed,
    }


def score_style(
    analysis: PatchAnalysis, introduced: list[dict[str, Any]], statements: int, fixed: int
) -> tuple[float, list[str]]:
    """The style score and the steps that explain it, from the introduced messages and the statement count."""
    if analysis.failed:
        item = analysis.failed[0]
        return 0.0, [
            f"Step: the analyser could not finish {item.path} ({item.patched.error}). The patch made its judge "
            "fail, so it gets no credit. Score 0."
        ]
    fatal = [entry for entry in introduced if entry["fatal"]]
    if fatal:
        first = fatal[0]
        return 0.0, [
            f"Step: fatal {first['id']} {first['symbol']} at {first['file']}:{first['line']}: "
            f"{first['message'].rstrip('.')}. "
            "The file cannot be judged. Score 0."
        ]
    fixed_note = f" It removes {fixed} existing message{'s' if fixed != 1 else ''} (not scored)." if fixed else ""
    if not introduced:
        return 1.0, [
            f"Step: no new pylint message on the {statements} statements added or changed.{fixed_note} Score 1.0."
        ]
    steps = [cite(entry) for entry in introduced[:MAX_CITED]]
    if len(introduced) > MAX_CITED:
        steps.append(f"Step: and {len(introduced) - MAX_CITED} more new messages (all listed in the evidence).")
    weighted = sum(entry["weight"] for entry in introduced)
    divisor = max(statements, MIN_STATEMENTS)
    density = weighted / divisor
    score = math.exp(-CURVE_K * density)
    steps.append(
        f"Step: weighted messages {weighted} over {statements} statements added or changed (divided by {divisor}): "
        f"density {density:.2f}; score exp(-{CURVE_K:g} x {density:.2f}) = {score:.2f}.{fixed_note}"
    )
    return score, steps


def cite(entry: dict[str, Any]) -> str:
    """One rationale step naming an introduced message, where it is and what it weighs."""
    hidden = " (hidden by a pragma, still counted)" if entry["suppressed"] else ""
    return (
        f"Step: new {entry['id']} {entry['symbol']} at {entry['file']}:{entry['line']} "
        f"({entry['severity']}, weight {entry['weight']}): {entry['message'].rstrip('.')}{hidden}."
    )
