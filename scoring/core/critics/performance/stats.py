"""Statistics on benchmark timings: is the patched tree slower than the base, and can we show it?

Pure functions over lists of seconds, no I/O. `compare` puts a bootstrap confidence interval on the ratio (patched /
base: the median of the pairs' ratios for interleaved pairs, else the ratio of medians), optionally after taking off
the start-up time both sides share, and runs a Mann-Whitney U test beside it; `sequential_compare` starts with a few
runs per side and adds runs only while the interval straddles a decision threshold, within a run and a time budget;
`score_from_ratio` turns a ratio into a subscore through the weight profile's knots; `contradicts` says when a
figure a benchmark reports about itself disagrees with the harness's own measurement beyond noise, in the patch's
favour.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from scoring.core.types import DEFAULT_PERF_KNOTS

#: The default (ratio, score) knots: one source of truth, types.DEFAULT_PERF_KNOTS (Weights.perf_knots's default).
DEFAULT_KNOTS = DEFAULT_PERF_KNOTS

VERDICTS = ("faster", "same", "slower", "inconclusive")

#: Timings below this are clamped, so a benchmark reporting 0 s cannot divide by zero.
TIME_FLOOR_S = 1e-6
#: Pairs measured whatever the time budget says: fewer than this gives no usable statistic.
MIN_PAIRS = 3
BOOTSTRAP_RESAMPLES = 2000
#: Significance a rank test must reach before "slower" or "faster" is claimed. Strict on purpose: a sequential
#: comparison looks up to max_runs / step times, and every look is another chance for noise to pass.
CLAIM_ALPHA = 0.001
#: At most this share of either side's median is taken off as shared start-up. Taking off s multiplies the
#: relative noise by b / (b - s) and the measured change by as much ((p - s) / (b - s) - 1 = (p / b - 1) * b /
#: (b - s)): a third caps both at 1.5x. A half (2x) sent most no-ops of a start-up-dominated benchmark to review
#: on a loaded machine; docs/performance.md has the numbers.
MAX_START_UP_SHARE = 1 / 3
#: How far apart (a factor between interval ends) a self-reported ratio and the harness's must be before the
#: report counts as contradicting the measurement. Honest reports differ from the harness's ratio because they
#: time a part of the process (a hot loop, without imports); 3x leaves room for that. See `contradicts`.
TAMPER_FACTOR = 3.0


def score_from_ratio(ratio: float, knots: Sequence[Sequence[float]] = DEFAULT_KNOTS) -> float:
    """Map a time ratio (patched / base) to a score in [0, 1]: linear between knots, clamped outside them."""
    if not knots:
        raise ValueError("perf_knots must hold at least one (ratio, score) pair")
    ordered = sorted((float(r), float(s)) for r, s in knots)
    xs, ys = zip(*ordered, strict=True)
    return float(np.clip(np.interp(ratio, xs, ys), 0.0, 1.0))


def slower_threshold(knots: Sequence[Sequence[float]] = DEFAULT_KNOTS) -> float:
    """The ratio where the score starts dropping: above it a patch is "slower", below its inverse "faster"."""
    return min(float(r) for r, _ in knots)


def score_spread(ci_low: float, ci_high: float, knots: Sequence[Sequence[float]] = DEFAULT_KNOTS) -> float:
    """How much the score could move inside the interval [ci_low, ci_high] under `knots`."""
    return score_from_ratio(ci_low, knots) - score_from_ratio(ci_high, knots)


def pinned(ci_low: float, ci_high: float, *, knots: Sequence[Sequence[float]], tolerance: float) -> bool:
    """The interval reaches past the slowdown threshold, yet every ratio in it scores at least 1 - `tolerance`.

    A small slowdown near the threshold takes tens of pairs before a rank test settles it (a 10% slowdown against
    a 5% threshold), yet its score is known long before: every ratio in the interval scores between 1 - `tolerance`
    and 1.0, so more runs could only move the score inside that band, and the comparison may stop there. A larger
    slowdown is never pinned: it runs until the rank test claims it (and flags it). `ci_low` does not matter: the
    score only falls as the ratio grows, so the interval's upper end scores lowest.
    """
    return slower_threshold(knots) < ci_high and score_from_ratio(ci_high, knots) >= 1.0 - tolerance


@dataclass(frozen=True)
class Comparison:
    """One look at the timings: the ratio (patched / base), its confidence interval, the verdict.

    `paired`: the ratio is the median of the pairs' ratios (interleaved pairs), not the ratio of medians.
    """

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float  # Mann-Whitney U, two-sided
    n_base: int
    n_patched: int
    verdict: str  # one of VERDICTS
    confidence_level: float
    start_up_s: float = 0.0  # seconds taken off every timing of both sides before the ratio
    paired: bool = False

    def describe(self) -> str:
        """The look in words, e.g. "n=5 pairs, ratio 1.28, CI [0.97, 1.61]: inconclusive"."""
        if self.paired:
            n = f"n={self.n_base} pairs"
        else:
            n = f"n={self.n_base} each" if self.n_base == self.n_patched else f"n={self.n_base}/{self.n_patched}"
        return f"{n}, ratio {self.ratio:.2f}, CI [{self.ci_low:.2f}, {self.ci_high:.2f}]: {self.verdict}"


def decide(ci_low: float, ci_high: float, p_value: float, *, slower_at: float, alpha: float) -> str:
    """Name the verdict an interval supports against the thresholds `slower_at` and `1 / slower_at`.

    "slower" and "faster" need the whole interval past the threshold AND a significant rank test, so neither
    a lucky bootstrap on few runs nor a tiny consistent shift is enough. "same" needs the whole interval
    inside the tolerance band. Anything else straddles a threshold: "inconclusive".
    """
    faster_at = 1.0 / slower_at
    significant = p_value < alpha
    if ci_low > slower_at and significant:
        return "slower"
    if ci_high < faster_at and significant:
        return "faster"
    if faster_at <= ci_low and ci_high <= slower_at:
        return "same"
    return "inconclusive"


def _median_ratio(base: np.ndarray, patched: np.ndarray, axis: int = -1, start_up_s: float = 0.0) -> np.ndarray:
    """(median patched - start-up) / (median base - start-up), each part floored at TIME_FLOOR_S."""
    ratio: np.ndarray = np.maximum(np.median(patched, axis=axis) - start_up_s, TIME_FLOOR_S) / np.maximum(
        np.median(base, axis=axis) - start_up_s, TIME_FLOOR_S
    )
    return ratio


def _pair_ratios(base: np.ndarray, patched: np.ndarray, start_up_s: float) -> np.ndarray:
    """Each pair's (patched - start-up) / (base - start-up), each part floored at TIME_FLOOR_S."""
    ratios: np.ndarray = np.maximum(patched - start_up_s, TIME_FLOOR_S) / np.maximum(base - start_up_s, TIME_FLOOR_S)
    return ratios


