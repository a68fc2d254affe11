"""Reward shaping a weight profile can choose: how the subscores combine before the weighted mean.

Under the plain weighted sum (the default, DESIGN's "weighted mean of the measured subscores") a patch that
changes nothing scores correctness 0 but style, security (nothing to judge: 1.0) and a flat performance: 0.6
with the default weights, more than an honest attempt that fails its tests and adds a lint warning. A policy
can learn that doing nothing is safe. The `gated` shaping makes every other subscore count in proportion to
correctness, so the reward is 0 until the tests move and the style/speed/safety of a working patch still matter.

| shaping | reward |
|---|---|
| `sum` (default) | sum(w_i * s_i) / sum(w_i) over the measured criteria |
| `gated` | the same with each s_i other than correctness replaced by s_i * correctness |
"""

from __future__ import annotations

from collections.abc import Mapping

from scoring.core.critics.registry import GATE
from scoring.core.types import GATE_CLOSED, GATE_SUMMED, CriticResult

SUM = "sum"
GATED = "gated"
#: Every shaping a profile may name, with the one-line description the weights page shows.
SHAPINGS: Mapping[str, str] = {
    SUM: "weighted sum of the subscores",
    GATED: "other subscores count in proportion to correctness (a no-op earns 0)",
}


def shaped_scores(scores: Mapping[str, float | None], shaping: str) -> dict[str, float | None]:
    """The subscores the weighted mean should see under `shaping`; unmeasured (None) ones stay None.

    Raises ValueError on an unknown shaping. Without a measured correctness, `gated` leaves the scores as they
    are (the pipeline gives no final score then anyway).
    """
    if shaping not in SHAPINGS:
        raise ValueError(f"unknown reward shaping {shaping!r}; choose one of {', '.join(SHAPINGS)}")
    gate = scores.get(GATE)
    if shaping == SUM or gate is None:
        return dict(scores)
    return {name: value if name == GATE or value is None else value * gate for name, value in scores.items()}


def gate_after(prior: Mapping[str, CriticResult], shaping: str) -> str:
    """What a measured correctness of 0 in `prior` (the earlier stages) means for the other subscores under `shaping`.

    GATE_CLOSED: `gated` multiplies them by 0, so nothing they measure can move the reward; GATE_SUMMED: they
    still count; "" when correctness is not measured yet or above 0.
    """
    gate = prior.get(GATE)
    if gate is None or gate.score != 0:
        return ""
    return GATE_CLOSED if shaping == GATED else GATE_SUMMED
