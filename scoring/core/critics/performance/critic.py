"""The performance critic: the task's benchmark on the base and the patched tree, compared with statistics.

Every run uses a fresh scratch copy of its tree, in the sandbox (forked warm, like the tests, where the worker can):
one warm-up run each (none when runs fork from the warm zygote), then interleaved pairs (A B, B A, ...) compared
pair by pair, optionally pinned to the CPUs of REVIEWAPP_BENCH_CPUS (there is no host-wide lock). The harness times
every run itself, outside the patched process: CPU time from the kernel's accounting of the sandboxed command, wall
time from this process. The verdict is computed from these only: CPU time, less the interpreter's start-up (measured
with `python -c pass` in the same sandbox) so a small workload is not diluted by it, and wall time for a slowdown
CPU time cannot see. A "seconds" figure the benchmark prints about itself runs inside the patched process, where the
patch can rewrite the clock: it is kept as a second opinion, and flagged `tamper` when it contradicts the harness in
the patch's favour.
Evaluation takes the first `bench_min_runs` pairs; healing adds runs only while the score is in doubt. The score
comes from the stored ratio through the weight profile's knots, so another profile re-scores without a re-run.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from scoring.core.critics.base import Critic
from scoring.core.critics.performance import coverage
from scoring.core.critics.performance import stats as perfstats
from scoring.core.trees import read_regular_file, remove_tree, scratch_copy
from scoring.core.types import (
    GATE_CLOSED,
    GATE_SUMMED,
    CriticResult,
    RunLimits,
    RunResult,
    ScoringContext,
    Weights,
)

STEP = "Step: performance check."
#: The flags this critic owns; re-scoring replaces them and keeps everyone else's.
PERF_FLAGS = frozenset({"perf_regression", "faster", "perf_inconclusive"})
#: What the verdict is computed from: the harness's CPU time of each run (RunResult.cpu_s).
METRIC = "cpu_s"
#: The start-up calibration: an interpreter that does nothing, in the same sandbox as the benchmark.
START_UP_COMMAND = "python -c pass"
#: Calibration runs after the warm-up; their median CPU time is the start-up both sides share.
START_UP_RUNS = 3
#: Characters of a failing benchmark's output quoted in the rationale.
EXCERPT_CHARS = 600
#: A "seconds" line may exceed the run's wall time by this much (clock granularity), never more.
SECONDS_SLACK_S = 0.05
SIDES = ("base", "patched")
#: The tracer that records what the base benchmark touches (coverage.py), copied into a copy of the base.
TRACER = Path(__file__).resolve().with_name("tracer.py")
TRACER_NAME = ".reviewapp_bench_tracer.py"
TRACE_NAME = ".reviewapp_bench_trace.json"
TRACE_MAX_BYTES = 8 << 20
#: A cached base stands while one base run now lands within this share of its median, either way. A base cached
#: on a busier host must not hide a slowdown: a patch passes against it only with its interval below 1.05, so at
#: worst a slowdown of 1.05 * (1 + BASE_DRIFT) = 1.26 (score 0.5) passes as "not slower", never the 1.3 that must
#: score 0.4 or less.
BASE_DRIFT = 0.2
#: And for at most this long: a host's load and clock change over hours.
BASE_MAX_AGE_S = 3600.0
#: The most recent measured patches a new patch is compared with (each costs a copy of the base, and one traced
#: run the first time), and the most bytes of changed files a measured patch keeps for that.
MEASURED_CANDIDATES = 8
MEASURED_MAX_BYTES = 1 << 20
#: How the cached base's runs were made; a record of another format is measured again. 2: runs forked warm
#: where the worker can (format 1 ran every benchmark cold, about 50 ms more per run).
BASE_FORMAT = 2


class BenchmarkFailed(Exception):
    """The benchmark did not complete on one side: non-zero exit, timeout or a limit."""

    def __init__(self, side: str, result: RunResult, why: str) -> None:
        super().__init__(f"{side}: {why}")
        self.side, self.result, self.why = side, result, why


class PerformanceCritic(Critic):
    """Scores how much slower the patch makes the task's benchmark, and only when it can show it."""

    name = "performance"
    label = "Performance"
    default_weight = 0.2
    queue = "bench"

    def evaluate(self, ctx: ScoringContext) -> CriticResult:
        """Judge the patch by the cheapest method that holds; no benchmark means no score.

        In order: no run at all when the profile gates on a correctness of 0, when the patch cannot change
        what the base benchmark runs (coverage.py), or when it cannot change what the benchmark did on a patch
        measured earlier on this host (a rollout group's near-duplicates); patched runs against the base measured
        earlier on this host when they show no slowdown is possible; else interleaved pairs, the first
        `bench_min_runs`.
        """
        if not ctx.spec.benchmark_command:
            return CriticResult(
                criterion=self.name,
                score=None,
                confidence=1.0,
                rationale=(
                    f"{STEP} The task defines no benchmark_command, so performance is not measured "
                    "and carries no score.",
                ),
                evidence={"reason": "no benchmark_command in the task spec"},
            )
        if ctx.gate == GATE_CLOSED:
            return CriticResult(
                criterion=self.name,
                score=None,
                confidence=1.0,
                rationale=(
                    f"{STEP} Correctness is 0 and the active weight profile gates every other subscore on it "
                    "(gated): performance cannot move the reward, so the benchmark is not run.",
                ),
                evidence={"shortcut": "correctness_gate", "command": ctx.spec.benchmark_command},
            )
        note = (
            (
                f"{STEP} Correctness is 0, but the active weight profile sums the subscores, so performance still "
                "counts: it gets the cheapest verdict that holds, below.",
            )
            if ctx.gate == GATE_SUMMED
            else ()
        )
        result = _unreachable(self.name, ctx) or _same_as_measured(self.name, ctx) or self._against_cached_base(ctx)
        if result is None or isinstance(result, str):
            result = self._measure(
                ctx,
                previous=None,
                max_runs=ctx.settings.bench_min_runs,
                budget_s=ctx.settings.bench_budget_s,
                why_fresh=result,
            )
        return replace(result, rationale=(*note, *result.rationale)) if note else result

    def heal(self, ctx: ScoringContext, previous: CriticResult, budget_s: float) -> CriticResult:
        """Add runs while the score is in doubt, up to `bench_max_runs` per side and within budget."""
        evidence = previous.evidence
        if not evidence.get("score_in_doubt"):  # more runs could only add a `faster` flag
            return previous
        if "base_cached" in evidence or "shortcut" in evidence:
            return previous  # stands only when nothing is in doubt; more pairs need interleaved runs from scratch
        budget = min(budget_s, ctx.settings.bench_budget_s - float(evidence.get("elapsed_s", 0.0)))
        if budget <= 0 or int(evidence["n_base"]) >= ctx.settings.bench_max_runs:
            return previous
        return self._measure(ctx, previous=previous, max_runs=ctx.settings.bench_max_runs, budget_s=budget)

    def rescore(self, result: CriticResult, weights: Weights) -> CriticResult:
        """Judge the stored ratio and interval again under `weights.perf_knots`; nothing is re-run."""
        if "ratio" not in result.evidence:
            return result
        return _judged(
            self.name,
            rationale=_body(result),  # the closing steps are rebuilt here
            evidence=result.evidence,
            knots=weights.perf_knots,
            other_flags=result.flags - PERF_FLAGS,
        )

    def _against_cached_base(self, ctx: ScoringContext) -> CriticResult | str | None:
        """Patched runs only, against this host's cached base: the result when they show no slowdown is possible.

        None without a usable cache; otherwise a string saying why fresh interleaved runs are needed (a drifted
        host, or a look that is not clear). A slowdown is never claimed here: only interleaved runs, which
        cancel the machine's drift, can claim one, so a host that got busier never turns a no-op into one.
        """
        cached = _read_base(ctx)
        if cached is None:
            return None
        argv = ctx.spec.argv(ctx.spec.benchmark_command)
        age = time.time() - float(cached.get("measured_at", 0.0))
        if not 0 <= age <= BASE_MAX_AGE_S:
            return f"The base measured on this host is {age / 60:.0f} minutes old, past {BASE_MAX_AGE_S / 60:.0f}."
        with (
            scratch_copy(ctx.base_dir, work_root=ctx.settings.work_root, prefix="bench-base-") as base_tree,
            scratch_copy(ctx.patched_dir, work_root=ctx.settings.work_root, prefix="bench-patched-") as patched_tree,
        ):
            restored = _restore_benchmark_files(argv, ctx.base_dir, patched_tree)
            bench = _Bench(ctx, argv, {"base": base_tree, "patched": patched_tree}, _limits(ctx), cached)
            started = time.monotonic()
            base = [float(x) for x in cached["base_s"]]
            try:
                check = bench.probe_base()
                median = float(np.median(base))
                if not median / (1 + BASE_DRIFT) <= check <= median * (1 + BASE_DRIFT):
                    return (
                        f"One base run now took {_duration(check)} of CPU against the {_duration(median)} median "
                        f"of its {len(base)} cached runs, more than {BASE_DRIFT:.0%} apart: the host drifted, so "
                        "the base is measured again."
                    )
                patched = [bench.once("patched") for _ in range(perfstats.MIN_PAIRS)]
            except BenchmarkFailed as failure:
                if failure.side == "base":
                    return f"The base benchmark failed now ({failure.why}): measured again."
                return _failed(self.name, ctx, failure, ())
            look = perfstats.compare(
                base,
                patched,
                slower_at=perfstats.slower_threshold(perfstats.DEFAULT_KNOTS),
                start_up_s=_start_up(cached["start_up_runs_s"]),
            )
            elapsed = time.monotonic() - started
        decision = perfstats.Decision(look, tuple(base), tuple(patched), (f"{look.describe()}.",), "decided", elapsed)
        evidence = _evidence({}, ctx.spec.benchmark_command, bench, decision, elapsed, restored)
        evidence["base_cached"] = {"runs": len(base), "age_s": round(age, 1), "check_s": check}
        result = _judged(
            self.name,
            rationale=(_cached_method_step(ctx.spec.benchmark_command, evidence, restored),),
            evidence=evidence,
            knots=perfstats.DEFAULT_KNOTS,
            other_flags=frozenset(),
        )
        judged = result.evidence
        if judged["verdict"] != "slower" and not judged["score_in_doubt"] and not judged["wall_in_doubt"]:
            _write_measured(ctx, result)
            return result  # the whole interval below the slowdown threshold: the score is 1.0 whatever the base did
        return (
            f"Against the base measured earlier on this host ({len(base)} runs), {perfstats.MIN_PAIRS} patched "
            f"runs give {look.describe()}: not clear enough to stand on a base measured before, so both sides are "
            "measured again, interleaved."
        )

    def _measure(
        self,
        ctx: ScoringContext,
        *,
        previous: CriticResult | None,
        max_runs: int,
        budget_s: float,
        why_fresh: str | None = None,
    ) -> CriticResult:
        """Run the benchmark on fresh copies of both trees and extend the samples in `previous` (if any)."""
        settings = ctx.settings
        argv = ctx.spec.argv(ctx.spec.benchmark_command)
        old = dict(previous.evidence) if previous else {}
        # Healing drops the closing steps and the look that stopped evaluation: the first look logged here
        # repeats that look and says what happens next ("adding 5 runs").
        head = _body(previous)[:-1] if previous else ()
        limits = _limits(ctx)
        with (
            scratch_copy(ctx.base_dir, work_root=settings.work_root, prefix="bench-base-") as base_tree,
            scratch_copy(ctx.patched_dir, work_root=settings.work_root, prefix="bench-patched-") as patched_tree,
        ):
            restored = _restore_benchmark_files(argv, ctx.base_dir, patched_tree)
            bench = _Bench(ctx, argv, {"base": base_tree, "patched": patched_tree}, limits, old, paired=True)
            # No host-wide lock: CPU time comes from each run's own cgroup, so runs on the other cores do not
            # count; docs/performance.md says how to keep the cores apart (a reserved core, the bench queue).
            started = time.monotonic()
            try:
                if not previous:  # healing keeps the first estimate: every look takes off the same start-up
                    bench.calibrate()
                bench.warm_up()
                decision = perfstats.sequential_compare(
                    bench.pair,
                    base=old.get("base_s", ()),
                    patched=old.get("patched_s", ()),
                    min_runs=settings.bench_min_runs,
                    max_runs=max_runs,
                    step=settings.bench_min_runs,
                    budget_s=budget_s - (time.monotonic() - started),
                    knots=perfstats.DEFAULT_KNOTS,
                    score_tolerance=settings.bench_score_tolerance,
                    start_up_s=_start_up(bench.start_up["cpu"]),
                    paired=True,
                    follow_up=bench.wall_doubt,
                )
            except BenchmarkFailed as failure:
                return _failed(self.name, ctx, failure, head)
            elapsed = time.monotonic() - started
        _write_base(ctx, bench, decision)
        if not previous:
            head = (
                *((f"{STEP} {why_fresh}",) if why_fresh else ()),
                _method_step(ctx.spec.benchmark_command, bench, restored),
            )
        evidence = _evidence(old, ctx.spec.benchmark_command, bench, decision, elapsed, restored)
        evidence["score_tolerance"] = settings.bench_score_tolerance  # interleaved pairs only: see _judged
        steps = tuple(f"{STEP} {line}" for line in decision.steps)
        result = _judged(
            self.name,
            rationale=head + steps,
            evidence=evidence,
            knots=perfstats.DEFAULT_KNOTS,
            other_flags=frozenset(),
        )
        _write_measured(ctx, result)
        return result