def shared_start_up(base: Sequence[float], patched: Sequence[float], start_up_s: float) -> float:
    """The start-up seconds to take off every timing: `start_up_s`, capped at MAX_START_UP_SHARE of either median.

    Capping by the faster side too keeps a noisy start-up estimate from swallowing a fast patched run whole.
    """
    shorter = min(float(np.median(base)), float(np.median(patched)))
    return float(min(max(start_up_s, 0.0), MAX_START_UP_SHARE * shorter))


def compare(
    base: Sequence[float],
    patched: Sequence[float],
    *,
    slower_at: float = slower_threshold(),
    confidence_level: float = 0.95,
    alpha: float = CLAIM_ALPHA,
    seed: int = 0,
    start_up_s: float = 0.0,
    paired: bool = False,
) -> Comparison:
    """Compare two samples of timings, reproducibly for a given `seed`. Needs two timings per side or more.

    `paired`: `base[i]` and `patched[i]` ran next to each other (interleaved pairs). The ratio is then the
    median of the pairs' ratios and its interval a bootstrap over pairs: a machine that switches between a
    fast and a slow state (another tenant on the core, a frequency step) moves both runs of most pairs alike,
    where the two sides' medians could each land in a different state. The rank test stays the unpaired
    Mann-Whitney U on the timings (a claim needs n >= 7 a side at CLAIM_ALPHA, as before).

    `start_up_s`: time every run spends before the work both sides share (an interpreter starting), taken off
    both medians before the ratio (capped by `shared_start_up`), so a small workload is not diluted by it. The
    rank test is unchanged by a shift common to both samples: only the size of a change is de-diluted, never
    the evidence that there is one.
    """
    if min(len(base), len(patched)) < 2:
        raise ValueError("compare needs at least two timings per side")
    if paired and len(base) != len(patched):
        raise ValueError("paired timings need as many base timings as patched ones")
    b = np.maximum(np.asarray(base, dtype=float), TIME_FLOOR_S)
    p = np.maximum(np.asarray(patched, dtype=float), TIME_FLOOR_S)
    shared = shared_start_up(b, p, start_up_s)
    if paired:
        ratios = _pair_ratios(b, p, shared)
        ratio = float(np.median(ratios))
        low, high = _bootstrap_interval((ratios,), np.median, confidence_level, seed)
    else:
        ratio = float(_median_ratio(b, p, start_up_s=shared))

        def statistic(base: np.ndarray, patched: np.ndarray, axis: int = -1) -> np.ndarray:
            return _median_ratio(base, patched, axis, shared)

        low, high = _bootstrap_interval((b, p), statistic, confidence_level, seed)
    # An interval must contain its own point estimate; BCa can miss it by a hair on tiny, tied samples.
    low, high = min(low, ratio), max(high, ratio)
    p_value = float(stats.mannwhitneyu(p, b, alternative="two-sided").pvalue)
    verdict = decide(low, high, p_value, slower_at=slower_at, alpha=alpha)
    return Comparison(ratio, low, high, p_value, len(b), len(p), verdict, confidence_level, shared, paired)


