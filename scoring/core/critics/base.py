"""The base class every critic extends: sensible defaults for `heal` and `rescore`."""

from __future__ import annotations

from abc import ABC, abstractmethod

from scoring.core.types import CriticResult, ScoringContext, Weights


class BaseCritic(ABC):
    """A critic with nothing to heal and nothing to re-score. Subclasses override what they can do better."""

    name: str = ""
    label: str = ""
    default_weight: float = 0.0
    #: The Celery queue whose workers run this critic: "exec" (tests, analysis) or "bench" (alone on its host).
    queue: str = "exec"

    @abstractmethod
    def evaluate(self, ctx: ScoringContext) -> CriticResult:
        """Measure the patch in `ctx`; never raise on anything the patch does."""

    def heal(self, ctx: ScoringContext, previous: CriticResult, budget_s: float) -> CriticResult:
        """Default: no extra effort is possible, the previous result stands."""
        return previous

    def rescore(self, result: CriticResult, weights: Weights) -> CriticResult:
        """Default: the score does not depend on the weight profile."""
        return result
