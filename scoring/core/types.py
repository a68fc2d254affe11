"""Plain data shared by every part of the scoring core.

Nothing here imports Django. A critic is a plain class over these types; the pipeline, the Celery tasks and
`manage.py score_patch` all pass the same objects around.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Defaults named once: the dataclasses below, the WeightProfile model and the Django settings all read these.
#: Final scores in [DEFAULT_BAND_LOW, DEFAULT_BAND_HIGH] are borderline and go to review.
DEFAULT_BAND_LOW = 0.5
DEFAULT_BAND_HIGH = 0.7
#: The share of confident patches sampled for a human audit.
DEFAULT_AUDIT_RATE = 0.02
#: Subscores less confident than this are healed, and routed to review if they stay below (REVIEWAPP_HEAL_CONFIDENCE).
DEFAULT_HEAL_CONFIDENCE = 0.7
#: The performance critic's (ratio, score) knots: linear between, clamped outside.
DEFAULT_PERF_KNOTS: tuple[tuple[float, float], ...] = ((1.05, 1.0), (1.30, 0.4), (2.0, 0.0))
#: Benchmark pairs stop once every ratio in the interval scores at least 1 minus this (REVIEWAPP_BENCH_SCORE_TOLERANCE):
#: a small slowdown at most, not claimed; 0.2 at the default weight of 0.2 is at most 0.04 of reward.
DEFAULT_BENCH_SCORE_TOLERANCE = 0.2

#: The whole flag vocabulary (docs/scoring.md, "Flags"). A flag outside this set is a bug; what each one does is
#: scoring.core.aggregate.policy.POLICY.
FLAGS: frozenset[str] = frozenset(
    {
        "tamper",
        "suspicious",
        "tests_modified",
        "overfit",
        "regression",
        "flaky",
        "timeout",
        "resource_limit",
        "perf_regression",
        "faster",
        "perf_inconclusive",
        "task_broken",
        "unsandboxed",
        "critic_disagrees",
    }
)


@dataclass(frozen=True)
class CriticResult:
    """One subscore: what a critic measured and why.

    `score` is None when the criterion could not be measured; `rationale` is a list of short "Step: ..." sentences
    that cite the evidence; `evidence` is JSON-serialisable; `flags` use the vocabulary in FLAGS.
    """

    criterion: str
    score: float | None
    confidence: float
    rationale: tuple[str, ...]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError(f"{self.criterion}: score {self.score} outside [0, 1]")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"{self.criterion}: confidence {self.confidence} outside [0, 1]")
        unknown = self.flags - FLAGS
        if unknown:
            raise ValueError(f"{self.criterion}: unknown flags {sorted(unknown)}")

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "confidence": round(self.confidence, 4),
            "rationale": list(self.rationale),
            "evidence": dict(self.evidence),
            "flags": sorted(self.flags),
        }

    @classmethod
    def from_json(cls, criterion: str, data: Mapping[str, Any]) -> CriticResult:
        return cls(
            criterion=criterion,
            score=data.get("score"),
            confidence=float(data.get("confidence", 0.0)),
            rationale=tuple(data.get("rationale", ())),
            evidence=dict(data.get("evidence", {})),
            flags=frozenset(data.get("flags", ())),
        )


@dataclass(frozen=True)
class RunLimits:
    """Resource limits for one sandboxed command (docs/sandbox.md says how each is enforced).

    `cpu_s`, `memory_bytes` (address space) and `file_size_bytes` bind each process of the run; `max_pids` binds the
    run's fresh uid (RLIMIT_NPROC). `run_memory_bytes` and `run_max_pids` bind all the run's processes together
    (its cgroup, when cgroups are usable): a run that forks cannot multiply the per-process limits.
    """

    wall_s: float = 60.0
    cpu_s: float = 60.0
    memory_bytes: int = 1 << 30
    max_pids: int = 128
    file_size_bytes: int = 64 << 20
    output_bytes: int = 1 << 20
    #: Resident memory of the whole run, tmpfs (/tmp, /dev/shm) and page cache included: one process at its
    #: address-space limit fits, with room for the sandbox's tmpfs; N such processes do not.
    run_memory_bytes: int = 2 << 30
    #: Processes and threads of the whole run, the sandbox's own few (bwrap, its init, the shell) included.
    run_max_pids: int = 160
    #: The CPUs the run's processes may use (sched_setaffinity); empty: the worker's own. Benchmarks use it.
    cpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """What a sandboxed command did. `output` is stdout and stderr interleaved, capped at RunLimits.output_bytes."""

    returncode: int | None  # None when the command was killed (wall clock, signal)
    output: str
    truncated: bool
    timed_out: bool
    resource_limit: str | None  # "memory" | "cpu" | "pids" | "file_size" | None
    wall_s: float
    cpu_s: float  # user + system time of the whole run: its cgroup's accounting, else rusage of waited children
    sandbox: str  # "bwrap" | "unsandboxed"
    warm: bool = False  # forked from the warm zygote (scoring.core.sandbox.warm), not a fresh interpreter


class Runner(Protocol):
    """Runs one command on a tree in the sandbox. scoring.core.sandbox.process.run is the implementation."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        tree: Path,
        report_dir: Path | None = None,
        env_dir: Path | None = None,
        limits: RunLimits = RunLimits(),
    ) -> RunResult: ...


