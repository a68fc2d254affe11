"""The healing loop: uncertain subscores get their critic's heal, within the time budget, with steps recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.core.aggregate import healing
from scoring.core.critics.base import Critic
from scoring.core.critics.correctness.critic import CorrectnessCritic
from scoring.core.types import CriticResult, ScoringContext
from tests.scoring.core.fixtures import gcd_task


class RecordingCritic(Critic):
    """A critic whose heal records the budget it was given and raises its confidence."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.budgets: list[float] = []

    def evaluate(self, ctx: ScoringContext) -> CriticResult:
        return result(self.name, 0.1)

    def heal(self, ctx: ScoringContext, previous: CriticResult, budget_s: float) -> CriticResult:
        self.budgets.append(budget_s)
        return CriticResult(self.name, previous.score, 0.9, (*previous.rationale, "Step: healed."))


def result(name: str, confidence: float) -> CriticResult:
    return CriticResult(name, 0.5, confidence, ("Step: measured.",))


def test_only_uncertain_results_are_healed_with_a_fair_share_of_the_budget() -> None:
    critics = [RecordingCritic("a"), RecordingCritic("b"), RecordingCritic("c")]
    results = {"a": result("a", 0.4), "b": result("b", 0.95), "c": result("c", 0.6)}
    healed = healing.heal_all(None, results, critics, threshold=0.7, budget_s=10)  # type: ignore[arg-type]  # healing never reads the context in this test
    assert healed["b"] is results["b"]
    assert healed["a"].rationale == ("Step: measured.", "Step: healed.")
    assert critics[1].budgets == []
    assert critics[0].budgets[0] == pytest.approx(5, abs=0.5)
    assert critics[2].budgets[0] == pytest.approx(10, abs=0.5)  # what "a" left unused goes to "c"


def test_no_budget_left_is_said_in_the_rationale() -> None:
    critic = RecordingCritic("a")
    healed = healing.heal_all(None, {"a": result("a", 0.1)}, [critic], threshold=0.7, budget_s=0)  # type: ignore[arg-type]  # healing never reads the context in this test
    assert critic.budgets == []
    assert healed["a"].rationale[-1].startswith("Step: healing skipped")


def test_a_failing_heal_keeps_the_previous_result() -> None:
    class Broken(Critic):
        name = "a"

        def evaluate(self, ctx):
            return result("a", 0.1)

        def heal(self, ctx, previous, budget_s):
            raise RuntimeError("boom")

    healed = healing.heal_all(None, {"a": result("a", 0.1)}, [Broken()], threshold=0.7, budget_s=5)  # type: ignore[arg-type]  # healing never reads the context in this test
    assert healed["a"].score == 0.5
    assert "healing failed (RuntimeError)" in healed["a"].rationale[-1]


def test_regression_is_rerun_and_confirmed(tmp_path: Path) -> None:
    broken_lcm = gcd_task.FIXED.replace("return abs(a * b)", "return 1 + abs(a * b)")
    critic = CorrectnessCritic()
    diff = gcd_task.make_diff({"gcd/__init__.py": broken_lcm})
    with gcd_task.prepared(gcd_task.task(tmp_path, flaky_reruns=2), diff) as ctx:
        first = critic.evaluate(ctx)
        healed = healing.heal_all(ctx, {"correctness": first}, [critic], threshold=0.7, budget_s=60)
    after = healed["correctness"]
    assert first.confidence < 0.7 <= after.confidence
    assert after.score == first.score == pytest.approx(0.75)
    assert after.rationale[: len(first.rationale)] == first.rationale
    assert any("Re-ran the tests 2 more time(s)" in step for step in after.rationale)
    assert any("the failures are real" in step for step in after.rationale)
    assert "flaky" not in after.flags


def test_suspicious_code_whose_tests_all_pass_is_not_rerun(tmp_path: Path) -> None:
    sneaky = gcd_task.FIXED + "\n\ndef _peek():\n    import _pytest.reports\n    return _pytest.reports\n"
    runner = gcd_task.CountingRunner()
    critic = CorrectnessCritic()
    diff = gcd_task.make_diff({"gcd/__init__.py": sneaky})
    with gcd_task.prepared(gcd_task.task(tmp_path, flaky_reruns=2), diff, runner) as ctx:
        first = critic.evaluate(ctx)
        before = runner.calls
        healed = healing.heal_all(ctx, {"correctness": first}, [critic], threshold=0.7, budget_s=60)
    assert "suspicious" in first.flags and first.score == 1.0 and first.confidence < 0.7
    assert runner.calls == before, "re-running tests that all passed cannot settle a doubt about suspicious code"
    assert healed["correctness"].score == first.score
