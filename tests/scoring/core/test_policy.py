"""The flag policy: one table, applied the same way by fresh scoring, what-if and re-aggregation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scoring.core.aggregate import policy
from scoring.core.aggregate.route import aggregate
from scoring.core.pipeline import build_result
from scoring.core.types import FLAGS, CriticResult, PipelineSettings, Weights

WEIGHTS = Weights(name="t", version=1, weights={"correctness": 0.4, "style": 0.2, "performance": 0.2, "security": 0.2})
DOCS = Path(__file__).resolve().parents[3] / "docs" / "scoring.md"


def result(name: str, score: float | None = 1.0, *flags: str, confidence: float = 0.95) -> CriticResult:
    return CriticResult(name, score, confidence, (f"Step: {name} check. Score {score}.",), flags=frozenset(flags))


def honest(**overrides: CriticResult) -> dict[str, CriticResult]:
    """Four confident, perfect subscores (an honest fix), some replaced by `overrides`."""
    return {name: result(name) for name in ("correctness", "style", "performance", "security")} | overrides


def route(results: dict[str, CriticResult]):
    return aggregate(results, WEIGHTS, audit_key="k", confidence_threshold=0.7)


def test_the_policy_table_covers_the_whole_flag_vocabulary() -> None:
    assert set(policy.POLICY) == FLAGS


def test_review_flags_are_exactly_those_the_table_sends_to_review() -> None:
    expected = ("critic_disagrees", "perf_inconclusive", "suspicious", "tamper", "task_broken")
    assert policy.review_flags(FLAGS) == expected
    assert policy.review_flags(["overfit", "faster", "tests_modified"]) == ()


def test_the_docs_show_the_same_policy_table() -> None:
    text = DOCS.read_text()
    section = text.split("## Flag policy", 1)[1].split("\n## ", 1)[0]
    rows = {
        match[0]: [cell.strip() for cell in match[1].split("|")]
        for match in re.findall(r"^\| `(\w+)` \|(.*)\|$", section, flags=re.MULTILINE)
    }
    acting = {flag for flag, effect in policy.POLICY.items() if effect != policy.Effect()}
    assert set(rows) == acting
    for flag, (correctness, routed, reward) in rows.items():
        effect = policy.POLICY[flag]
        assert ("0" in correctness) == effect.zero_correctness, flag
        assert (routed == "review") == effect.review, flag
        assert ("null" in reward) == effect.withhold, flag


@pytest.mark.parametrize("raiser", ["performance", "style", "security"])
def test_tamper_from_any_critic_sets_correctness_to_zero_and_routes_to_review(raiser: str) -> None:
    results = honest(**{raiser: result(raiser, 1.0, "tamper")})

    agg = route(results)

    correctness = agg.results["correctness"]
    assert correctness.score == 0.0
    assert correctness.rationale[-1].startswith("Step: flag policy. Tamper raised by the " + raiser + " critic.")
    assert "measured: 1.00" in correctness.rationale[-1]
    assert agg.final_score == 0.6
    assert agg.route == "review"
    assert "flag tamper" in agg.reasons
    assert results["correctness"].score == 1.0  # the input is left alone


def test_tamper_from_two_critics_names_both() -> None:
    agg = route(honest(style=result("style", 1.0, "tamper"), security=result("security", 1.0, "tamper")))

    assert "Tamper raised by the style and security critics." in agg.results["correctness"].rationale[-1]


def test_tamper_sets_correctness_to_zero_even_when_it_could_not_be_measured() -> None:
    agg = route(honest(correctness=result("correctness", None), performance=result("performance", 1.0, "tamper")))

    assert agg.results["correctness"].score == 0.0
    assert "measured: not measured" in agg.results["correctness"].rationale[-1]
    assert agg.route == "review"


def test_tamper_the_correctness_critic_already_scored_is_left_as_it_explained_it() -> None:
    steps = ("Step: tests. Tamper sets the score to 0.",)
    own = CriticResult("correctness", 0.0, 1.0, steps, flags=frozenset({"tamper"}))

    agg = route(honest(correctness=own))

    assert agg.results["correctness"] == own
    assert agg.route == "review"


def test_tamper_the_correctness_critic_raised_without_scoring_zero_still_zeroes_it() -> None:
    agg = route(honest(correctness=result("correctness", 0.8, "tamper")))

    assert agg.results["correctness"].score == 0.0
    assert "Tamper raised by the correctness critic." in agg.results["correctness"].rationale[-1]


def test_re_aggregating_stored_subscores_gives_the_same_result() -> None:
    """What the Result stores is the policy's output; building it again (what-if, a profile change) adds nothing."""
    settings = PipelineSettings(cache_root=Path("/nonexistent"), work_root=Path("/nonexistent"))
    results = honest(performance=result("performance", 1.0, "tamper"))
    first = build_result(task_name="t", results=results, weights=WEIGHTS, settings=settings, audit_key="k", meta={})
    stored = {name: CriticResult.from_json(name, data) for name, data in first["subscores"].items()}

    again = build_result(task_name="t", results=stored, weights=WEIGHTS, settings=settings, audit_key="k", meta={})

    assert again == first
    assert first["subscores"]["correctness"]["score"] == 0.0
    assert first["final_score"] == 0.6
    assert first["route"] == "review"


def test_suspicious_routes_to_review_and_is_withheld_until_labelled() -> None:
    agg = route(honest(correctness=result("correctness", 1.0, "suspicious", confidence=0.95)))

    assert agg.route == "review"
    assert agg.results["correctness"].score == 1.0  # withheld from trainers, not rewritten
    assert policy.withheld(agg.flags, labelled=False, withholding=True)
    assert not policy.withheld(agg.flags, labelled=True, withholding=True)
    assert not policy.withheld(agg.flags, labelled=False, withholding=False)


@pytest.mark.parametrize("flag", sorted(FLAGS - {"suspicious"}))
def test_no_other_flag_withholds_the_reward(flag: str) -> None:
    assert not policy.withheld([flag], labelled=False, withholding=True)