def contradicts(measured: Comparison, reported: Comparison, *, factor: float = TAMPER_FACTOR) -> bool:
    """True when a self-reported comparison favours the patch far beyond noise against the harness's measurement.

    All three must hold, each read from an interval (so each side's own noise is already in it):
    - the harness measured the patched side slower: its whole interval above 1 and its rank test
      significant at the claim level (the one significance every claim here needs);
    - the report says the patched side is faster: its whole interval below 1;
    - the harness's lower end is at least `factor` times the report's upper end.
    A real slow-down is slow on the benchmark's clock too, and a real speed-up is not measured slower by the
    harness, so honest patches meet all three only if they make the timed part faster and the rest of the
    process (its imports, say) so much slower that the whole run is `factor` times worse: rare, and a reviewer
    sees both figures.
    """
    measured_slower = measured.ci_low > 1.0 and measured.p_value < CLAIM_ALPHA
    reported_faster = reported.ci_high < 1.0
    return measured_slower and reported_faster and measured.ci_low >= factor * reported.ci_high


def _bootstrap_interval(
    samples: tuple[np.ndarray, ...], statistic: Callable[..., Any], level: float, seed: int
) -> tuple[float, float]:
    """BCa bootstrap interval of `statistic` (vectorised, `axis=`); the percentile one when BCa is undefined (ties)."""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # Identical timings make BCa undefined; scipy warns and returns NaN, and we fall back below.
            warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", category=RuntimeWarning)
            result = stats.bootstrap(
                samples,
                statistic,
                n_resamples=BOOTSTRAP_RESAMPLES,
                confidence_level=level,
                method=method,
                vectorized=True,
                rng=np.random.default_rng(seed),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return low, high
    point = float(statistic(*samples, axis=-1))
    return point, point


@dataclass(frozen=True)
class Decision:
    """Where a sequential comparison stopped: the last look, every sample, and the log of each look.

    `stop` is "decided" (a verdict other than inconclusive), "no_slowdown" (inconclusive only about a speed-up: the
    whole interval at or below the slowdown threshold), "pinned" (near the threshold, the score known to within the
    tolerance: `pinned`), "max_runs" or "budget".
    """

    comparison: Comparison
    base: tuple[float, ...]
    patched: tuple[float, ...]
    steps: tuple[str, ...]
    stop: str
    elapsed_s: float

    @property
    def ratio(self) -> float:
        return self.comparison.ratio

    @property
    def ci_low(self) -> float:
        return self.comparison.ci_low

    @property
    def ci_high(self) -> float:
        return self.comparison.ci_high

    @property
    def n_base(self) -> int:
        return self.comparison.n_base

    @property
    def n_patched(self) -> int:
        return self.comparison.n_patched

    @property
    def verdict(self) -> str:
        return self.comparison.verdict


def sequential_compare(
    measure_pair: Callable[[], tuple[float, float]],
    *,
    base: Sequence[float] = (),
    patched: Sequence[float] = (),
    min_runs: int = 5,
    max_runs: int = 30,
    step: int | None = None,
    budget_s: float = 60.0,
    knots: Sequence[Sequence[float]] = DEFAULT_KNOTS,
    score_tolerance: float = 0.0,
    confidence_level: float = 0.95,
    alpha: float = CLAIM_ALPHA,
    seed: int = 0,
    start_up_s: float = 0.0,
    paired: bool = False,
    follow_up: Callable[[Comparison], str | None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Decision:
    """Measure pairs until the verdict is clear (or no slowdown is possible), `max_runs` per side are in, or
    `budget_s` would be exceeded.

    `measure_pair()` runs the base once then the patched tree once and returns both timings (interleaving is
    the caller's job). Samples already taken (`base`, `patched`, equal lengths) are kept and extended, so
    healing continues where evaluation stopped. A pair is started only when the mean pair time so far says it
    fits in the budget; the first MIN_PAIRS are measured regardless, since no statistic exists without them.
    The slowdown threshold is the first of `knots`; with `score_tolerance` > 0 a look whose interval is `pinned`
    (near the threshold, the score known to within the tolerance) stops too. `start_up_s` and `paired` go to every
    look's `compare`. `follow_up(look)`, asked when a look is decided, may name a
    doubt the caller still has about the same runs (another measurement of them); runs are added while it does,
    within the same limits. Exceptions from `measure_pair` propagate.
    """
    if len(base) != len(patched):
        raise ValueError("base and patched must have the same number of timings")
    step = step or min_runs
    slower_at = slower_threshold(knots)
    samples = _Samples(list(base), list(patched), measure_pair, clock, budget_s)
    target = max(min_runs, samples.n)
    steps: list[str] = []
    while True:
        samples.fill(target)
        look = compare(
            samples.base,
            samples.patched,
            slower_at=slower_at,
            confidence_level=confidence_level,
            alpha=alpha,
            seed=seed,
            start_up_s=start_up_s,
            paired=paired,
        )
        more = min(step, max_runs - samples.n, samples.affordable())
        # Settled: a verdict; an interval wholly at or below `slower_at`, where the score is 1.0 throughout
        # (straddling only the "faster" threshold): more runs could add a `faster` flag, never move the score; or
        # an interval pinned near the threshold, where more runs would move the score less than the tolerance.
        settled = _settled(look, knots, score_tolerance)
        doubt = follow_up(look) if follow_up and settled else None
        if settled and not doubt:
            stop, note = (
                settled,
                {
                    "decided": ".",
                    "no_slowdown": f": no slowdown past {slower_at:g} is possible, more runs cannot move the score.",
                    "pinned": (
                        f": every ratio in the interval scores at least {score_from_ratio(look.ci_high, knots):.2f} "
                        f"(tolerance {score_tolerance:g}), more runs would only narrow that."
                    ),
                }[settled],
            )
        elif samples.n >= max_runs:
            stop, note = "max_runs", f" at {max_runs} runs per side."
        elif more < 1:
            stop, note = "budget", f", time budget of {budget_s:g} s spent."
        else:
            steps.append(f"{look.describe()}{f' ({doubt})' if doubt else ''}, adding {more} runs.")
            target = samples.n + more
            continue
        steps.append(look.describe() + note)
        return Decision(look, tuple(samples.base), tuple(samples.patched), tuple(steps), stop, samples.elapsed())


def _settled(look: Comparison, knots: Sequence[Sequence[float]], tolerance: float) -> str | None:
    """How a look settles the comparison ("decided", "no_slowdown", "pinned"), or None while it does not."""
    if look.verdict != "inconclusive":
        return "decided"
    if look.ci_high <= slower_threshold(knots):
        return "no_slowdown"
    if tolerance > 0 and pinned(look.ci_low, look.ci_high, knots=knots, tolerance=tolerance):
        return "pinned"
    return None


class _Samples:
    """The growing samples of one sequential comparison and the clock that bounds them."""

    def __init__(
        self,
        base: list[float],
        patched: list[float],
        measure_pair: Callable[[], tuple[float, float]],
        clock: Callable[[], float],
        budget_s: float,
    ) -> None:
        self.base, self.patched = base, patched
        self._measure_pair, self._clock, self._budget_s = measure_pair, clock, budget_s
        self._start = clock()
        self._pairs = 0  # measured by this call, to estimate the time of the next pair

    @property
    def n(self) -> int:
        return len(self.base)

    def elapsed(self) -> float:
        return self._clock() - self._start

    def affordable(self) -> int:
        """How many more pairs fit in the budget at the mean pair time so far (unbounded before any pair)."""
        if self._pairs == 0:
            return 1 << 30
        per_pair = self.elapsed() / self._pairs
        return int((self._budget_s - self.elapsed()) // per_pair) if per_pair > 0 else 1 << 30

    def fill(self, target: int) -> None:
        """Measure pairs up to `target` per side while they fit in the budget (always at least MIN_PAIRS)."""
        while self.n < target and (self.n < MIN_PAIRS or self.affordable() >= 1):
            b, p = self._measure_pair()
            self.base.append(float(b))
            self.patched.append(float(p))
            self._pairs += 1
