"""The one critic interface: every critic extends `Critic`, and the registry lists each once.

A critic is a plain class over plain data (scoring.core.types): no ORM, no Django. Defaults here mean a critic
with nothing to heal and nothing to re-score overrides only `evaluate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from scoring.core.types import CriticResult, ScoringContext, Weights


class Critic(ABC):
    """A pluggable scorer, listed once in scoring.core.critics.registry.REGISTRY.

    `evaluate` must not raise on anything the patch does: hostile code becomes a score, flags and rationale.
    `heal` spends more effort on exactly the doubt in `previous` (more runs, re-runs of failing tests) within
    `budget_s` seconds and returns a new result whose rationale extends the old one.
    """

    name: str = ""
    label: str = ""
    default_weight: float = 0.0
    #: The Celery queue whose workers run this critic: "exec" (tests, analysis) or "bench" (benchmarks).
    queue: str = "exec"
    #: Whether this critic gates the reward: under the `gated` shaping (scoring.core.aggregate.shaping) every
    #: other subscore counts in proportion to this one. Exactly one critic of the registry gates.
    gates_reward: bool = False

    @abstractmethod
    def evaluate(self, ctx: ScoringContext) -> CriticResult:
        """Measure the patch in `ctx`; never raise on anything the patch does."""

    def heal(self, ctx: ScoringContext, previous: CriticResult, budget_s: float) -> CriticResult:
        """Default: no extra effort is possible, the previous result stands."""
        return previous

    def rescore(self, result: CriticResult, weights: Weights) -> CriticResult:
        """Score again from stored evidence under another weight profile (e.g. performance knots). No re-run.

        Default: the score does not depend on the weight profile."""
        return result
