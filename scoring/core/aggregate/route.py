"""Flag policy, weighted mean, routing and the audit sample: pure functions over stored subscores.

The same functions score a fresh patch and re-aggregate stored ones when an admin activates another weight
profile (and answer the what-if), so the two can never disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from scoring.core.aggregate import policy
from scoring.core.aggregate.shaping import shaped_scores
from scoring.core.critics.base import Critic
from scoring.core.types import CriticResult, Weights


def default_weights(critics: Iterable[Critic], *, name: str = "default", version: int = 1) -> Weights:
    """The built-in profile: each critic's `default_weight`, the default band, audit rate and knots."""
    return Weights(name=name, version=version, weights={c.name: c.default_weight for c in critics})


def weighted_mean(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Mean of the measured scores, weights renormalised over them. None when nothing weighted was measured."""
    measured = [(score, weights.get(name, 0.0)) for name, score in scores.items() if score is not None]
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


class Route(StrEnum):
    """Where a scored patch goes: accepted as is, or to the review queue (by a reason, or by the audit sample)."""

    AUTO = "auto"
    REVIEW = "review"
    AUDIT = "audit"


#: The flag a learned critic's disagreement adds (scoring.core.learned); it routes to review like any review flag.
CRITIC_DISAGREES = "critic_disagrees"


def route_for(
    *,
    final_score: float | None,
    flags: Sequence[str],
    doubt: Mapping[str, float],
    weights: Weights,
    audit_key: str,
    held: bool = False,
) -> tuple[Route, tuple[str, ...]]:
    """The route of a patch and every reason for it: the one function that decides a route.

    Every input that can move a patch to the queue is a parameter: the reward against the weight profile's band,
    the flags (through the flag policy: `critic_disagrees`, the learned critic's disagreement, among them), the
    criteria still in doubt (name -> confidence), the deterministic audit sample, and `held` (a reviewer holds
    it, so it stays in the queue).
    """
    reasons = []
    if final_score is None:
        reasons.append("correctness could not be measured")
    elif weights.band_low <= final_score <= weights.band_high:
        reasons.append(f"reward {final_score:.2f} is in the borderline band [{weights.band_low}, {weights.band_high}]")
    reasons.extend(f"flag {flag}" for flag in policy.review_flags(flags))
    reasons.extend(f"{name} is still uncertain (confidence {confidence:.2f})" for name, confidence in doubt.items())
    if reasons:
        return Route.REVIEW, tuple(reasons)
    if audit_picked(audit_key, weights.audit_rate):
        return Route.AUDIT, ("picked by the audit sample",)
    if held:
        return Route.REVIEW, ("a reviewer holds it in the queue",)
    return Route.AUTO, ()


@dataclass(frozen=True)
class Aggregate:
    final_score: float | None
    route: Route
    flags: tuple[str, ...]
    reasons: tuple[str, ...]  # why it is routed to review, for the rationale and the queue
    #: The subscores after the flag policy (scoring.core.aggregate.policy): what the Result shows and stores.
    results: Mapping[str, CriticResult]


def aggregate(
    results: Mapping[str, CriticResult],
    weights: Weights,
    *,
    audit_key: str,
    confidence_threshold: float,
    critic_disagrees: Sequence[str] = (),
    held: bool = False,
) -> Aggregate:
    """Final score and route for a set of subscores under one weight profile, after the flag policy.

    `critic_disagrees`: the criteria on which the learned critic's view (stored in the Result's meta) disagrees
    (flag `critic_disagrees`); `held`: a reviewer holds the patch in the queue.

    docs/scoring.md, "Routing" and "Flag policy": `tamper` from any critic sets correctness to 0 before the mean.
    """
    results = policy.apply(results)
    flags = sorted({flag for r in results.values() for flag in r.flags})
    correctness = results.get("correctness")
    if correctness is None or correctness.score is None:
        final = None
    else:
        # Reward shaping hook (scoring.core.aggregate.shaping): the profile may gate the other subscores on correctness.
        scores = shaped_scores({name: r.score for name, r in results.items()}, weights.shaping)
        final = weighted_mean(scores, weights.weights)

    disagrees = tuple(critic_disagrees)
    if disagrees:
        flags = sorted({*flags, CRITIC_DISAGREES})
    doubt = {name: results[name].confidence for name in in_doubt(results, confidence_threshold)}
    route, reasons = route_for(
        final_score=final,
        flags=flags,
        doubt=doubt,
        weights=weights,
        audit_key=audit_key,
        held=held,
    )
    return Aggregate(final_score=final, route=route, flags=tuple(flags), reasons=reasons, results=results)
