"""The statistics behind the performance subscore, on seeded synthetic timings (no process is run)."""

from __future__ import annotations

import re
import statistics

import pytest

from benchmarks import perf_bench
from benchmarks.perf_bench import NOISE, SyntheticBench, sequential
from scoring.core.critics.performance.stats import (
    DEFAULT_KNOTS,
    MIN_PAIRS,
    TAMPER_FACTOR,
    compare,
    contradicts,
    pinned,
    score_from_ratio,
    sequential_compare,
)
from scoring.core.types import Weights


def test_default_knots_come_from_the_weight_profile():
    assert Weights(name="default", version=1, weights={}).perf_knots == DEFAULT_KNOTS


@pytest.mark.parametrize(
    ("ratio", "score"),
    [(0.5, 1.0), (1.0, 1.0), (1.05, 1.0), (1.175, 0.7), (1.30, 0.4), (1.65, 0.2), (2.0, 0.0), (5.0, 0.0)],
)
def test_score_is_linear_between_knots_and_clamped_outside(ratio, score):
    assert score_from_ratio(ratio) == pytest.approx(score)


def test_other_knots_give_other_scores():
    lenient = ((1.2, 1.0), (3.0, 0.0))
    assert score_from_ratio(1.3, lenient) == pytest.approx(1 - 0.1 / 1.8)
    assert score_from_ratio(1.1, lenient) == 1.0


def test_a_real_30_percent_slowdown_is_found_and_scored_about_0_4():
    decisions = [sequential("normal 5%", 1.3, seed) for seed in range(20)]
    scores = [score_from_ratio(d.ratio) for d in decisions]
    assert {d.verdict for d in decisions} == {"slower"}
    assert statistics.median(scores) == pytest.approx(0.4, abs=0.05)
    assert all(0.25 <= score <= 0.6 for score in scores)  # ratios 1.23 to 1.42 over these 20 seeds
    # A 95% interval should hold the true ratio nearly every time.
    assert sum(d.ci_low <= 1.30 <= d.ci_high for d in decisions) >= 17


def test_a_real_30_percent_speed_up_is_found():
    decision = sequential("lognormal 15%", 0.7, seed=3)
    # Once its interval is below the slowdown threshold, the score is 1.0 whatever more runs say, so
    # none are spent to claim `faster` (5 runs a side can never reach p < 0.001).
    assert decision.n_base <= 10 and decision.stop == "no_slowdown"
    assert decision.ci_high < 1.0 and score_from_ratio(decision.ci_high) == 1.0
    assert decision.steps[-1].endswith("more runs cannot move the score.")
    # With 20 pairs the same stream claims it.
    assert perf_bench.fixed("lognormal 15%", 0.7, seed=3).verdict == "faster"


@pytest.mark.parametrize("noise", sorted(NOISE))
def test_a_small_slowdown_near_the_threshold_stops_once_its_score_is_pinned(noise):
    pinned_at = [sequential(noise, 1.1, seed) for seed in range(30)]
    measured_out = [sequential(noise, 1.1, seed, score_tolerance=0.0) for seed in range(30)]
    stopped = [d for d in pinned_at if d.stop == "pinned"]
    assert stopped, "a 10% slowdown is pinned on some seeds of every noise shape"
    assert sum(d.n_base for d in pinned_at) < sum(d.n_base for d in measured_out)
    for decision in stopped:
        assert decision.ci_high > 1.05 and score_from_ratio(decision.ci_high) >= 0.8
        assert decision.verdict == "inconclusive"  # nothing is claimed
        assert decision.steps[-1].endswith("more runs would only narrow that.")
    # The score it stops with is about as close to the true 1.1's as measuring until decided gets.
    truth = score_from_ratio(1.1)
    error = statistics.mean(abs(score_from_ratio(d.ratio) - truth) for d in pinned_at)
    assert error <= statistics.mean(abs(score_from_ratio(d.ratio) - truth) for d in measured_out) + 0.05