class _Bench:
    """Runs the benchmark on one side at a time and keeps every measurement (warm-up runs excluded).

    What counts is what the harness measures from outside the run: its CPU time, the kernel's accounting of
    the sandboxed command and the children it waited for, and its wall time seen from this process. The
    "seconds" a run prints about itself is kept per run (None when absent or implausible), as a second opinion.
    Samples start from `old` (the evidence healing continues from), so every list covers every run.
    """

    def __init__(
        self,
        ctx: ScoringContext,
        argv: Sequence[str],
        trees: Mapping[str, Path],
        limits: RunLimits,
        old: Mapping[str, Any],
        *,
        paired: bool = False,
    ) -> None:
        self.ctx, self.argv, self.trees, self.limits = ctx, argv, trees, limits
        self.paired = paired  # interleaved pairs (else patched runs against a cached base)
        self.wall_s = {side: list(old.get(f"{side}_wall_s", ())) for side in SIDES}
        self.reported_s = {side: list(old.get(f"reported_{side}_s", ())) for side in SIDES}
        self.start_up = {"cpu": list(old.get("start_up_runs_s", ())), "wall": list(old.get("start_up_wall_runs_s", ()))}
        #: Whether the runs fork from the warm zygote, as the calibration found (healing reads it from `old`).
        self.warm: bool | None = old.get("warm")

    def warm_up(self) -> None:
        """One discarded run per side, to fill the file cache (the interpreter's files included), unless the
        calibration found the runs forked warm: the zygote's interpreter is loaded already, and every run reads a
        copy of its tree written just before it, so a first run costs what the others do."""
        if self.warm:
            return
        self._once("base", keep=False)
        self._once("patched", keep=False)

    def calibrate(self) -> None:
        """Time START_UP_RUNS runs of START_UP_COMMAND in the base tree (CPU and wall), the ones that completed.

        An interpreter that does nothing costs what every run of a Python benchmark pays before its own work.
        A calibration that fails leaves no estimate: nothing is taken off and the ratio is only more diluted.
        """
        argv = self.ctx.spec.argv(START_UP_COMMAND)
        warm = []
        for _ in range(START_UP_RUNS):
            result = self.ctx.run(argv, tree=self.trees["base"], env_dir=self.ctx.env_dir, limits=self.limits)
            warm.append(result.warm)
            if _failure(result) is None:
                self.start_up["cpu"].append(result.cpu_s)
                self.start_up["wall"].append(result.wall_s)
        self.warm = all(warm)

    def probe_base(self) -> float:
        """The CPU time of one base run now, not kept: the check that a cached base still holds on this host."""
        return self._once("base", keep=False)

    def pair(self) -> tuple[float, float]:
        """One base run and one patched run, (base, patched): the interleaving that cancels slow drift of the machine.

        Which side goes first alternates (base first in even pairs), so whatever the second run of a pair inherits
        from the first (warm caches, a frequency step, the other core's load) falls on both sides alike.
        """
        if len(self.wall_s["base"]) % 2 == 0:
            return self._once("base", keep=True), self._once("patched", keep=True)
        patched = self._once("patched", keep=True)
        return self._once("base", keep=True), patched

    def once(self, side: str) -> float:
        """One kept run of `side`: its CPU time."""
        return self._once(side, keep=True)

    def wall_comparison(self) -> perfstats.Comparison:
        """The same comparison on wall time, less the calibration's wall time."""
        return perfstats.compare(
            self.wall_s["base"],
            self.wall_s["patched"],
            start_up_s=_start_up(self.start_up["wall"]),
            paired=self.paired,
        )

    def wall_doubt(self, look: perfstats.Comparison) -> str | None:
        """Why more runs are needed although the CPU time is decided: wall time points to a hidden slowdown.

        Work the CPU accounting cannot see (sleeping, waiting, or processes the command did not wait for)
        still takes wall time. When CPU time shows no slowdown but the wall-time interval lies above the
        threshold without the rank test to claim it yet, more runs settle it.
        """
        if look.verdict == "slower" or len(self.wall_s["base"]) < 2:
            return None
        wall = self.wall_comparison()
        return "wall time says slower, not yet shown" if _wall_in_doubt(wall.ci_low, wall.verdict) else None

    def _once(self, side: str, *, keep: bool) -> float:
        # Every run gets a fresh copy of the side's pristine tree: a run that leaves something behind (a cache
        # of its answers, a rewritten module) must not make the next run cheaper. Copying is outside the timing.
        work_root = self.ctx.settings.work_root
        with scratch_copy(self.trees[side], work_root=work_root, prefix=f"bench-{side}-run-") as tree:
            result = self.ctx.run(self.argv, tree=tree, env_dir=self.ctx.env_dir, limits=self.limits)
        problem = _failure(result)
        if problem:
            raise BenchmarkFailed(side, result, problem)
        if keep:
            self.wall_s[side].append(result.wall_s)
            self.reported_s[side].append(_reported_seconds(result))
        return result.cpu_s


