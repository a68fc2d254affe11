"""Routing on doubt: which criteria are still uncertain, and how that sends a patch to review."""

from __future__ import annotations

from scoring.core.aggregate.route import aggregate, in_doubt
from scoring.core.types import CriticResult, Weights

WEIGHTS = Weights(name="t", version=1, weights={"correctness": 0.7, "style": 0.1, "performance": 0.1, "security": 0.1})


def results(**subscores: tuple[float | None, float]) -> dict[str, CriticResult]:
    return {
        name: CriticResult(name, score, confidence, ("Step: x.",)) for name, (score, confidence) in subscores.items()
    }


def test_in_doubt_names_measured_criteria_below_the_threshold_in_order():
    found = results(correctness=(1.0, 0.95), style=(0.8, 0.4), performance=(None, 0.0), security=(1.0, 0.69))

    assert in_doubt(found, 0.7) == ("style", "security")
    assert in_doubt(found, 0.4) == ()


def test_a_criterion_in_doubt_sends_the_patch_to_review_and_says_why():
    confident = results(correctness=(1.0, 0.95), style=(1.0, 0.9), performance=(1.0, 0.9), security=(1.0, 0.9))
    doubtful = {**confident, **results(performance=(1.0, 0.3))}

    assert aggregate(confident, WEIGHTS, audit_key="k", confidence_threshold=0.7).route == "auto"
    routed = aggregate(doubtful, WEIGHTS, audit_key="k", confidence_threshold=0.7)
    assert routed.route == "review"
    assert routed.reasons == ("performance is still uncertain (confidence 0.30)",)