def test_only_a_small_slowdown_is_pinned_however_narrow_the_interval():
    assert pinned(1.04, 1.10, knots=DEFAULT_KNOTS, tolerance=0.2)  # scores 1.0 to 0.88
    assert pinned(1.07, 1.13, knots=DEFAULT_KNOTS, tolerance=0.2)  # 0.95 to 0.81: past 1.05, still small
    assert not pinned(1.04, 1.10, knots=DEFAULT_KNOTS, tolerance=0.1)
    assert not pinned(1.14, 1.15, knots=DEFAULT_KNOTS, tolerance=0.2)  # narrow, but scores below 0.8
    assert not pinned(1.9, 2.1, knots=DEFAULT_KNOTS, tolerance=0.2)  # a clear regression is claimed, not pinned
    assert not pinned(0.9, 1.04, knots=DEFAULT_KNOTS, tolerance=0.2)  # below the threshold: no_slowdown's case
    # So a real 30% slowdown still runs until the rank test claims it, on every seed.
    assert {sequential("normal 5%", 1.3, seed).stop for seed in range(20)} == {"decided"}


@pytest.mark.parametrize("noise", sorted(NOISE))
def test_pure_noise_never_claims_a_regression(noise):
    """50 seeds per shape, 200 in all: noise alone must never be called slower (nor faster)."""
    verdicts = [sequential(noise, 1.0, seed).verdict for seed in range(50)]
    assert "slower" not in verdicts
    assert "faster" not in verdicts


def test_the_run_budget_is_respected():
    decision = sequential("lognormal 15%", 1.0, seed=1, max_runs=15, score_tolerance=0.0)
    assert decision.verdict == "inconclusive"
    assert decision.stop == "max_runs"
    assert decision.n_base == decision.n_patched == 15
    assert decision.steps[-1].endswith("inconclusive at 15 runs per side.")


def test_the_time_budget_is_respected():
    # Each synthetic pair takes about 0.1 s on the fake clock.
    decision = sequential("lognormal 15%", 1.0, seed=1, budget_s=1.2, score_tolerance=0.0)
    assert decision.stop == "budget"
    assert decision.elapsed_s <= 1.2
    assert decision.n_base < 30
    assert "time budget" in decision.steps[-1]


def test_a_tiny_time_budget_still_measures_enough_for_a_statistic():
    decision = sequential("normal 5%", 1.0, seed=0, budget_s=0.001)
    assert decision.n_base == MIN_PAIRS


def test_every_look_is_logged_with_its_interval_and_what_happens_next():
    decision = sequential("lognormal 15%", 1.3, seed=0)
    pattern = re.compile(r"n=\d+ pairs, ratio \d+\.\d\d, CI \[\d+\.\d\d, \d+\.\d\d\]: \w+")
    assert len(decision.steps) >= 2
    assert all(pattern.match(step) for step in decision.steps)
    assert all(re.search(r"adding \d+ runs\.$", step) for step in decision.steps[:-1])
    assert decision.steps[0].startswith("n=5 pairs")


def test_healing_continues_from_the_samples_already_taken():
    first = sequential("lognormal 15%", 1.0, seed=2, max_runs=5)
    bench = SyntheticBench("lognormal 15%", 1.0, seed=99)
    healed = sequential_compare(bench.pair, base=first.base, patched=first.patched, max_runs=20, clock=bench.clock)
    assert healed.base[:5] == first.base
    assert healed.n_base == 20
    assert healed.steps[0].startswith("n=5 each") and healed.steps[0].endswith("adding 5 runs.")


def test_sequential_needs_fewer_runs_than_a_fixed_20_and_never_contradicts_it():
    summary = perf_bench.run(seeds=8)["summary"]
    assert summary["mean_sequential_runs"] < 20
    assert summary["contradictions"] == 0
    assert summary["mean_agreement"] >= 0.85


def test_identical_timings_are_the_same_speed():
    result = compare([0.05] * 5, [0.05] * 5)
    assert (result.ratio, result.ci_low, result.ci_high, result.verdict) == (1.0, 1.0, 1.0, "same")


