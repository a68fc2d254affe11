"""The healing loop: spend the remaining time on exactly the subscores the pipeline is unsure about."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from scoring.core.critics.base import Critic
from scoring.core.types import CriticResult, ScoringContext


def heal_all(
    ctx: ScoringContext,
    results: Mapping[str, CriticResult],
    critics: Iterable[Critic],
    *,
    threshold: float,
    budget_s: float,
) -> dict[str, CriticResult]:
    """Give every result with confidence below `threshold` to its critic's `heal`, within `budget_s` in total.

    The budget is split fairly: each uncertain critic, in registry order, gets the time still left divided by
    the number of uncertain critics still waiting, so time one critic does not use goes to the next. A critic's
    own rationale records what it did; when no time is left, a step says so. Never raises for a critic's sake:
    a heal that fails leaves the previous result standing, with a step saying why.
    """
    healed = dict(results)
    by_name = {critic.name: critic for critic in critics}
    # Unmeasured results are healed too (unlike aggregate.in_doubt, which routes on measured ones): more effort may
    # measure them.
    waiting = [name for name, result in results.items() if result.confidence < threshold and name in by_name]
    deadline = time.monotonic() + budget_s
    for index, name in enumerate(waiting):
        previous = healed[name]
        share = (deadline - time.monotonic()) / (len(waiting) - index)
        if share <= 0:
            healed[name] = _with_step(previous, "Step: healing skipped. The pipeline's healing time budget is spent.")
            continue
        try:
            healed[name] = by_name[name].heal(ctx, previous, share)
        except Exception as exc:
            healed[name] = _with_step(previous, f"Step: healing failed ({type(exc).__name__}); the result stands.")
    return healed


def _with_step(result: CriticResult, step: str) -> CriticResult:
    return CriticResult(
        result.criterion, result.score, result.confidence, (*result.rationale, step), result.evidence, result.flags
    )