def _wall_in_doubt(ci_low: float, verdict: str, slower_at: float = perfstats.slower_threshold()) -> bool:
    """A wall-time interval wholly above the threshold whose rank test cannot claim "slower" yet."""
    return verdict != "slower" and ci_low > slower_at


def _start_up(runs: Sequence[float] | None) -> float:
    """The start-up estimate from the calibration runs: their median, or 0 without any."""
    return float(np.median(runs)) if runs else 0.0


def _limits(ctx: ScoringContext) -> RunLimits:
    timeout = float(ctx.spec.timeout_s)
    return RunLimits(wall_s=timeout, cpu_s=timeout, output_bytes=ctx.settings.output_bytes, cpus=_cpus(ctx))


def _cpus(ctx: ScoringContext) -> tuple[int, ...]:
    """The configured benchmark CPUs this worker may use (REVIEWAPP_BENCH_CPUS); none: no pinning."""
    allowed = os.sched_getaffinity(0)
    return tuple(cpu for cpu in ctx.settings.bench_cpus if cpu in allowed)


def _base_file(ctx: ScoringContext) -> Path:
    """Where this host keeps the task's base measurement: the task cache, one file per host (it may be shared)."""
    return ctx.task_cache_dir / f"bench-base-{_host()}.json"


def _host() -> str:
    """This host's name as a file name part: the task cache may be shared by hosts, timings are not."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in platform.node()) or "host"


def _read_base(ctx: ScoringContext) -> dict[str, Any] | None:
    """The cached base measurement of this task's benchmark command on this host, or None."""
    try:
        cached = json.loads(_base_file(ctx).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("command") != ctx.spec.benchmark_command:
        return None
    if cached.get("format") != BASE_FORMAT or cached.get("cpus") != list(_cpus(ctx)):
        return None  # measured another way (cold runs, other CPUs): its times are not this host's base now
    keys = ("base_s", "base_wall_s", "reported_base_s", "start_up_runs_s", "start_up_wall_runs_s")
    if not all(isinstance(cached.get(key), list) for key in keys) or len(cached["base_s"]) < perfstats.MIN_PAIRS:
        return None
    return cached


def _write_base(ctx: ScoringContext, bench: _Bench, decision: perfstats.Decision) -> None:
    """Keep the base runs of an interleaved measurement for the next patches of the task on this host."""
    record = {
        "command": ctx.spec.benchmark_command,
        "format": BASE_FORMAT,
        "cpus": list(bench.limits.cpus),
        "measured_at": time.time(),
        "base_s": list(decision.base),
        "base_wall_s": bench.wall_s["base"],
        "reported_base_s": bench.reported_s["base"],
        "start_up_runs_s": bench.start_up["cpu"],
        "start_up_wall_runs_s": bench.start_up["wall"],
    }
    _write_json(_base_file(ctx), record)


def _write_json(target: Path, data: Any) -> None:
    """Write `data` to `target` atomically: a reader in another worker sees the old record or the new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data))
    partial.replace(target)


def _trace(ctx: ScoringContext, argv: Sequence[str]) -> dict[str, Any] | None:
    """What the base benchmark touches (coverage.py), traced once per task and cached; None if unknown."""
    cache = ctx.task_cache_dir / "bench-trace.json"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        cached = json.loads(cache.read_text())
        if cached.get("command") == ctx.spec.benchmark_command:
            known: dict[str, Any] | None = cached.get("record")
            return known
    record = _traced_run(ctx, ctx.base_dir, argv)
    _write_json(cache, {"command": ctx.spec.benchmark_command, "record": record})
    return record


def _traced_run(ctx: ScoringContext, source: Path, argv: Sequence[str], *, calls: bool = True) -> dict[str, Any] | None:
    """What the benchmark touches on a copy of `source` (coverage.py's record), from one traced run; None if unknown.

    Only `python SCRIPT ...` and `python -m MODULE ...` can be traced; a run that fails leaves no record.
    `calls=False`: no functions are recorded (tracer.py --files-only), for a caller whose changed Python files all
    have the same code, where which functions started cannot matter; the run then costs about a plain one.
    """
    if not (len(argv) >= 2 and argv[0] == "python" and (argv[1] == "-m" or not argv[1].startswith("-"))):
        return None
    with scratch_copy(source, work_root=ctx.settings.work_root, prefix="bench-trace-") as tree:
        (tree / TRACER_NAME).write_bytes(TRACER.read_bytes())
        result = ctx.run(
            ["python", "-P", TRACER_NAME, TRACE_NAME, *([] if calls else ["--files-only"]), *argv[1:]],
            tree=tree,
            env_dir=ctx.env_dir,
            limits=_limits(ctx),
        )
        data = read_regular_file(tree / TRACE_NAME, TRACE_MAX_BYTES) if _failure(result) is None else None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        record: dict[str, Any] | None = json.loads(data) if data else None
        return record
    return None


def _unreachable(criterion: str, ctx: ScoringContext) -> CriticResult | None:
    """The base's performance, without a run, for a patch that cannot change what the benchmark runs; else None."""
    argv = ctx.spec.argv(ctx.spec.benchmark_command)
    record = _trace(ctx, argv)
    if record is None:
        return None
    scripts = set(_script_paths(argv, ctx.base_dir))  # always measured with the base's version
    paths = [path for path in _differences(ctx.base_dir, ctx.patched_dir) if path not in scripts]
    clear, why = coverage.untouched(record, ctx.base_dir, ctx.patched_dir, paths)
    if not clear:
        return None
    evidence = {
        "command": ctx.spec.benchmark_command,
        "metric": METRIC,
        "shortcut": "coverage",
        "coverage": why,
        "ratio": 1.0,
        "ci_low": 1.0,
        "ci_high": 1.0,
        "p_value": 1.0,
        "claim_alpha": perfstats.CLAIM_ALPHA,
        "confidence_level": 0.95,
        "n_base": 0,
        "n_patched": 0,
    }
    step = (
        f"{STEP} Not run: a traced run of `{ctx.spec.benchmark_command}` on the base recorded what it executes, "
        f"reads and imports, and {why}. The patch cannot change what the benchmark does, so it gets the "
        "base's performance."
    )
    return _judged(
        criterion, rationale=(step,), evidence=evidence, knots=perfstats.DEFAULT_KNOTS, other_flags=frozenset()
    )


def _measured_dir(ctx: ScoringContext) -> Path:
    """Where this host keeps the task's measured patches (one JSON file each) for their near-duplicates."""
    return ctx.task_cache_dir / f"bench-measured-{_host()}"


def _write_measured(ctx: ScoringContext, result: CriticResult) -> None:
    """Keep a settled measurement (interleaved, or one that stood on the cached base), with the files the patch
    changed, for later patches that cannot differ from it.

    Nothing is kept while the score is in doubt (a near-duplicate must then be measured, and healed, itself), nor
    when the changed files are links or too large to keep.
    """
    evidence = result.evidence
    if evidence.get("score_in_doubt") or evidence.get("wall_in_doubt") or "ratio" not in evidence:
        return
    changes: dict[str, str | None] = {}
    for relative in _differences(ctx.base_dir, ctx.patched_dir):
        path = ctx.patched_dir / relative
        if path.is_symlink() or path.is_dir():
            return
        data = read_regular_file(path, MEASURED_MAX_BYTES) if path.exists() else None
        if path.exists() and data is None:
            return
        changes[relative] = None if data is None else base64.b64encode(data).decode("ascii")
    if sum(len(text or "") for text in changes.values()) > MEASURED_MAX_BYTES:
        return
    key = hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()
    record = {
        "command": ctx.spec.benchmark_command,
        "format": BASE_FORMAT,
        "cpus": list(_cpus(ctx)),
        "measured_at": time.time(),
        "changes": changes,
        "evidence": evidence,
        "trace": None,  # traced when a later patch first asks (_same_as_measured)
    }
    _write_json(_measured_dir(ctx) / f"{key}.json", record)


def _same_as_measured(criterion: str, ctx: ScoringContext) -> CriticResult | None:
    """The measurement of a patch measured earlier on this host, when this patch cannot change what its benchmark did.

    Patches of one rollout group often differ only where the benchmark never looks: a comment, a notes file. For
    each of the task's MEASURED_CANDIDATES most recent settled measurements, the earlier patch's tree is rebuilt
    from the base and its kept files; a patch whose Python files parse to the same programs as that tree's (so only
    comments, layout and other files differ) is checked against a traced run of the earlier tree, made once and kept,
    exactly as a patch is checked against the base's trace (coverage.untouched). Anything else: None, and the
    patch is measured.
    """
    argv = ctx.spec.argv(ctx.spec.benchmark_command)
    scripts = set(_script_paths(argv, ctx.base_dir))
    ours = set(_differences(ctx.base_dir, ctx.patched_dir)) - scripts
    for target, record in _measured_records(ctx):
        if not _same_python(ctx, record["changes"], ours | set(record["changes"]) - scripts):
            continue  # looked at without copying anything: most measured patches of a task differ in code
        with scratch_copy(ctx.base_dir, work_root=ctx.settings.work_root, prefix="bench-sibling-") as tree:
            if not _rebuild(tree, record["changes"]):
                continue
            _restore_benchmark_files(argv, ctx.base_dir, tree)  # as it was measured: with the base's scripts
            paths = [path for path in _differences(tree, ctx.patched_dir) if path not in scripts]
            if not all(
                _same_code(_source(tree / path), _source(ctx.patched_dir / path))
                for path in paths
                if path.endswith(".py")
            ):
                continue
            trace = record.get("trace")
            if trace is None and paths:  # every changed Python file has the same code: which functions ran is moot
                trace = _traced_run(ctx, tree, argv, calls=False)
                if trace is None:
                    continue
                _write_json(target, {**record, "trace": trace})
            clear, why = coverage.untouched(trace or {}, tree, ctx.patched_dir, paths)
        if not clear:
            continue
        age = time.time() - float(record["measured_at"])
        evidence = {
            **record["evidence"],
            "shortcut": "same_as_measured",
            "same_as": {"patch": target.stem[:12], "age_s": round(age, 1), "why": why, "differences": len(paths)},
        }
        measured = record["evidence"]
        how = (
            f"{measured['n_patched']} patched runs against the base cached on this host"
            if "base_cached" in measured
            else f"{measured['n_base']} interleaved pairs"
        )
        differ = (
            f"The {len(paths)} file(s) where the two trees differ hold the same Python code (comments and layout "
            "aside) or are files a traced run of that patch's benchmark never read, listed or looked for as a "
            "module, nor read as text"
            if paths
            else "The two trees are the same"
        )
        step = (
            f"{STEP} Not run: a patch measured on this host {age / 60:.0f} minutes ago (changes {target.stem[:12]}) "
            f"runs the same benchmark as this one. {differ}. Its measurement stands for this patch: {how}."
        )
        return _judged(
            criterion, rationale=(step,), evidence=evidence, knots=perfstats.DEFAULT_KNOTS, other_flags=frozenset()
        )
    return None


def _measured_records(ctx: ScoringContext) -> list[tuple[Path, dict[str, Any]]]:
    """The task's usable measured patches on this host, newest first, at most MEASURED_CANDIDATES."""
    records = []
    with contextlib.suppress(OSError):
        for path in _measured_dir(ctx).glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text())
                age = time.time() - float(record.get("measured_at", 0.0))
                if (
                    isinstance(record, dict)
                    and record.get("command") == ctx.spec.benchmark_command
                    and record.get("format") == BASE_FORMAT
                    and record.get("cpus") == list(_cpus(ctx))
                    and 0 <= age <= BASE_MAX_AGE_S
                    and isinstance(record.get("changes"), dict)
                ):
                    records.append((path, record))
    records.sort(key=lambda item: -float(item[1]["measured_at"]))
    return records[:MEASURED_CANDIDATES]


def _rebuild(tree: Path, changes: Mapping[str, str | None]) -> bool:
    """Apply a measured patch's kept files to a copy of the base; False when a path would leave the tree."""
    root = tree.resolve()
    for relative, text in changes.items():
        path = root / relative
        if not path.resolve().is_relative_to(root) or path.resolve() == root:
            return False
        if text is None:
            if path.is_dir() and not path.is_symlink():
                remove_tree(path)
            else:
                path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(text))
    return True