def test_comparisons_are_reproducible():
    bench = SyntheticBench("bimodal", 1.1, seed=4)
    base, patched = zip(*(bench.pair() for _ in range(12)), strict=True)
    assert compare(base, patched) == compare(base, patched)


def test_a_zero_timing_does_not_divide_by_zero():
    result = compare([0.0, 0.0, 0.0], [0.01, 0.01, 0.01])
    assert result.ratio > 1000


def stream(noise: str, effect: float, seed: int, runs: int = 10, scale: float = 1.0) -> tuple[list, list]:
    """`runs` interleaved (base, patched) timings of a synthetic benchmark, times `scale`."""
    bench = SyntheticBench(noise, effect, seed)
    base, patched = zip(*(bench.pair() for _ in range(runs)), strict=True)
    return [scale * b for b in base], [scale * p for p in patched]


def test_start_up_both_sides_share_no_longer_dilutes_the_ratio():
    # 20 ms of interpreter start-up, then 45 ms of work on the base and 90 ms on the patched tree.
    base, patched = [0.065, 0.066, 0.064, 0.065, 0.067], [0.110, 0.111, 0.109, 0.110, 0.112]
    diluted, measured = compare(base, patched), compare(base, patched, start_up_s=0.020)
    assert diluted.ratio == pytest.approx(1.69, abs=0.01)
    assert measured.ratio == pytest.approx(2.0, abs=0.01)
    assert measured.start_up_s == 0.020
    # Only the size is de-diluted: the rank test, the evidence that there is a change, is the same.
    assert measured.p_value == diluted.p_value


def test_start_up_is_never_taken_off_beyond_a_third_of_either_side():
    base, patched = stream("normal 5%", 1.3, seed=0)
    capped, raw = compare(base, patched, start_up_s=10.0), compare(base, patched)
    assert capped.start_up_s == pytest.approx(statistics.median(base) / 3)
    # So the slowdown seen on the whole process is magnified 1.5x at most.
    assert capped.ratio - 1 == pytest.approx(1.5 * (raw.ratio - 1), rel=1e-9)
    # A fast patched run caps it too: an estimate larger than the run never swallows it.
    fast = compare(base, [t / 10 for t in patched], start_up_s=10.0)
    assert fast.start_up_s == pytest.approx(statistics.median(patched) / 30)
    assert fast.ratio > 0.05


@pytest.mark.parametrize("noise", sorted(NOISE))
def test_pure_noise_never_claims_a_regression_after_taking_off_the_start_up(noise):
    verdicts = [sequential(noise, 1.0, seed, start_up_s=0.6 * perf_bench.BASE_S).verdict for seed in range(25)]
    assert "slower" not in verdicts
    assert "faster" not in verdicts


@pytest.mark.parametrize("noise", sorted(NOISE))
def test_honest_reports_never_contradict_the_harness(noise):
    """No-ops, real slow-downs and real speed-ups, on every noise shape: the report agrees in direction.

    The report times only the changed code, so it is more extreme than the harness's whole-run ratio in both
    directions (a 1.3x run may be a 2x hot loop; a 0.7x run may be a 0.1x hot loop), never the other way.
    """
    cases = [(1.0, 1.0), (1.3, 2.0), (2.0, 5.0), (0.7, 0.1), (0.9, 0.01)]
    for seed in range(15):
        for measured_effect, reported_effect in cases:
            harness = compare(*stream(noise, measured_effect, seed, runs=10))
            report = compare(*stream(noise, reported_effect, seed + 1000, runs=10, scale=0.01))
            assert not contradicts(harness, report), (seed, measured_effect, reported_effect)


