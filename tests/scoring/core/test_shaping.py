"""Reward shaping: under the plain weighted sum doing nothing pays; a gated profile makes it worthless."""

from __future__ import annotations

import pytest

from scoring.core.aggregate.route import aggregate
from scoring.core.aggregate.shaping import shaped_scores
from scoring.core.types import CriticResult, Weights

DEFAULT = {"correctness": 0.4, "style": 0.2, "performance": 0.2, "security": 0.2}
# A patch that changes nothing: no test moves, nothing to lint or flag, the benchmark flat.
NO_OP = {"correctness": 0.0, "style": 1.0, "performance": 1.0, "security": 1.0}
# The same no-op on a task without a benchmark (performance unmeasured, its weight renormalised away).
NO_OP_NO_BENCH = {"correctness": 0.0, "style": 1.0, "performance": None, "security": 1.0}
# An honest attempt: half the failing tests now pass, one lint warning.
HONEST_HALF = {"correctness": 0.5, "style": 0.8, "performance": 1.0, "security": 1.0}
# An honest attempt that still fails every test, with a lint warning.
HONEST_FAIL = {"correctness": 0.0, "style": 0.8, "performance": 1.0, "security": 1.0}


def _reward(scores: dict[str, float | None], shaping: str) -> float | None:
    results = {name: CriticResult(name, score, 0.95, ("Step: measured.",)) for name, score in scores.items()}
    weights = Weights(name="p", version=1, weights=DEFAULT, audit_rate=0.0, shaping=shaping)
    return aggregate(results, weights, audit_key="k", confidence_threshold=0.5).final_score


def test_under_the_plain_sum_a_patch_that_changes_nothing_outscores_an_honest_failing_attempt():
    # The attack the gating answers: doing nothing is "safe" under the default.
    assert _reward(NO_OP, "sum") == pytest.approx(0.6)
    assert _reward(NO_OP_NO_BENCH, "sum") == pytest.approx(0.5)
    assert _reward(NO_OP, "sum") > _reward(HONEST_FAIL, "sum")


@pytest.mark.parametrize("lazy", [NO_OP, NO_OP_NO_BENCH], ids=["no-op", "no-op-without-benchmark"])
def test_a_gated_profile_gives_a_patch_that_fixes_nothing_zero_and_rewards_progress(lazy):
    assert _reward(lazy, "gated") == 0.0
    assert _reward(HONEST_HALF, "gated") == pytest.approx(0.4 * 0.5 + 0.2 * 0.5 * (0.8 + 1.0 + 1.0))
    assert _reward(HONEST_HALF, "gated") > _reward(lazy, "gated")
    # A full fix still earns its style: clean beats sloppy at correctness 1.
    assert _reward({**HONEST_HALF, "correctness": 1.0}, "gated") < _reward({**NO_OP, "correctness": 1.0}, "gated")


def test_gating_keeps_unmeasured_criteria_out_and_refuses_unknown_shapings():
    scores = {"correctness": 0.5, "style": 1.0, "performance": None, "security": 1.0}
    assert shaped_scores(scores, "gated") == {"correctness": 0.5, "style": 0.5, "performance": None, "security": 0.5}
    assert _reward({**scores, "correctness": None}, "gated") is None  # no correctness, no final score
    with pytest.raises(ValueError, match="unknown reward shaping 'product'"):
        shaped_scores(scores, "product")


def test_exactly_correctness_gates_the_reward():
    """The gated shaping scales the other subscores by the one critic that gates: correctness, never another."""
    from scoring.core.critics.registry import GATE, REGISTRY

    assert [critic.name for critic in REGISTRY if critic.gates_reward] == ["correctness"] == [GATE]