def _same_python(ctx: ScoringContext, changes: Mapping[str, str | None], paths: set[str]) -> bool:
    """Every Python file among `paths` holds the same code in a measured patch's tree (the base and its kept
    `changes`) as in this patch's tree: the cheap look that comes before rebuilding that tree."""
    for path in sorted(p for p in paths if p.endswith(".py")):
        if path in changes:
            kept = changes[path]
            theirs = None if kept is None else base64.b64decode(kept)
        else:
            theirs = _source(ctx.base_dir / path)
        mine = _source(ctx.patched_dir / path)
        if theirs != mine and not _same_code(theirs, mine):
            return False
    return True


def _source(path: Path) -> bytes | None:
    """A regular file's bytes (links not followed), or None: missing, a link, or too large to parse."""
    return None if path.is_symlink() else read_regular_file(path, coverage.MAX_SOURCE_BYTES)


def _same_code(one: bytes | None, other: bytes | None) -> bool:
    """Both are Python sources that parse to the same tree (comments and layout aside), docstrings included."""
    if one is None or other is None:
        return False
    try:
        return ast.dump(ast.parse(one)) == ast.dump(ast.parse(other))
    except (SyntaxError, ValueError):
        return False


def _differences(base: Path, patched: Path) -> list[str]:
    """Relative paths of every file or link that differs between the two trees, or is in one only.

    Read from the trees themselves, not from the diff: whatever the preparation of the patched tree did, this is
    what the benchmark would run on.
    """

    def entries(root: Path) -> dict[str, Path]:
        files = (path for path in root.rglob("*") if not path.is_dir() or path.is_symlink())
        return {path.relative_to(root).as_posix(): path for path in files}

    def same(a: Path | None, b: Path | None) -> bool:
        if a is None or b is None or a.is_symlink() or b.is_symlink():
            return False
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()

    ours, theirs = entries(base), entries(patched)
    return [name for name in sorted(ours.keys() | theirs.keys()) if not same(ours.get(name), theirs.get(name))]


