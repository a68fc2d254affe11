"""Flag policy, weighted mean, routing and the audit sample: pure functions over stored subscores.

The same functions score a fresh patch and re-aggregate stored ones when an admin activates another weight
profile (and answer the what-if), so the two can never disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scoring.core import policy
from scoring.core.shaping import shaped_scores
from scoring.core.types import Critic, CriticResult, Weights


def default_weights(critics: Iterable[Critic], *, name: str = "default", version: int = 1) -> Weights:
    """The built-in profile: each critic's `default_weight`, the default band, audit rate and knots."""
    return Weights(name=name, version=version, weights={c.name: c.default_weight for c in critics})


def weighted_mean(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Mean of the measured scores, weights renormalised over them. None when nothing weighted was measured."""
    measured = [(scores[name], weights.get(name, 0.0)) for name in scores if scores[name] is not None]
    total = sum(w for _, w in measured)
    if total <= 0:
        return None
    return round(sum(s * w for s, w in measured) / total, 4)


def audit_picked(key: str, rate: float) -> bool:
    """Whether the audit sample takes the patch with this key. Deterministic: redelivery routes the same way."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"audit:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def in_doubt(results: Mapping[str, CriticResult], threshold: float) -> tuple[str, ...]:
    """The measured criteria whose confidence is still below `threshold` (after healing): they send a patch to
    review, and the review queue filters on them."""
    return tuple(name for name, r in results.items() if r.score is not None and r.confidence < threshold)


@dataclass(frozen=True)
class Aggregate:
    final_score: float | None
    route: str  # "auto" | "review" | "audit"
    flags: tuple[str, ...]
    reasons: tuple[str, ...]  # why it is routed to review, for the rationale and the queue
    #: The subscores after the flag policy (scoring.core.policy): what the Result shows and stores.
    results: Mapping[str, CriticResult]


def aggregate(
    results: Mapping[str, CriticResult],
    weights: Weights,
    *,
    audit_key: str,
    confidence_threshold: float,
) -> Aggregate:
    """Final score and route for a set of subscores under one weight profile, after the flag policy.

    docs/scoring.md, "Routing" and "Flag policy": `tamper` from any critic sets correctness to 0 before the mean.
    """
    results = policy.apply(results)
    flags = sorted({flag for r in results.values() for flag in r.flags})
    correctness = results.get("correctness")
    if correctness is None or correctness.score is None:
        final = None
    else:
        # Reward shaping hook (scoring.core.shaping): the profile may gate the other subscores on correctness.
        scores = shaped_scores({name: r.score for name, r in results.items()}, weights.shaping)
        final = weighted_mean(scores, weights.weights)

    reasons = []
    if final is None:
        reasons.append("correctness could not be measured")
    elif weights.band_low <= final <= weights.band_high:
        reasons.append(f"reward {final:.2f} is in the borderline band [{weights.band_low}, {weights.band_high}]")
    reasons.extend(f"flag {flag}" for flag in policy.review_flags(flags))
    reasons.extend(
        f"{name} is still uncertain (confidence {results[name].confidence:.2f})"
        for name in in_doubt(results, confidence_threshold)
    )
    if reasons:
        route = "review"
    elif audit_picked(audit_key, weights.audit_rate):
        route = "audit"
        reasons.append("picked by the audit sample")
    else:
        route = "auto"
    return Aggregate(final_score=final, route=route, flags=tuple(flags), reasons=tuple(reasons), results=results)