@dataclass(frozen=True)
class PipelineSettings:
    """Knobs of the pipeline. Django settings build one from the environment; score_patch uses the defaults."""

    cache_root: Path
    work_root: Path
    allow_unsandboxed: bool = False
    heal_confidence_threshold: float = DEFAULT_HEAL_CONFIDENCE
    heal_budget_s: float = 60.0
    flaky_reruns: int = 2
    bench_min_runs: int = 5
    bench_max_runs: int = 30
    bench_budget_s: float = 60.0
    bench_score_tolerance: float = DEFAULT_BENCH_SCORE_TOLERANCE
    #: CPUs every benchmark run is pinned to (empty: the worker's own); those this worker may not use are left out.
    bench_cpus: tuple[int, ...] = ()
    analyser_recycle_after: int = 200
    analyser_timeout_s: float = 30.0
    analyser_memory_bytes: int = 1 << 30
    output_bytes: int = 1 << 20
    #: pytest commands fork from a warm zygote (scoring.core.sandbox.warm) instead of starting Python and pytest afresh.
    warm_tests: bool = True


@dataclass(frozen=True)
class Weights:
    """A weight profile as pure data: a weight per criterion, the borderline band, the audit rate, perf knots."""

    name: str
    version: int
    weights: Mapping[str, float]
    band_low: float = DEFAULT_BAND_LOW
    band_high: float = DEFAULT_BAND_HIGH
    audit_rate: float = DEFAULT_AUDIT_RATE
    # (ratio, score) knots for the performance critic, linear between, clamped outside.
    perf_knots: tuple[tuple[float, float], ...] = DEFAULT_PERF_KNOTS
    # How subscores combine before the mean: "sum" (plain) or "gated" (scoring.core.aggregate.shaping).
    shaping: str = "sum"


GATE_CLOSED = "closed"
GATE_SUMMED = "summed"


@dataclass
class ScoringContext:
    """Everything a critic may look at for one patch. Built by scoring.core.sandbox.workspace; read-only for critics.

    - `base_dir`: the pristine base tree (shared, cached per task). Never run code in it: copy it first.
    - `patched_dir`: this patch's own tree, patch applied, edited tests and test infrastructure reverted.
    - `hidden_dir`: the hidden tests, overlaid only when grading (None when the task has none).
    - `env_dir`: the task's cached requirements (a `pip install --target` folder), or None.
    - `task_cache_dir`: per task and toolchain, where critics cache base facts (base test results, base lint).
    - `changed_files`: paths (relative, posix) the patch adds or modifies, after reverts; `added_lines` maps each
      to the 1-based line numbers in the patched file that the patch added or changed.
    - `flags` / `notes`: what preparing the tree already found (tamper, tests_modified) and the reasons.
    - `gate`: whether the other subscores can still move the reward after a correctness of 0 (GATE_CLOSED ...).
    """

    spec: Any  # scoring.core.intake.spec.TaskSpec
    diff: Any  # scoring.core.intake.diffcheck.ParsedDiff
    base_dir: Path
    patched_dir: Path
    hidden_dir: Path | None
    env_dir: Path | None
    task_cache_dir: Path
    settings: PipelineSettings
    run: Runner
    changed_files: tuple[str, ...] = ()
    added_lines: Mapping[str, frozenset[int]] = field(default_factory=dict)
    deleted_files: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()
    analyser: Any = None  # scoring.core.analysis.analyser.Analyser, shared by style and security
    #: What an earlier stage's correctness of 0 means under the active profile's shaping (the pipeline decides,
    #: scoring.core.aggregate.shaping.gate_after): GATE_CLOSED (every other subscore is multiplied by 0, so a
    #: critic may skip work that cannot move the reward), GATE_SUMMED (they still count), or "" (not known, or
    #: correctness above 0).
    gate: str = ""