def _failure(result: RunResult) -> str | None:
    """Why a run does not count as a completed benchmark, or None when it does."""
    if result.timed_out:
        return f"timed out after {result.wall_s:.1f} s"
    if result.resource_limit:
        return f"hit the {result.resource_limit} limit"
    if result.returncode != 0:
        return f"exited with status {result.returncode}"
    return None


def _reported_seconds(result: RunResult) -> float | None:
    """The "seconds" of a JSON object on the output's last non-empty line, if it is a plausible timing.

    A benchmark cannot spend more time in its hot loop than the whole run took, so larger numbers are refused.
    """
    lines = [line for line in result.output.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        data = json.loads(lines[-1])
    except ValueError:
        return None
    seconds = data.get("seconds") if isinstance(data, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return None
    return float(seconds) if 0 <= seconds <= result.wall_s + SECONDS_SLACK_S else None


def _restore_benchmark_files(argv: Sequence[str], base_dir: Path, patched_tree: Path) -> list[str]:
    """Give the patched copy the base's benchmark scripts; return the ones the patch had changed.

    The benchmark must measure the same thing on both sides: a patch that edits the script (to skip the hot
    loop, or to print a smaller "seconds") would otherwise grade itself. Script paths are the arguments that
    name a file of the base tree, and the module after `-m`.
    """
    restored = []
    for relative in _script_paths(argv, base_dir):
        source, target = base_dir / relative, patched_tree / relative
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir() and not target.is_symlink():
                remove_tree(target)
            else:
                target.unlink(missing_ok=True)
            target.write_bytes(source.read_bytes())
            restored.append(relative)
    return restored


def _script_paths(argv: Sequence[str], base_dir: Path) -> list[str]:
    """Relative paths of base-tree files that `argv` names directly or as a `-m` module."""
    root = base_dir.resolve()
    candidates = list(argv)
    for flag, module in itertools.pairwise(argv):
        if flag == "-m":
            candidates += [module.replace(".", "/") + ".py", module.replace(".", "/") + "/__main__.py"]
    found = []
    for candidate in candidates:
        path = (root / candidate).resolve()
        if path.is_relative_to(root) and path != root and path.is_file() and not (root / candidate).is_symlink():
            relative = path.relative_to(root).as_posix()
            if relative not in found:
                found.append(relative)
    return found


def _method_step(command: str, bench: _Bench, restored: Sequence[str]) -> str:
    """The first rationale step: what was run, what was measured and by whom."""
    start_up_runs, cpus = bench.start_up["cpu"], bench.limits.cpus
    warm_up = "each run forked from the warm zygote, so no warm-up run" if bench.warm else "one warm-up run each"
    step = (
        f"{STEP} Timed by the harness: CPU time (user + system, the kernel's accounting of the sandboxed "
        f"process and the children it waited for) of each whole run of `{command}`, on copies of the base and "
        f"patched trees in the sandbox: {warm_up}, then interleaved pairs (A B, B A, ...), compared "
        "pair by pair (the median of the pairs' ratios)."
    )
    if cpus:
        step += f" Every run pinned to CPU {', '.join(map(str, cpus))} (REVIEWAPP_BENCH_CPUS)."
    if start_up_runs:
        step += (
            f" Start-up baseline: `{START_UP_COMMAND}` in the same sandbox, median "
            f"{_duration(_start_up(start_up_runs))} over {len(start_up_runs)} runs, taken off both sides "
            f"(at most {perfstats.MAX_START_UP_SHARE:.0%} of either side's median)."
        )
    else:
        step += f" Start-up baseline: `{START_UP_COMMAND}` did not run, so nothing is taken off."
    step += (
        ' Wall time is measured too, for a slowdown CPU time cannot see; a "seconds" figure the benchmark prints'
        " is only a second opinion."
    )
    if restored:
        step += f" The patch edited the benchmark itself ({', '.join(restored)}); the base version was used."
    return step


def _cached_method_step(command: str, evidence: Mapping[str, Any], restored: Sequence[str]) -> str:
    """The first rationale step of a patch measured against the base cached on this host."""
    cached = evidence["base_cached"]
    step = (
        f"{STEP} Timed by the harness: CPU time of each whole run of `{command}` in the sandbox, "
        f"{evidence['n_patched']} runs on a copy of the patched tree against the {cached['runs']} base runs measured "
        f"on this host {cached['age_s'] / 60:.0f} minutes ago (one base run now, {_duration(cached['check_s'])}, "
        f"is within {BASE_DRIFT:.0%} of their median, so the host has not drifted). Only an interval wholly below "
        "the slowdown threshold stands on a cached base; anything else is measured again, interleaved."
    )
    if restored:
        step += f" The patch edited the benchmark itself ({', '.join(restored)}); the base version was used."
    return step


def _evidence(
    old: Mapping[str, Any],
    command: str,
    bench: _Bench,
    decision: perfstats.Decision,
    elapsed: float,
    restored: Sequence[str],
) -> dict[str, Any]:
    """JSON-serialisable evidence: every sample (CPU, wall, self-reported) and the last look's statistics."""
    look = decision.comparison
    evidence: dict[str, Any] = {
        "command": command,
        "metric": METRIC,
        "base_s": list(decision.base),
        "patched_s": list(decision.patched),
        "base_median_s": float(np.median(decision.base)),
        "patched_median_s": float(np.median(decision.patched)),
        "start_up_runs_s": bench.start_up["cpu"],
        "start_up_wall_runs_s": bench.start_up["wall"],
        "start_up_s": _start_up(bench.start_up["cpu"]),
        "start_up_subtracted_s": look.start_up_s,
        "ratio": look.ratio,
        "ci_low": look.ci_low,
        "ci_high": look.ci_high,
        "confidence_level": look.confidence_level,
        "p_value": look.p_value,
        "claim_alpha": perfstats.CLAIM_ALPHA,
        "n_base": look.n_base,
        "n_patched": look.n_patched,
        "verdict": look.verdict,
        "stop": decision.stop,
        "elapsed_s": round(float(old.get("elapsed_s", 0.0)) + elapsed, 4),
        "restored_files": sorted(set(old.get("restored_files", ())) | set(restored)),
        "cpus": list(bench.limits.cpus),  # the CPUs every run was pinned to; [] when not pinned
        "warm": bench.warm,  # the runs forked from the warm zygote (no warm-up run); None: not known
    }
    wall = bench.wall_comparison()
    for side in SIDES:
        evidence[f"{side}_wall_s"] = bench.wall_s[side]
        evidence[f"reported_{side}_s"] = bench.reported_s[side]
    evidence["wall"] = {
        "base_median_s": float(np.median(bench.wall_s["base"])),
        "patched_median_s": float(np.median(bench.wall_s["patched"])),
        "start_up_subtracted_s": wall.start_up_s,
        "ratio": wall.ratio,
        "ci_low": wall.ci_low,
        "ci_high": wall.ci_high,
        "p_value": wall.p_value,
    }
    evidence["reported"] = _second_opinion(evidence["reported_base_s"], evidence["reported_patched_s"], look, wall)
    return evidence


def _second_opinion(
    base: Sequence[float | None],
    patched: Sequence[float | None],
    *measured: perfstats.Comparison,
) -> dict[str, Any] | None:
    """The benchmark's own "seconds", compared like the harness's timings and checked against them.

    None when the base never reports a figure (nothing to compare). `contradicts` is perfstats.contradicts
    against any of the harness's `measured` comparisons (CPU, wall): the report favours the patch far beyond
    the noise of both, which only a patch that changed what the benchmark's clock says produces.
    """
    kept = {side: [s for s in values if s is not None] for side, values in (("base", base), ("patched", patched))}
    if not kept["base"]:
        return None
    opinion: dict[str, Any] = {
        "n_base": len(kept["base"]),
        "n_patched": len(kept["patched"]),
        "missing": len(patched) - len(kept["patched"]),
    }
    if min(len(values) for values in kept.values()) < 2:
        return opinion
    reported = perfstats.compare(kept["base"], kept["patched"])
    opinion.update(
        ratio=reported.ratio,
        ci_low=reported.ci_low,
        ci_high=reported.ci_high,
        p_value=reported.p_value,
        contradicts=any(perfstats.contradicts(look, reported) for look in measured),
        factor=perfstats.TAMPER_FACTOR,
    )
    return opinion


def _body(result: CriticResult) -> tuple[str, ...]:
    """The rationale without its closing steps (the second opinion, if any, and the verdict)."""
    closing = 2 if result.evidence.get("reported") else 1
    return tuple(result.rationale[:-closing])


def _judged(
    criterion: str,
    *,
    rationale: Sequence[str],
    evidence: Mapping[str, Any],
    knots: Sequence[Sequence[float]],
    other_flags: frozenset[str],
) -> CriticResult:
    """Verdict, score, flags and confidence from stored statistics under `knots`; the closing steps go last.

    The one place that turns measurements into a subscore, shared by evaluation, healing and re-scoring.
    The score and the perf flags come from the harness's measurement only; `tamper` comes from the stored
    second opinion, which does not depend on the knots.
    """
    slower_at = perfstats.slower_threshold(knots)

    def verdict_of(stats: Mapping[str, Any]) -> str:
        return perfstats.decide(
            stats["ci_low"], stats["ci_high"], stats["p_value"], slower_at=slower_at, alpha=evidence["claim_alpha"]
        )

    # CPU time is the measurement; wall time only ever adds a slowdown CPU time cannot see (the patch sleeps,
    # waits, or works in processes the command did not wait for): when it claims "slower" and CPU time does
    # not, or when its whole interval lies above CPU time's.
    verdict = verdict_of(evidence)
    wall: Mapping[str, Any] = evidence.get("wall") or {}  # {} when wall time was not measured
    wall_verdict = verdict_of(wall) if wall else None
    hidden = wall_verdict == "slower" and (verdict != "slower" or wall["ci_low"] > evidence["ci_high"])
    judged_on = "wall" if hidden else "cpu"
    stats = wall if hidden else evidence
    verdict = wall_verdict if hidden and wall_verdict else verdict
    wall_doubt = (
        verdict != "slower" and wall_verdict is not None and _wall_in_doubt(wall["ci_low"], wall_verdict, slower_at)
    )
    # Wall time in doubt lowers the confidence (more runs, then review), never the score: only a slowdown a test
    # can claim moves the score, so noise on the noisier clock never scores a no-op as a regression.
    doubt_stats = wall if wall_doubt else stats
    score = 1.0 if verdict == "faster" else perfstats.score_from_ratio(stats["ratio"], knots)
    # Only an interval reaching past the first knot leaves the score in doubt; one that straddles just the
    # "faster" threshold still scores 1.0 everywhere, so it neither lowers confidence nor goes to review. Nor does
    # one pinned near the threshold, where every ratio scores within the tolerance: interleaved pairs carry one; a
    # cached base does not (a host's drift the check let through could move its interval as a whole).
    pinned = perfstats.pinned(
        stats["ci_low"], stats["ci_high"], knots=knots, tolerance=float(evidence.get("score_tolerance", 0.0))
    )
    in_doubt = (verdict == "inconclusive" and stats["ci_high"] > slower_at and not pinned) or wall_doubt
    if verdict == "slower":
        flags = {"perf_regression"}
    elif in_doubt:
        flags = {"perf_inconclusive"}
    else:
        flags = {"faster"} if verdict == "faster" else set()
    opinion = evidence.get("reported")
    if opinion and opinion.get("contradicts"):
        flags.add("tamper")
    # How much the score could move inside the interval: a wide interval over a steep knot is doubt.
    spread = perfstats.score_spread(doubt_stats["ci_low"], doubt_stats["ci_high"], knots)
    confidence = 0.5 * (1 - spread) if in_doubt else 0.75 + 0.2 * (1 - spread)
    new_evidence = {
        **evidence,
        "verdict": verdict,
        "judged_on": judged_on,
        "wall_in_doubt": wall_doubt,
        "score_in_doubt": in_doubt,
        "score_pinned": verdict == "inconclusive" and pinned and not in_doubt,
        "slower_at": slower_at,
        "knots": [list(k) for k in knots],
    }
    closing = (_opinion_step(new_evidence, opinion),) if opinion else ()
    return CriticResult(
        criterion=criterion,
        score=round(score, 4),
        confidence=round(confidence, 4),
        rationale=(*rationale, *closing, _verdict_step(new_evidence, score)),
        evidence=new_evidence,
        flags=other_flags | flags,
    )


def _opinion_step(evidence: Mapping[str, Any], opinion: Mapping[str, Any]) -> str:
    """The step that weighs the benchmark's own "seconds" against the harness's ratio (never scored)."""
    if "ratio" not in opinion:
        return (
            f'{STEP} The benchmark\'s own "seconds" line is missing from {opinion["missing"]} of the patched '
            "runs (the base prints it), so there is no second opinion; the harness's measurement stands."
        )
    reported = f"ratio {opinion['ratio']:.2f}, CI [{opinion['ci_low']:.2f}, {opinion['ci_high']:.2f}]"
    measured = f"ratio {evidence['ratio']:.2f}, CI [{evidence['ci_low']:.2f}, {evidence['ci_high']:.2f}]"
    if opinion["contradicts"]:
        return (
            f'{STEP} The benchmark\'s own "seconds" ({reported}; patched median '
            f"{_duration(_median(evidence['reported_patched_s']))} against base "
            f"{_duration(_median(evidence['reported_base_s']))}) say the patch is faster, while the harness "
            f"measured it slower ({measured}): more than {opinion['factor']:g}x apart, beyond the noise of both. "
            "The patched code changed what the benchmark's own clock reports. Flagged tamper."
        )
    return f'{STEP} Second opinion, not scored: the benchmark\'s own "seconds" give {reported}.'


def _median(values: Sequence[float | None]) -> float:
    return float(np.median([v for v in values if v is not None]))


def _verdict_step(evidence: Mapping[str, Any], score: float) -> str:
    """The closing step: medians, ratio, interval, the verdict in words and the score."""
    band = f"{(evidence['slower_at'] - 1) * 100:.0f}%"
    n = evidence["n_base"]
    wall = evidence.get("wall") or {}
    meaning = {
        "slower": f"Slower by more than {band} (Mann-Whitney p={{p:.2g}}).",
        "faster": f"Faster by more than {band} (Mann-Whitney p={{p:.2g}}); flagged faster.",
        "same": f"Within {band} of the base either way.",
        "inconclusive": (
            f"The interval straddles the {band} slowdown threshold after {n} runs per side, "
            "so the score comes from the point estimate, with low confidence."
            if evidence["score_in_doubt"]
            else f"The interval reaches past the {band} slowdown threshold after {n} runs per side, but every ratio "
            f"in it scores at least {1 - evidence.get('score_tolerance', 0.0):.2f} (a small slowdown at most, not "
            "claimed): the score comes from the point estimate."
            if evidence.get("score_pinned")
            else f"Not slower by more than {band} (the whole interval is below {evidence['slower_at']:.2f}); "
            f"whether it is faster by {band} stays open after {n} runs per side."
        ),
    }[evidence["verdict"]]
    if evidence.get("shortcut") == "coverage":
        return f"{STEP} The base's performance: ratio 1.00 by construction, not measured. Score {score:.2f}."
    cpu = _figures(evidence, "CPU")
    if evidence.get("judged_on") == "wall":
        text = (
            f"CPU time shows less slowdown (ratio {evidence['ratio']:.2f}, CI [{evidence['ci_low']:.2f}, "
            f"{evidence['ci_high']:.2f}]) than wall time, beyond the noise of both: only waiting, or work outside "
            f"the command's own accounting, explains that. {_figures(wall, 'wall')} "
            + meaning.format(p=wall["p_value"])
        )
    else:
        text = f"{cpu} {meaning.format(p=evidence['p_value'])}"
        if evidence.get("wall_in_doubt"):
            text = (
                f"{cpu} By CPU time: {evidence['verdict']}. But wall time is higher on the patched side "
                f"(ratio {wall['ratio']:.2f}, CI [{wall['ci_low']:.2f}, {wall['ci_high']:.2f}]) than the CPU "
                f"time shows, without a significant rank test after {n} runs per side: the score comes from the "
                "wall time's point estimate, with low confidence."
            )
    return f"{STEP} {text} Score {score:.2f}."


def _figures(stats: Mapping[str, Any], what: str) -> str:
    """Medians, the start-up taken off, ratio and interval of one measurement, in words."""
    start_up = float(stats.get("start_up_subtracted_s", 0.0))
    ratio = f"Less the {_duration(start_up)} start-up both share, ratio" if start_up else "Ratio"
    level = f"{stats.get('confidence_level', 0.95) * 100:.0f}%"
    n = f" (n={stats['n_base']})" if "n_base" in stats else ""
    return (
        f"Baseline median {_duration(stats['base_median_s'])} {what}{n}. "
        f"Patched {_duration(stats['patched_median_s'])}. "
        f"{ratio} {stats['ratio']:.2f}, {level} CI [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]."
    )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _failed(criterion: str, ctx: ScoringContext, failure: BenchmarkFailed, head: Sequence[str]) -> CriticResult:
    """A benchmark that fails on the patched tree scores 0; one that fails on the base means a broken task."""
    result = failure.result
    excerpt = result.output.strip()[-EXCERPT_CHARS:] or "(no output)"
    evidence = {
        "command": ctx.spec.benchmark_command,
        "failed_on": failure.side,
        "reason": failure.why,
        "returncode": result.returncode,
        "timed_out": result.timed_out,
        "resource_limit": result.resource_limit,
        "output_excerpt": excerpt,
    }
    if failure.side == "base":
        step = (
            f"{STEP} The benchmark `{ctx.spec.benchmark_command}` fails on the base tree ({failure.why}), so "
            f"the task is broken and performance is not measured. Output: {excerpt}"
        )
        return CriticResult(criterion, None, 1.0, (*head, step), evidence, frozenset({"task_broken"}))
    flags = {"timeout"} if result.timed_out else {"resource_limit"} if result.resource_limit else set()
    step = (
        f"{STEP} The benchmark `{ctx.spec.benchmark_command}` runs on the base tree but fails on the patched "
        f"tree ({failure.why}). Output: {excerpt} Score 0.00."
    )
    return CriticResult(criterion, 0.0, 0.95, (*head, step), evidence, frozenset(flags))
