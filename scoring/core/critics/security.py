"""Security: the bandit findings a patch introduces, weighted by severity and confidence.

The curve (docs/style-security.md has worked examples):

    penalty = sum over introduced findings of SEVERITY_WEIGHT[severity] x CONFIDENCE_WEIGHT[confidence]
    score   = exp(-CURVE_K x penalty), capped at HIGH_SEVERITY_CAP when any introduced finding is HIGH severity

Unlike style it is not divided by the patch's size: one injection is one injection in a line or in a thousand.
One LOW/HIGH finding (an `import subprocess`) scores 0.86, a MEDIUM/HIGH one (`yaml.load`) 0.64, any HIGH one
(`shell=True`) at most 0.2. A file the analyser could not finish (timeout, crash) gives 0: the patch made its
judge fail, and whatever it hid there was not checked.
"""

from __future__ import annotations

import math
from typing import Any

from scoring.core.analysis.analyser import analyse_patch, python_files, tool_versions
from scoring.core.analysis.findings import Finding
from scoring.core.critics.base import Critic
from scoring.core.types import CriticResult, ScoringContext

SEVERITY_WEIGHT = {"LOW": 1.0, "MEDIUM": 3.0, "HIGH": 9.0}
CONFIDENCE_WEIGHT = {"LOW": 0.33, "MEDIUM": 0.67, "HIGH": 1.0}
CURVE_K = 0.15
#: The most a patch that introduces a HIGH-severity finding can score, whatever bandit's confidence.
HIGH_SEVERITY_CAP = 0.2
#: bandit is a pattern matcher: even a full analysis leaves doubt about what it did not recognise.
FULL_CONFIDENCE = 0.9
#: At most this many findings are spelled out in the rationale; the evidence holds all of them.
MAX_CITED = 10


class SecurityCritic(Critic):
    """Scores the bandit findings a patch introduces on the lines it adds or changes."""

    name = "security"
    label = "Security"
    default_weight = 0.2

    def evaluate(self, ctx: ScoringContext) -> CriticResult:
        """Analyse base and patched versions of the changed Python files and score the new bandit findings."""
        if not python_files(ctx):
            return self._result(
                1.0, 1.0, ["Step: security check. The patch changes no Python file: nothing to judge."], {}
            )
        analysis = analyse_patch(ctx)
        count = len(analysis.files)
        steps = [
            f"Step: security check with bandit {tool_versions()['bandit']} (every test, # nosec ignored), "
            f"on {count} changed Python file{'s' if count != 1 else ''}."
        ]
        diffs = analysis.diffs("bandit")
        introduced = [finding_entry(path, f) for path, diff in diffs.items() for f in diff.introduced]
        fixed = sum(len(diff.fixed) for diff in diffs.values())
        evidence: dict[str, Any] = {
            "introduced": introduced,
            "fixed": fixed,
            "tools": tool_versions(),
            "files": [item.path for item in analysis.files],
            "caveats": [sentence for _, sentence in analysis.caveats()],
        }
        confidence = analysis.confidence(FULL_CONFIDENCE)
        if analysis.failed:
            item = analysis.failed[0]
            steps.append(
                f"Step: the analyser could not finish {item.path} ({item.patched.error}). The patch made its judge "
                "fail, so what it holds was not checked and it gets no credit. Score 0."
            )
            return self._result(0.0, min(confidence, 0.3), steps, evidence)
        score, scoring_steps = score_security(introduced, fixed)
        steps += scoring_steps
        steps += [f"Step: confidence lowered: {sentence}." for _, sentence in analysis.caveats()]
        evidence["penalty"] = round(sum(entry["weight"] for entry in introduced), 4)
        return self._result(score, confidence, steps, evidence)

    def _result(self, score: float, confidence: float, steps: list[str], evidence: dict[str, Any]) -> CriticResult:
        return CriticResult(
            criterion=self.name,
            score=round(score, 4),
            confidence=confidence,
            rationale=tuple(steps),
            evidence=evidence,
        )


def finding_entry(path: str, finding: Finding) -> dict[str, Any]:
    """An introduced bandit finding as evidence the review page can pin to a diff line."""
    weight = SEVERITY_WEIGHT.get(finding.severity, 1.0) * CONFIDENCE_WEIGHT.get(finding.confidence, 1.0)
    return {
        "file": path,
        "line": finding.line,
        "id": finding.id,
        "cwe": finding.cwe,
        "test": finding.name,
        "message": finding.message,
        "severity": finding.severity,
        "confidence": finding.confidence,
        "weight": round(weight, 4),
    }


def score_security(introduced: list[dict[str, Any]], fixed: int) -> tuple[float, list[str]]:
    """The security score and the steps that explain it, from the introduced findings."""
    fixed_note = f" It removes {fixed} existing finding{'s' if fixed != 1 else ''} (not scored)." if fixed else ""
    if not introduced:
        return 1.0, [f"Step: no new bandit finding on the lines the patch adds or changes.{fixed_note} Score 1.0."]
    steps = [cite(entry) for entry in introduced[:MAX_CITED]]
    if len(introduced) > MAX_CITED:
        steps.append(f"Step: and {len(introduced) - MAX_CITED} more new findings (all listed in the evidence).")
    penalty = sum(entry["weight"] for entry in introduced)
    score = math.exp(-CURVE_K * penalty)
    steps.append(
        f"Step: penalty {penalty:.2f} (severity x confidence, summed); "
        f"score exp(-{CURVE_K:g} x {penalty:.2f}) = {score:.2f}.{fixed_note}"
    )
    high = [entry for entry in introduced if entry["severity"] == "HIGH"]
    if high and score > HIGH_SEVERITY_CAP:
        score = HIGH_SEVERITY_CAP
        steps.append(f"Step: {high[0]['id']} is HIGH severity. Score capped at {HIGH_SEVERITY_CAP:g}.")
    return score, steps


def cite(entry: dict[str, Any]) -> str:
    """One rationale step naming an introduced finding: test id, CWE, what it is, where, severity, confidence."""
    cwe = f"CWE-{entry['cwe']}, " if entry["cwe"] else ""
    what = entry["message"].rstrip(".")
    return (
        f"Step: security check. New {entry['id']} ({cwe}{what}) at {entry['file']}:{entry['line']}, "
        f"severity {entry['severity']}, confidence {entry['confidence']}."
    )