@pytest.mark.parametrize("noise", sorted(NOISE))
def test_a_report_that_a_real_regression_got_faster_contradicts_the_harness(noise):
    # A 2x slower run whose clock was stopped (reports 0) or divided by 100 (reports 0.02x); 20 runs, so the
    # harness's rank test is significant under every noise shape (heavy tails need more than 10).
    for seed in range(5):
        harness = compare(*stream(noise, 2.0, seed, runs=20))
        assert harness.ci_low > 1.0
        for reported_effect in (0.0, 0.02):
            report = compare(*stream(noise, reported_effect, seed + 1000, runs=10, scale=0.01))
            assert contradicts(harness, report)


def test_a_report_that_merely_understates_a_regression_is_not_tamper():
    # The forged clock still says "slower" (or "same"): the harness's own verdict already scores the patch.
    harness = compare(*stream("normal 5%", 2.0, seed=0))
    for reported_effect in (1.0, 1.5):
        assert not contradicts(harness, compare(*stream("normal 5%", reported_effect, seed=1)))


def test_a_report_faster_by_less_than_the_tamper_factor_is_not_tamper():
    harness = compare(*stream("normal 5%", 1.5, seed=0))
    report = compare(*stream("normal 5%", 0.9, seed=1))
    assert report.ci_high < 1.0 and harness.ci_low < TAMPER_FACTOR * report.ci_high
    assert not contradicts(harness, report)


def test_a_doubt_the_caller_still_has_keeps_a_decided_comparison_measuring():
    bench = SyntheticBench("normal 5%", 1.0, seed=3)  # decided "same" at the second look
    plain = sequential_compare(bench.pair, clock=bench.clock, max_runs=15)
    bench = SyntheticBench("normal 5%", 1.0, seed=3)
    asked = []

    def follow_up(look):
        asked.append(look.verdict)
        return "wall time says slower, not yet shown"

    doubted = sequential_compare(bench.pair, clock=bench.clock, max_runs=15, follow_up=follow_up)
    assert plain.verdict == "same" and plain.n_base == 10
    assert doubted.n_base == 15 and doubted.stop == "max_runs"
    assert asked and "inconclusive" not in asked  # asked only about decided looks
    assert doubted.steps[1].endswith(": same (wall time says slower, not yet shown), adding 5 runs.")


# Interleaved pairs on a machine that switches between a fast and a slow state for spells of several runs: both
# runs of a pair share the state, so the pairs' ratios see the patch, not the machine.
SPELLS = [1.0, 1.0, 1.5, 1.5, 1.5, 1.0, 1.5, 1.0, 1.0, 1.5, 1.5, 1.0]


def test_paired_runs_cancel_a_state_both_runs_of_a_pair_share():
    base = [0.050 * state for state in SPELLS]
    patched = [0.050 * state * (1.01 if i % 2 else 0.99) for i, state in enumerate(SPELLS)]
    unpaired = compare(base, patched[1:] + patched[:1])  # the same timings, out of step: the spells no longer line up
    paired = compare(base, patched, paired=True)
    assert paired.paired and not unpaired.paired
    assert paired.verdict == "same"
    assert paired.ci_high - paired.ci_low < 0.05
    assert unpaired.ci_high - unpaired.ci_low > 0.3
    assert paired.describe().startswith("n=12 pairs, ratio 1.00")


def test_paired_runs_measure_a_real_slowdown_through_the_spells():
    base = [0.050 * state for state in SPELLS]
    look = compare(base, [t * 1.3 for t in base], paired=True)
    assert look.ratio == pytest.approx(1.3)
    assert look.ci_low > 1.25
    # The claim still needs the rank test on the timings: the spells hide a 1.3x slowdown from it at n=12.
    assert look.verdict == ("slower" if look.p_value < 0.001 else "inconclusive")


def test_paired_timings_must_come_in_pairs():
    with pytest.raises(ValueError, match="paired"):
        compare([0.1, 0.1, 0.1], [0.1, 0.1], paired=True)


def test_sequential_on_slow_spells_never_claims_a_change_that_is_not_there():
    for seed in range(6):
        decision = sequential("slow spells", 1.0, seed=seed)
        assert decision.verdict in ("same", "inconclusive")
        assert score_from_ratio(decision.ratio) >= 0.9
