"""How many benchmark runs the sequential comparison spends, against a fixed 20 per side, on seeded timings.

Each case is a noise shape and a true effect (patched / base). For every seed, one synthetic stream of timings
feeds both methods: the sequential comparison (5 runs per side, +5 while in doubt, at most 30, stopping near the
threshold once the score is pinned to within the pipeline's tolerance) and a single comparison of the stream's first
20 pairs. `run()` reports the runs each needed, how often their calls agree and how far each one's score lands from
the score of the true effect; `python -m benchmarks.perf_bench` prints it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scoring.core.critics.performance import stats as perfstats
from scoring.core.types import DEFAULT_BENCH_SCORE_TOLERANCE

BASE_S = 0.050
FIXED_RUNS = 20
#: 1.1: a small slowdown near the 1.05 threshold, which no rank test settles in a few pairs.
EFFECTS = (0.7, 1.0, 1.1, 1.3, 2.0)

#: Multiplicative noise of one timing, by shape: what shared machines produce, from tame to nasty.
NOISE: dict[str, Callable[[np.random.Generator], float]] = {
    "normal 5%": lambda rng: 1.0 + rng.normal(0.0, 0.05),
    "lognormal 15%": lambda rng: rng.lognormal(0.0, 0.15),
    # A third of the runs land on a slow mode (a busy neighbour, a throttled core).
    "bimodal": lambda rng: (1.3 if rng.random() < 0.3 else 1.0) * rng.lognormal(0.0, 0.02),
    # Mostly tight, with one run in ten hit by a Pareto-tailed stall.
    "heavy-tailed outliers": lambda rng: rng.lognormal(0.0, 0.03) * (1.0 + rng.pareto(1.5) * (rng.random() < 0.1)),
    # Spells of a slow state, 1.5x, that last several runs (both runs of most pairs): what this project's shared
    # 2-core machine does (SyntheticBench keeps the state; this draws the rest).
    "slow spells": lambda rng: rng.lognormal(0.0, 0.02),
}
#: In "slow spells", the chance that the machine changes state before a run.
SPELL_SWITCH = 0.15


@dataclass
class SyntheticBench:
    """A seeded stream of (base, patched) timings with a fake clock that advances by the time they take."""

    noise: str
    effect: float
    seed: int
    now: float = 0.0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._slow = False

    def _timing(self, effect: float) -> float:
        if self.noise == "slow spells" and self._rng.random() < SPELL_SWITCH:
            self._slow = not self._slow
        state = 1.5 if self._slow else 1.0
        return BASE_S * effect * state * max(NOISE[self.noise](self._rng), 0.01)

    def pair(self) -> tuple[float, float]:
        """The next base timing and the next patched timing, as `sequential_compare` expects."""
        base, patched = self._timing(1.0), self._timing(self.effect)
        self.now += base + patched
        return base, patched

    def clock(self) -> float:
        return self.now


def sequential(noise: str, effect: float, seed: int, **options: float) -> perfstats.Decision:
    """The sequential comparison on one synthetic stream, with the pipeline's default run limits and score tolerance
    (paired, as the critic compares its interleaved runs)."""
    bench = SyntheticBench(noise, effect, seed)
    options = {"score_tolerance": DEFAULT_BENCH_SCORE_TOLERANCE, **options}
    return perfstats.sequential_compare(bench.pair, clock=bench.clock, paired=True, **options)  # type: ignore[arg-type]  # options of several types, each the keyword it names


def fixed(noise: str, effect: float, seed: int, runs: int = FIXED_RUNS) -> perfstats.Comparison:
    """One comparison of the first `runs` pairs of the same stream."""
    bench = SyntheticBench(noise, effect, seed)
    base, patched = zip(*(bench.pair() for _ in range(runs)), strict=True)
    return perfstats.compare(base, patched, paired=True)


def run(seeds: int = 30) -> dict:
    """Runs and verdicts of both methods for every noise shape and effect: rows and a summary.

    `agreement` is the share of seeds where both methods make the same call about the score (`_call`: slower, no
    slowdown, or still open); `contradictions` counts seeds where both make a call yet differ, which a sound
    sequential method should never produce. Verdicts are listed as they are.
    """
    rows = []
    for noise in NOISE:
        for effect in EFFECTS:
            decisions = [sequential(noise, effect, seed) for seed in range(seeds)]
            seq = [d.verdict for d in decisions]
            runs = [d.n_base for d in decisions]
            looks = [fixed(noise, effect, seed) for seed in range(seeds)]
            fix = [look.verdict for look in looks]
            calls = [(_call(d.comparison), _call(look)) for d, look in zip(decisions, looks, strict=True)]
            truth = perfstats.score_from_ratio(effect)
            rows.append(
                {
                    "noise": noise,
                    "effect": effect,
                    "sequential_runs": round(float(np.mean(runs)), 1),
                    "fixed_runs": FIXED_RUNS,
                    "agreement": round(float(np.mean([s == f for s, f in calls])), 3),
                    "contradictions": sum(s != f and "open" not in (s, f) for s, f in calls),
                    "sequential_score_error": _score_error([d.comparison for d in decisions], truth),
                    "fixed_score_error": _score_error(looks, truth),
                    "sequential_verdicts": _counts(seq),
                    "fixed_verdicts": _counts(fix),
                }
            )
    return {
        "name": "performance: sequential runs vs a fixed 20 per side",
        "seeds_per_case": seeds,
        "rows": rows,
        "summary": {
            "mean_sequential_runs": round(float(np.mean([r["sequential_runs"] for r in rows])), 1),
            "fixed_runs": FIXED_RUNS,
            "mean_agreement": round(float(np.mean([r["agreement"] for r in rows])), 3),
            "contradictions": sum(r["contradictions"] for r in rows),
            "score_tolerance": DEFAULT_BENCH_SCORE_TOLERANCE,
        },
    }


def _score_error(looks: list[perfstats.Comparison], truth: float) -> float:
    """The mean distance between the scores the looks give (as the critic scores them) and the true effect's score."""
    return round(float(np.mean([abs(_score(look) - truth) for look in looks])), 3)


def _score(look: perfstats.Comparison) -> float:
    return 1.0 if look.verdict == "faster" else perfstats.score_from_ratio(look.ratio)


def _call(look: perfstats.Comparison) -> str:
    """What a look says about the score: "slower", "no slowdown" (1.0 across its interval), or "open"."""
    if look.verdict == "slower":
        return "slower"
    if look.verdict in ("faster", "same") or look.ci_high <= perfstats.slower_threshold():
        return "no slowdown"
    return "open"


def _counts(verdicts: list[str]) -> dict[str, int]:
    return {v: verdicts.count(v) for v in perfstats.VERDICTS if v in verdicts}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
