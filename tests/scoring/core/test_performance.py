"""The performance critic end to end: real benchmark processes in the real sandbox, real timings."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from scoring.core.aggregate.shaping import gate_after
from scoring.core.critics.performance import critic as performance_critic
from scoring.core.critics.performance.critic import PerformanceCritic
from scoring.core.intake.spec import TaskSpec
from scoring.core.sandbox import process as sandbox
from scoring.core.sandbox import warm
from scoring.core.types import CriticResult, PipelineSettings, ScoringContext, Weights

LINEAR = """\
def unique(items):
    \"\"\"The items without repeats, first occurrence first.\"\"\"
    seen = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
"""
QUADRATIC = """\
def unique(items):
    \"\"\"The items without repeats, first occurrence first.\"\"\"
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out
"""
# A steady workload (about 0.1 s of CPU) around the function, so that a no-op's timings are not all start-up
# noise; unique() itself costs little when linear and about as much again when quadratic.
BENCH = """\
from mylib import unique

total = sum(i * i % 7 for i in range(600_000))
for _ in range(10):
    assert len(unique(list(range(1000)) * 2)) == 1000
"""
# Times itself and says so on its last line; DELAY comes from the library, so a patch can change it.
SELF_TIMED_BENCH = (
    'import json\n\nfrom mylib import DELAY\n\nprint("warming up")\nprint(json.dumps({"seconds": DELAY}))\n'
)
# Work the library sets the size of (ROUNDS): a patch that doubles it really doubles the CPU time.
BUSY_BENCH = """\
from mylib import ROUNDS

total = 0
for i in range(ROUNDS):
    total += i * i % 7
"""
# CPU time drawn from wide noise, the same on both sides (every run starts from a fresh tree, so the draw is
# fresh entropy, not a counter).
NOISY_BENCH = """\
import random

import mylib  # noqa: F401  (the patch changes it: code the benchmark runs, so it is measured)

rounds = int(300_000 * random.lognormvariate(0, 0.5))
total = sum(i * i % 7 for i in range(rounds))
"""
# Times its hot loop with the clock named CLOCK and reports it: what a task author writes.
CLOCK_TIMED_BENCH = """\
import json
import time

from mylib import unique

data = list(range(20_000)) * 2
start = time.CLOCK()
for _ in range(5):
    assert len(unique(data)) == 20_000
print(json.dumps({"seconds": time.CLOCK() - start}))
"""
# Linear still, but eight times the work: a slowdown no clock resolution or noise can hide.
EIGHT_TIMES = (
    LINEAR.replace("def unique(", "def _unique(")
    + """

def unique(items):
    \"\"\"The items without repeats, first occurrence first (computed eight times).\"\"\"
    for _ in range(7):
        _unique(items)
    return _unique(items)
"""
)

critic = PerformanceCritic()
#: The runner the pipeline gives the critic: Python commands forked from the warm zygote where the worker can.
RUN = functools.partial(sandbox.run, warm=True)
DEFAULT_WEIGHTS = Weights(name="default", version=1, weights={})


def make_ctx(
    tmp_path: Path,
    base: dict[str, str],
    patched: dict[str, str],
    *,
    command: str | None = "python -m bench.run",
    timeout_s: int = 30,
    **settings: float,
) -> ScoringContext:
    """A ScoringContext over two small trees: `patched` lists the files the patch changes."""
    base_dir, patched_dir = tmp_path / "base", tmp_path / "patched"
    for root, files in ((base_dir, base), (patched_dir, {**base, **patched})):
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
    options = {"bench_min_runs": 5, "bench_max_runs": 10, "bench_budget_s": 60.0, **settings}
    return ScoringContext(
        spec=TaskSpec(name="perf", test_command="python -m pytest -q", benchmark_command=command, timeout_s=timeout_s),
        diff=None,
        base_dir=base_dir,
        patched_dir=patched_dir,
        hidden_dir=None,
        env_dir=None,
        task_cache_dir=tmp_path / "task-cache",
        settings=PipelineSettings(cache_root=tmp_path / "cache", work_root=tmp_path / "work", **options),
        run=RUN,
    )


def self_timed_ctx(tmp_path: Path, patched: dict[str, str], **settings: float) -> ScoringContext:
    """A task whose benchmark reports its own "seconds": DELAY from the library, 0.010 on the base."""
    return make_ctx(tmp_path, {"mylib.py": "DELAY = 0.010\n", "bench/run.py": SELF_TIMED_BENCH}, patched, **settings)


def evaluate_and_heal(ctx: ScoringContext):
    """What the pipeline does: evaluate, then heal while the critic is unsure."""
    result = critic.evaluate(ctx)
    if result.confidence < ctx.settings.heal_confidence_threshold:
        result = critic.heal(ctx, result, budget_s=ctx.settings.heal_budget_s)
    return result


def test_patch_that_makes_a_linear_function_quadratic_scores_at_most_0_4(tmp_path):
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR, "bench/run.py": BENCH}, {"mylib.py": QUADRATIC})
    result = evaluate_and_heal(ctx)
    assert result.score is not None and result.score <= 0.4
    assert "perf_regression" in result.flags
    assert result.evidence["metric"] == "cpu_s"
    assert result.evidence["ci_low"] > 1.05
    assert "tamper" not in result.flags
    assert result.rationale[0].startswith("Step: performance check. Timed by the harness: CPU time")
    assert "Slower by more than 5%" in result.rationale[-1]
    assert len(result.evidence["base_wall_s"]) == result.evidence["n_base"]
    json.dumps(result.to_json())  # stored as JSON: every number a plain float


def test_no_op_patch_scores_at_least_0_9(tmp_path):
    # Room for healing: on a loaded machine, a no-op's median needs a few more runs to settle.
    # A rename inside the function the benchmark runs: the same work, but code it executes, so it is measured.
    renamed = {"mylib.py": LINEAR.replace("seen", "already")}
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR, "bench/run.py": BENCH}, renamed, bench_max_runs=20)
    result = evaluate_and_heal(ctx)
    assert "shortcut" not in result.evidence
    assert result.score is not None and result.score >= 0.9
    assert "perf_regression" not in result.flags
    assert "faster" not in result.flags


def test_patch_that_makes_a_quadratic_function_linear_scores_at_least_0_9_without_tamper(tmp_path):
    bench = CLOCK_TIMED_BENCH.replace("CLOCK", "perf_counter").replace("20_000", "2_000")
    ctx = make_ctx(tmp_path, {"mylib.py": QUADRATIC, "bench/run.py": bench}, {"mylib.py": LINEAR})
    result = evaluate_and_heal(ctx)
    assert_honest(result, at_least=1.0)
    assert result.evidence["ci_high"] < 1
    assert result.evidence["reported"]["ratio"] < 0.1


def test_task_without_benchmark_gets_no_score_and_says_why(tmp_path):
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR}, {}, command=None)
    result = critic.evaluate(ctx)
    assert result.score is None
    assert "no benchmark_command" in result.rationale[0]
    assert not result.flags


def test_benchmark_that_fails_on_the_patched_tree_scores_zero_and_cites_the_failure(tmp_path):
    broken = 'def unique(items):\n    raise ValueError("unique is broken by the patch")\n'
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR, "bench/run.py": BENCH}, {"mylib.py": broken})
    result = critic.evaluate(ctx)
    assert result.score == 0.0
    assert "fails on the patched tree" in result.rationale[-1]
    assert "unique is broken by the patch" in result.rationale[-1]
    assert result.evidence["failed_on"] == "patched"


def test_benchmark_that_fails_on_the_base_too_means_a_broken_task(tmp_path):
    broken = "def unique(items):\n    return 1 / 0\n"
    ctx = make_ctx(tmp_path, {"mylib.py": broken, "bench/run.py": BENCH}, {"mylib.py": broken + "\n"})
    result = critic.evaluate(ctx)
    assert result.score is None
    assert result.flags == {"task_broken"}
    assert "ZeroDivisionError" in result.rationale[-1]


def test_benchmark_that_hangs_on_the_patched_tree_times_out_and_scores_zero(tmp_path):
    hangs = "import time\n\n\ndef unique(items):\n    time.sleep(60)\n"
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR, "bench/run.py": BENCH}, {"mylib.py": hangs}, timeout_s=2)
    started = time.monotonic()
    result = critic.evaluate(ctx)
    assert time.monotonic() - started < 15
    assert result.score == 0.0
    assert "timeout" in result.flags


def test_seconds_printed_by_the_benchmark_are_a_second_opinion_never_the_score(tmp_path):
    # The patch makes the benchmark claim it got twice as slow; the harness measures the same work (all of it
    # start-up: room for healing, like any no-op on a loaded machine).
    ctx = self_timed_ctx(tmp_path, {"mylib.py": "DELAY = 0.020\n"}, bench_max_runs=20)
    result = evaluate_and_heal(ctx)
    assert result.evidence["metric"] == "cpu_s"
    assert result.evidence["reported"]["ratio"] == pytest.approx(2.0)
    assert result.score is not None and result.score >= 0.9
    assert not result.flags & {"perf_regression", "tamper"}
    assert 'Second opinion, not scored: the benchmark\'s own "seconds" give ratio 2.00' in result.rationale[-2]


def test_other_knots_rescore_from_the_stored_ratio_without_running_anything(tmp_path):
    ctx = make_ctx(
        tmp_path, {"mylib.py": "ROUNDS = 1_000_000\n", "bench/run.py": BUSY_BENCH}, {"mylib.py": "ROUNDS = 2_000_000\n"}
    )
    result = evaluate_and_heal(ctx)
    assert "perf_regression" in result.flags
    ratio = result.evidence["ratio"]
    assert ratio > 1.3  # twice the work; how much slower a shared machine measures it is noise
    # Knots placed around the stored ratio, so the expected score does not depend on the machine's noise.
    high = 2 * ratio
    lenient = Weights(name="lenient", version=2, weights={}, perf_knots=((1.05, 1.0), (high, 0.0)))
    rescored = critic.rescore(result, lenient)
    assert rescored.score == pytest.approx(1 - (ratio - 1.05) / (high - 1.05), abs=1e-3)
    assert rescored.evidence["base_s"] == result.evidence["base_s"]
    assert rescored.rationale[:-1] == result.rationale[:-1]
    assert f"Score {rescored.score:.2f}" in rescored.rationale[-1]
    # Knots that tolerate more than the measured slowdown turn the verdict, and the flag, around.
    tolerant = Weights(name="tolerant", version=3, weights={}, perf_knots=((3 * ratio, 1.0), (4 * ratio, 0.0)))
    assert critic.rescore(result, tolerant).flags == frozenset()


def test_patch_that_edits_the_benchmark_script_is_measured_with_the_base_script(tmp_path):
    cheat = 'import json\n\nprint(json.dumps({"seconds": 0.000001}))\n'
    ctx = self_timed_ctx(tmp_path, {"bench/run.py": cheat, "mylib.py": "DELAY = 0.010\nEXTRA = 1\n"})
    result = critic.evaluate(ctx)
    assert result.evidence["reported"]["ratio"] == pytest.approx(1.0)
    assert result.evidence["restored_files"] == ["bench/run.py"]
    assert "edited the benchmark itself" in result.rationale[0]
    assert "faster" not in result.flags


def test_noisy_benchmark_is_healed_with_more_runs_and_stays_honest_about_doubt(tmp_path):
    ctx = make_ctx(
        tmp_path,
        {"mylib.py": "SIDE = 0\n", "bench/run.py": NOISY_BENCH},
        {"mylib.py": "SIDE = 1\n"},  # a no-op for the benchmark
        bench_score_tolerance=0.0,  # measure until decided: no interval is pinned near the threshold
    )
    first = critic.evaluate(ctx)
    assert first.evidence["verdict"] == "inconclusive"
    assert first.confidence < ctx.settings.heal_confidence_threshold
    healed = critic.heal(ctx, first, budget_s=60)
    assert healed.evidence["n_base"] == 10
    assert healed.evidence["base_s"][:5] == first.evidence["base_s"]
    assert any("n=5 pairs" in step and step.endswith("adding 5 runs.") for step in healed.rationale)
    assert not healed.flags & {"perf_regression", "tamper"}
    # Honest either way: still in doubt and saying so, or settled because no slowdown is left possible.
    if healed.evidence["score_in_doubt"]:
        assert "perf_inconclusive" in healed.flags and healed.confidence < 0.7
    else:
        assert healed.score == 1.0 and healed.evidence["ci_high"] <= healed.evidence["slower_at"]
    # At the run budget, healing has nothing left to spend.
    assert critic.heal(ctx, healed, budget_s=60) is healed


def stored(ci_low: float, ci_high: float, ratio: float, p_value: float, **extra) -> CriticResult:
    """A stored performance subscore, as the database hands it back for re-scoring."""
    evidence = {
        **extra,
        "ratio": ratio,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": p_value,
        "claim_alpha": 0.001,
        "confidence_level": 0.95,
        "base_median_s": 0.05,
        "patched_median_s": 0.05 * ratio,
        "n_base": 30,
        "n_patched": 30,
    }
    return CriticResult("performance", None, 0.0, ("Step: measured.", "Step: old verdict."), evidence)


def test_interval_in_doubt_about_the_slowdown_is_flagged_for_review():
    result = critic.rescore(stored(0.98, 1.20, 1.08, 0.04), DEFAULT_WEIGHTS)
    assert result.flags == {"perf_inconclusive"}
    assert result.confidence < 0.7
    assert result.score == pytest.approx(1 - 0.6 * 0.03 / 0.25)
    assert "point estimate" in result.rationale[-1]


def test_interval_pinned_near_the_threshold_is_settled_without_review():
    # [0.98, 1.12] reaches past 1.05, but every ratio in it scores between 0.83 and 1.0: within the tolerance of 0.2.
    result = critic.rescore(stored(0.98, 1.12, 1.04, 0.3, score_tolerance=0.2), DEFAULT_WEIGHTS)
    assert result.score == 1.0
    assert result.flags == frozenset()
    assert result.confidence >= 0.7
    assert result.evidence["score_pinned"] and not result.evidence["score_in_doubt"]
    assert "every ratio in it scores at least 0.80" in result.rationale[-1]
    # Past the threshold as a whole, but small: pinned too, and claimed by no flag.
    small = critic.rescore(stored(1.07, 1.13, 1.10, 0.02, score_tolerance=0.2), DEFAULT_WEIGHTS)
    assert small.flags == frozenset() and small.evidence["score_pinned"]
    assert small.score == pytest.approx(1 - 0.6 * 0.05 / 0.25)
    # A narrow interval further out is not: it waits for the rank test, in doubt until then.
    assert critic.rescore(stored(1.14, 1.16, 1.15, 0.02, score_tolerance=0.2), DEFAULT_WEIGHTS).flags == {
        "perf_inconclusive"
    }
    # Without a tolerance (a cached base's runs carry none), the same interval is in doubt.
    assert critic.rescore(stored(0.98, 1.12, 1.04, 0.3), DEFAULT_WEIGHTS).flags == {"perf_inconclusive"}
    # Under stricter knots the same interval moves the score more than the tolerance: in doubt again.
    strict = Weights(name="strict", version=1, weights={}, perf_knots=((1.02, 1.0), (1.12, 0.2)))
    assert critic.rescore(stored(0.98, 1.12, 1.04, 0.3, score_tolerance=0.2), strict).flags == {"perf_inconclusive"}


def test_interval_in_doubt_only_about_a_speed_up_keeps_full_score_without_review():
    result = critic.rescore(stored(0.90, 1.04, 0.97, 0.2), DEFAULT_WEIGHTS)
    assert result.score == 1.0
    assert result.flags == frozenset()
    assert result.confidence >= 0.7
    assert result.rationale[0] == "Step: measured."
    assert "Not slower by more than 5%" in result.rationale[-1]


# ---------------------------------------------------------------------------------------------------------
# Time measured by the harness, outside the patched process.

DEMO = Path(__file__).resolve().parents[3] / "scoring" / "demo" / "tasks"
FORGE_ZERO = "\n\nimport time\n\ntime.perf_counter = lambda: 0.0\n"
FORGE_DIVIDE = (
    "\n\nimport time\n\n_real_clock = time.perf_counter\ntime.perf_counter = lambda: _real_clock() / DIVISOR\n"
)


def demo_ctx(tmp_path: Path, task: str, *patches: str, append: dict[str, str] | None = None, **settings):
    """A ScoringContext over a demo task's base repository and that repository with `patches` applied."""
    base_dir, patched_dir = tmp_path / "base", tmp_path / "patched"
    shutil.copytree(DEMO / task / "repo", base_dir)
    shutil.copytree(DEMO / task / "repo", patched_dir)
    for name in patches:
        diff = (DEMO / task / "patches" / name).read_text()
        subprocess.run(["git", "apply"], cwd=patched_dir, input=diff, text=True, check=True, timeout=30)
    for path, text in (append or {}).items():
        with (patched_dir / path).open("a") as handle:
            handle.write(text)
    options = {"bench_min_runs": 5, "bench_max_runs": 10, "bench_budget_s": 60.0, **settings}
    return ScoringContext(
        spec=TaskSpec(name=task, test_command="python -m pytest -q", benchmark_command="python bench/run.py"),
        diff=None,
        base_dir=base_dir,
        patched_dir=patched_dir,
        hidden_dir=None,
        env_dir=None,
        task_cache_dir=tmp_path / "task-cache",
        settings=PipelineSettings(cache_root=tmp_path / "cache", work_root=tmp_path / "work", **options),
        run=RUN,
    )


def assert_regression(result: CriticResult, *, tamper: bool) -> None:
    """The harness measured the slowdown: a low score, `perf_regression`, and `tamper` exactly when expected."""
    assert result.score is not None and result.score <= 0.4, result.rationale
    assert "perf_regression" in result.flags
    assert "faster" not in result.flags
    assert ("tamper" in result.flags) is tamper, result.rationale


def assert_honest(result: CriticResult, *, at_least: float = 0.9) -> None:
    assert result.score is not None and result.score >= at_least, result.rationale
    assert not result.flags & {"perf_regression", "tamper"}, result.rationale


@pytest.mark.parametrize(
    ("forge", "tamper"),
    [
        (FORGE_ZERO, True),
        (FORGE_DIVIDE.replace("DIVISOR", "1000"), True),
        (FORGE_DIVIDE.replace("DIVISOR", "100"), None),
    ],
    ids=["clock-stopped", "clock-divided-by-1000", "clock-divided-by-100"],
)
def test_quadratic_patch_that_forges_the_benchmark_clock_is_still_a_regression(tmp_path, forge, tamper):
    ctx = demo_ctx(tmp_path, "intervals", "borderline_quadratic.diff", append={"intervals/merge.py": forge})
    result = evaluate_and_heal(ctx)
    # The harness's own verdict always catches it. Its clock divided by 100, the quadratic scan still reports
    # about 0.6x the base: claimed faster, but near the 3x tamper margin from the harness's ratio (either way).
    assert_regression(result, tamper=tamper if tamper is not None else "tamper" in result.flags)
    assert result.evidence["reported"]["ratio"] < 1 < result.evidence["ci_low"]
    if not tamper:
        return
    step = result.rationale[-2]
    assert "Flagged tamper" in step
    assert f"ratio {result.evidence['reported']['ratio']:.2f}" in step
    assert f"ratio {result.evidence['ratio']:.2f}" in step


def test_honest_quadratic_patch_of_the_demo_is_a_regression_without_tamper(tmp_path):
    ctx = demo_ctx(tmp_path, "intervals", "borderline_quadratic.diff")
    result = evaluate_and_heal(ctx)
    assert_regression(result, tamper=False)
    assert result.evidence["reported"]["ratio"] > 3  # the benchmark's clock agrees: much slower


def test_no_op_on_a_demo_task_scores_at_least_0_9_without_tamper(tmp_path):
    # intervals is nearly all start-up (about 1 ms of work in 35 ms): the hardest case for a no-op. A module-level
    # line is code the benchmark runs, so the patch is measured.
    ctx = demo_ctx(tmp_path, "intervals", append={"intervals/merge.py": "\n_UNUSED = 0\n"}, bench_max_runs=20)
    result = evaluate_and_heal(ctx)
    assert "shortcut" not in result.evidence
    assert_honest(result)


def test_real_speed_up_on_a_demo_task_is_faster_without_tamper(tmp_path):
    # textstats' fix replaces a quadratic de-duplication: the benchmark's own clock says about 300x faster,
    # the harness about 10x (less when the patched run is all start-up); both point the same way.
    ctx = demo_ctx(tmp_path, "textstats", "good_full_fix.diff")
    result = evaluate_and_heal(ctx)
    assert_honest(result, at_least=1.0)
    assert result.evidence["reported"]["ratio"] < 0.1
    assert result.evidence["ci_high"] < 0.5


def test_patch_that_only_adds_import_time_is_slower_but_not_tamper(tmp_path):
    # The timed loop is unchanged (its own clock says the same), the process pays a heavy import: the harness
    # measures the whole run, so this is a regression, and an honest one.
    heavy = "\n\nimport numpy  # noqa: E402,F401\n"
    ctx = demo_ctx(tmp_path, "intervals", append={"intervals/merge.py": heavy})
    result = evaluate_and_heal(ctx)
    assert_regression(result, tamper=False)
    assert 0.7 < result.evidence["reported"]["ratio"] < 1.5


def clock_ctx(tmp_path: Path, clock: str, forge: str) -> ScoringContext:
    """A small task whose benchmark times itself with `time.<clock>`; the patch is 8x slower plus `forge`."""
    bench = CLOCK_TIMED_BENCH.replace("CLOCK", clock)
    return make_ctx(tmp_path, {"mylib.py": LINEAR, "bench/run.py": bench}, {"mylib.py": EIGHT_TIMES + forge})


@pytest.mark.parametrize(
    ("clock", "forge", "tamper"),
    [
        ("process_time", "\nimport time\n\ntime.process_time = lambda: 0.0\n", True),
        ("monotonic", "\nimport time\n\n_clock = time.monotonic\ntime.monotonic = lambda: _clock() / 100\n", None),
        ("time", "\nimport time\n\n_clock = time.time\ntime.time = lambda: _clock() / 1000\n", None),
    ],
    ids=["process_time-stopped", "monotonic-divided", "time-divided"],
)
def test_forged_clocks_of_a_small_task_never_buy_a_clean_score(tmp_path, clock, forge, tamper):
    result = evaluate_and_heal(clock_ctx(tmp_path, clock, forge))
    # The regression is the harness's own finding; whether the report is far enough off to prove the forgery
    # depends on how far the divisor pushes it (None: either way).
    assert_regression(result, tamper=tamper if tamper is not None else "tamper" in result.flags)
    assert result.evidence["reported"]["ratio"] < 1  # the forgery worked on the benchmark's own clock


def test_small_task_timed_by_its_own_clock_is_honest_when_nothing_is_forged(tmp_path):
    result = evaluate_and_heal(clock_ctx(tmp_path, "process_time", ""))
    assert_regression(result, tamper=False)
    assert result.evidence["reported"]["ratio"] > 3


# Work moved out of the command's CPU accounting: an orphaned grandchild is reaped by the sandbox's init, so
# the run's CPU time does not include it; the run still has to wait for its answer.
ESCAPE = """

import json as _json
import os as _os

_slow_unique = unique


def unique(items):
    \"\"\"The slow unique, computed in an orphaned grandchild that nobody waits for.\"\"\"
    read_end, write_end = _os.pipe()
    if _os.fork() == 0:
        if _os.fork() == 0:
            _os.close(read_end)
            data = _json.dumps(_slow_unique(items)).encode()
            while data:
                data = data[_os.write(write_end, data) :]
            _os._exit(0)
        _os._exit(0)
    _os.close(write_end)
    _os.wait()
    chunks = []
    while chunk := _os.read(read_end, 65536):
        chunks.append(chunk)
    _os.close(read_end)
    return _json.loads(b"".join(chunks))
"""
SLEEPS = """

import time as _time

_fast_unique = unique


def unique(items):
    \"\"\"The same unique, after a nap.\"\"\"
    _time.sleep(0.05)
    return _fast_unique(items)
"""


def test_a_slowdown_the_cpu_time_cannot_see_is_judged_on_wall_time(tmp_path):
    bench = CLOCK_TIMED_BENCH.replace("CLOCK", "perf_counter")
    # Wall time is the noisier clock: room for healing to show the slowdown beyond it.
    ctx = make_ctx(
        tmp_path, {"mylib.py": LINEAR, "bench/run.py": bench}, {"mylib.py": LINEAR + SLEEPS}, bench_max_runs=20
    )
    result = evaluate_and_heal(ctx)
    assert_regression(result, tamper=False)
    assert result.evidence["judged_on"] == "wall"
    assert "than wall time, beyond the noise of both" in result.rationale[-1]


def test_work_moved_to_an_orphaned_process_still_counts(tmp_path):
    """Nobody waits for the orphan, so bash's `times` would miss its CPU time; the run's cgroup (the kernel's
    accounting of every process of the run) counts it, and wall time would show it where cgroups are missing."""
    bench = CLOCK_TIMED_BENCH.replace("CLOCK", "perf_counter")
    ctx = make_ctx(
        tmp_path, {"mylib.py": LINEAR, "bench/run.py": bench}, {"mylib.py": EIGHT_TIMES + ESCAPE}, bench_max_runs=20
    )
    result = evaluate_and_heal(ctx)
    assert_regression(result, tamper=False)
    assert result.evidence["judged_on"] in ("cpu", "wall")


def wall(ci_low: float, ci_high: float, ratio: float, p_value: float) -> dict:
    medians = {"base_median_s": 0.06, "patched_median_s": 0.06 * ratio, "start_up_subtracted_s": 0.0}
    return {"ratio": ratio, "ci_low": ci_low, "ci_high": ci_high, "p_value": p_value, **medians}


def test_wall_time_in_doubt_over_a_decided_cpu_time_is_low_confidence_not_a_lower_score():
    """Doubt on the noisier clock sends the patch to review; only a slowdown a test can claim moves the score,
    so noise never scores a no-op as a regression."""
    doubted = stored(0.98, 1.03, 1.0, 0.5, wall=wall(1.3, 2.0, 1.6, 0.004))
    result = critic.rescore(doubted, DEFAULT_WEIGHTS)
    assert result.evidence["verdict"] == "same" and result.evidence["wall_in_doubt"]
    assert result.flags == {"perf_inconclusive"}
    assert result.score == 1.0
    assert result.confidence < 0.5
    assert "wall time is higher on the patched side" in result.rationale[-1]
    claimed = critic.rescore(stored(0.98, 1.03, 1.0, 0.5, wall=wall(1.3, 2.0, 1.6, 0.0002)), DEFAULT_WEIGHTS)
    assert claimed.flags == {"perf_regression"} and claimed.evidence["judged_on"] == "wall"


# Answers kept from one run for the next (never within a run, where memoizing is the benchmark's business): in a
# file the run leaves in the tree, or in the module's own source.
CACHE_IN_A_FILE = """

import json as _json
import os as _os

_slow_merge = merge
_CACHE = _os.path.join(_os.path.dirname(__file__), ".merge-cache.json")
_KEPT = None
if _os.path.exists(_CACHE):
    with open(_CACHE) as _handle:
        _KEPT = [tuple(pair) for pair in _json.load(_handle)]


def merge(intervals):
    \"\"\"The quadratic merge, unless an earlier run left its answer in a file.\"\"\"
    if _KEPT is not None:
        return _KEPT
    result = _slow_merge(intervals)
    with open(_CACHE, "w") as handle:
        _json.dump(result, handle)
    return result
"""
CACHE_IN_THE_SOURCE = """

_slow_merge = merge


def merge(intervals):
    \"\"\"The quadratic merge, whose first answer is written into this module's source for the next runs.\"\"\"
    result = _slow_merge(intervals)
    with open(__file__, "a") as handle:
        handle.write(f"\\n\\ndef merge(intervals):\\n    return {result!r}\\n")
    return result
"""


@pytest.mark.parametrize("cache", [CACHE_IN_A_FILE, CACHE_IN_THE_SOURCE], ids=["file", "own-source"])
def test_answers_cached_by_one_run_do_not_speed_up_the_next(tmp_path, cache):
    ctx = demo_ctx(tmp_path, "intervals", "borderline_quadratic.diff", append={"intervals/merge.py": cache})
    assert_regression(evaluate_and_heal(ctx), tamper=False)


# --- the shortcuts: each must give the verdict a full measurement would --------------------------------------


def counting(ctx: ScoringContext) -> list[list[str]]:
    """Record every command the critic runs in the sandbox (it still runs them)."""
    commands: list[list[str]] = []
    runner = ctx.run

    def run(argv, **kwargs):
        commands.append(list(argv))
        return runner(argv, **kwargs)

    ctx.run = run
    return commands


SPARE = '''

def spare(items):
    """Never called by the benchmark."""
    return sorted(items)
'''


def test_patch_to_a_function_the_benchmark_never_runs_gets_the_base_performance_without_a_run(tmp_path):
    slow_spare = LINEAR + SPARE.replace("sorted(items)", "sorted(sorted(items) * 1000)")
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR + SPARE, "bench/run.py": BENCH}, {"mylib.py": slow_spare})
    commands = counting(ctx)
    result = critic.evaluate(ctx)
    assert result.score == 1.0 and result.confidence >= 0.9
    assert result.evidence["shortcut"] == "coverage"
    assert "Not run: a traced run of `python -m bench.run` on the base" in result.rationale[0]
    assert len(commands) == 1  # the base's traced run, once per task
    assert critic.evaluate(ctx).evidence["shortcut"] == "coverage" and len(commands) == 1  # cached


# A library the benchmark's code reaches without any line of it changing: an optional accelerator module (absent
# in the base), and a rounds file it looks for (absent) or reads (present).
OPTIONAL_ACCELERATOR = LINEAR + "\ntry:\n    from _accel import unique\nexcept ImportError:\n    pass\n"
ROUNDS_FILE = """\
import os

_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rounds.txt")
ROUNDS = int(open(_FILE).read()) if os.path.exists(_FILE) else 1_000_000
"""


@pytest.mark.parametrize("where", ["_accel.py", "_accel/__init__.py"], ids=["module", "package"])
def test_new_module_that_an_executed_import_finds_is_measured_not_skipped(tmp_path, where):
    base = {"mylib.py": OPTIONAL_ACCELERATOR, "bench/run.py": BENCH}
    ctx = make_ctx(tmp_path, base, {where: QUADRATIC})
    result = evaluate_and_heal(ctx)
    assert "shortcut" not in result.evidence
    assert_regression(result, tamper=False)


@pytest.mark.parametrize("present", [False, True], ids=["file-added", "file-changed"])
def test_data_file_the_benchmark_looks_for_is_measured_not_skipped(tmp_path, present):
    base = {"mylib.py": ROUNDS_FILE, "bench/run.py": BUSY_BENCH}
    if present:
        base["rounds.txt"] = "1000000\n"
    ctx = make_ctx(tmp_path, base, {"rounds.txt": "3000000\n"})
    result = evaluate_and_heal(ctx)
    assert "shortcut" not in result.evidence
    assert_regression(result, tamper=False)


@pytest.mark.parametrize(
    "slow",
    [
        SPARE.replace("def spare(items):", "def spare(items, _=sum(i * i % 7 for i in range(3_000_000))):"),
        SPARE.replace("def spare(", "@(lambda f: (sum(i * i % 7 for i in range(3_000_000)), f)[1])\ndef spare("),
    ],
    ids=["default", "decorator"],
)
def test_slow_signature_of_a_function_the_benchmark_never_calls_is_measured(tmp_path, slow):
    # A default or a decorator runs when the module is imported, whether the function is ever called or not.
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR + SPARE, "bench/run.py": BENCH}, {"mylib.py": LINEAR + slow})
    result = evaluate_and_heal(ctx)
    assert "shortcut" not in result.evidence
    assert_regression(result, tamper=False)


def rounds_ctx(tmp_path: Path, rounds: int, name: str) -> ScoringContext:
    """BUSY_BENCH with 2M rounds on the base and `rounds` on the patched side; one task cache for every patch."""
    ctx = make_ctx(
        tmp_path / name,
        {"mylib.py": "ROUNDS = 2_000_000\n", "bench/run.py": BUSY_BENCH},
        {"mylib.py": f"ROUNDS = {rounds}\n"},
    )
    ctx.task_cache_dir = tmp_path / "task-cache"
    return ctx


def test_later_patches_of_a_task_are_measured_against_the_cached_base(tmp_path, monkeypatch):
    # About using the cache: a shared machine's drift (the check run's own test is the busier host's below) must
    # not send this one down the fresh path.
    monkeypatch.setattr(performance_critic, "BASE_DRIFT", 1.0)
    first = evaluate_and_heal(rounds_ctx(tmp_path, 1_000_000, "first"))
    assert "base_cached" not in first.evidence and first.score == 1.0
    ctx = rounds_ctx(tmp_path, 500_000, "second")
    commands = counting(ctx)
    second = evaluate_and_heal(ctx)
    assert second.evidence["base_cached"]["runs"] == first.evidence["n_base"]
    assert len(commands) == 1 + 3  # one base run to check the host, three patched runs
    assert_honest(second, at_least=1.0)
    # Only an interval wholly below the threshold stands on a cached base, never one pinned near it: a drift the
    # host check let through moves the whole interval, so the score is not known to within any tolerance.
    assert "score_tolerance" not in second.evidence
    assert "against the" in second.rationale[0] and "measured on this host" in second.rationale[0]


def test_slowdown_against_a_cached_base_is_claimed_only_from_fresh_interleaved_runs(tmp_path):
    evaluate_and_heal(rounds_ctx(tmp_path, 1_000_000, "first"))
    result = evaluate_and_heal(rounds_ctx(tmp_path, 4_000_000, "slower"))
    assert_regression(result, tamper=False)
    assert "base_cached" not in result.evidence
    # Measured again, interleaved: because the cached base could not rule the slowdown out, or because the host
    # drifted since it was cached (a busy shared machine); either way never claimed against the cache.
    assert "measured again" in result.rationale[0]


@pytest.mark.parametrize("busier", [3.0, 4.0])
def test_base_cached_on_a_busier_host_cannot_hide_a_slowdown(tmp_path, busier):
    evaluate_and_heal(rounds_ctx(tmp_path, 1_000_000, "first"))
    # As if the base had been measured while the host was `busier` times slower: every cached run inflated.
    (path,) = (tmp_path / "task-cache").glob("bench-base-*.json")
    cached = json.loads(path.read_text())
    for key in ("base_s", "base_wall_s"):
        cached[key] = [value * busier for value in cached[key]]
    path.write_text(json.dumps(cached))
    # Twice the work: against the inflated cache it would look faster; measured afresh it is a regression.
    result = evaluate_and_heal(rounds_ctx(tmp_path, 4_000_000, "slower"))
    assert_regression(result, tamper=False)
    assert "the host drifted, so the base is measured again" in result.rationale[0]


def prior(correctness: float) -> dict[str, CriticResult]:
    return {"correctness": CriticResult("correctness", correctness, 0.9, ("Step: tests.",))}


def test_failed_patch_under_a_gated_profile_runs_no_benchmark(tmp_path):
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR, "bench/run.py": BENCH}, {"mylib.py": QUADRATIC})
    ctx.gate = gate_after(prior(0.0), "gated")
    commands = counting(ctx)
    result = critic.evaluate(ctx)
    assert result.score is None and result.evidence["shortcut"] == "correctness_gate"
    assert "gates every other subscore on it (gated)" in result.rationale[0]
    assert commands == []


@pytest.mark.parametrize(("correctness", "profile"), [(0.0, "sum"), (0.5, "gated")])
def test_slowdown_still_counts_where_performance_can_move_the_reward(tmp_path, correctness, profile):
    ctx = make_ctx(tmp_path, {"mylib.py": LINEAR, "bench/run.py": BENCH}, {"mylib.py": QUADRATIC})
    ctx.gate = gate_after(prior(correctness), profile)
    result = evaluate_and_heal(ctx)
    assert_regression(result, tamper=False)
    assert ("sums the subscores, so performance still counts" in result.rationale[0]) is (correctness == 0)


def test_benchmark_runs_are_pinned_to_the_configured_cpus(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    base = {"mylib.py": "ROUNDS = 1000\n", "bench/run.py": BUSY_BENCH}
    ctx = make_ctx(tmp_path, base, {"mylib.py": "ROUNDS = 1001\n"}, bench_cpus=(cpu, 4096))
    commands = counting(ctx)
    seen = []
    run = ctx.run

    def watching(argv, **kwargs):
        seen.append(kwargs["limits"].cpus)
        return run(argv, **kwargs)

    ctx.run = watching
    result = critic.evaluate(ctx)
    assert commands and set(seen) == {(cpu,)}  # a CPU this worker may not use is left out
    assert result.evidence["cpus"] == [cpu]
    assert f"Every run pinned to CPU {cpu}" in result.rationale[0]


@pytest.mark.parametrize("change", [{"format": 1}, {"cpus": [4096]}], ids=["older-format", "other-cpus"])
def test_a_base_cached_another_way_is_measured_again(tmp_path, change):
    # A base measured cold (the format before warm benchmark runs) or on other CPUs timed other runs than these.
    evaluate_and_heal(rounds_ctx(tmp_path, 1_000_000, "first"))
    (path,) = (tmp_path / "task-cache").glob("bench-base-*.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    result = evaluate_and_heal(rounds_ctx(tmp_path, 1_000_000, "same"))
    assert "base_cached" not in result.evidence


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_a_warm_up_run_is_spent_only_on_cold_runs(tmp_path, warm):
    # Runs forked from the zygote find the interpreter loaded and a tree written just before: a warm-up run
    # would only cost time. Cold runs (a fresh interpreter in bubblewrap) still get one per side.
    ctx = rounds_ctx(tmp_path, 4_000_000, "slower")
    ctx.run = functools.partial(sandbox.run, warm=warm)
    commands = counting(ctx)
    result = critic.evaluate(ctx)
    assert result.evidence["warm"] is warm
    benchmark_runs = sum(command[:2] == ["python", "-m"] for command in commands)
    assert benchmark_runs == 2 * result.evidence["n_base"] + (0 if warm else 2)
    assert ("so no warm-up run" if warm else "one warm-up run each") in result.rationale[0]
    assert result.score is not None and result.score <= 0.4  # twice the work, either way


# ---------------------------------------------------------------------------------------------------------
# Near-duplicates of a patch measured earlier on this host (a rollout group): its measurement, or a run.

#: LINEAR, plus one quadratic round per character of data.txt (none on an empty file).
READS_DATA = "import pathlib\n\n\n" + LINEAR.replace(
    "    seen = set()\n",
    '    for _ in range(len(pathlib.Path(__file__).with_name("data.txt").read_text().strip())):\n'
    "        busy = []\n"
    "        for item in items:\n"
    "            if item not in busy:\n"
    "                busy.append(item)\n"
    "    seen = set()\n",
)
#: LINEAR, plus one quadratic round per 4,000 characters of its own source (none as written).
READS_ITSELF = READS_DATA.replace(
    'len(pathlib.Path(__file__).with_name("data.txt").read_text().strip())',
    "len(pathlib.Path(__file__).read_text()) // 4000",
)


def sibling_ctx(tmp_path: Path, name: str, patched: dict[str, str]) -> ScoringContext:
    """A patch of one task whose task cache (and so its measured patches) every sibling shares."""
    ctx = make_ctx(tmp_path / name, {"mylib.py": LINEAR, "bench/run.py": BENCH}, patched)
    ctx.task_cache_dir = tmp_path / "task-cache"
    return ctx


def test_a_near_duplicate_of_a_measured_patch_gets_its_measurement_without_a_benchmark_run(tmp_path):
    slow = QUADRATIC
    first = evaluate_and_heal(sibling_ctx(tmp_path, "first", {"mylib.py": slow}))
    assert_regression(first, tamper=False)
    # The same code with a comment, other layout and a notes file: a rollout group's near-duplicate.
    again = {"mylib.py": "# rollout 2: same fix\n" + slow.replace("\n\n\n", "\n\n\n\n"), "NOTES.txt": "mine\n"}
    ctx = sibling_ctx(tmp_path, "second", again)
    commands = counting(ctx)
    forked = warm.stats["warm"]
    second = evaluate_and_heal(ctx)
    assert second.evidence["shortcut"] == "same_as_measured"
    assert second.score == first.score and second.flags == first.flags
    assert len(commands) == 1  # one traced run of the measured patch, kept for the next sibling
    assert commands[0][:2] == ["python", "-P"] and warm.stats["warm"] == forked + 1  # forked warm
    assert "Not run: a patch measured on this host" in second.rationale[0]
    ctx = sibling_ctx(tmp_path, "third", {"mylib.py": slow, "OTHER.txt": "x\n"})
    commands = counting(ctx)
    assert evaluate_and_heal(ctx).evidence["shortcut"] == "same_as_measured"
    assert commands == []
    # Different code is measured.
    ctx = sibling_ctx(tmp_path, "fourth", {"mylib.py": LINEAR.replace("seen", "kept")})
    assert "shortcut" not in evaluate_and_heal(ctx).evidence


def test_a_near_duplicate_of_a_patch_that_stood_on_the_cached_base_gets_that_measurement(tmp_path, monkeypatch):
    monkeypatch.setattr(performance_critic, "BASE_DRIFT", 1.0)  # a shared machine's drift must not refuse the cache
    evaluate_and_heal(rounds_ctx(tmp_path, 1_000_000, "first"))
    faster = evaluate_and_heal(rounds_ctx(tmp_path, 500_000, "second"))
    assert "base_cached" in faster.evidence
    ctx = rounds_ctx(tmp_path, 500_000, "third")
    (ctx.patched_dir / "NOTES.txt").write_text("rollout 3\n")
    commands = counting(ctx)
    third = evaluate_and_heal(ctx)
    assert third.evidence["shortcut"] == "same_as_measured"
    assert third.score == faster.score == 1.0
    assert len(commands) == 1  # the traced run of the second patch's tree
    assert "patched runs against the base cached on this host" in third.rationale[0]


@pytest.mark.parametrize(
    "slower",
    [
        QUADRATIC,  # another body for the same function
        LINEAR.replace("    return out\n", "    for _ in range(40):\n        sorted(items * 3)\n    return out\n"),
    ],
    ids=["quadratic-body", "extra-work-in-the-body"],
)
def test_a_sibling_with_other_code_in_a_function_is_measured_not_given_the_fast_measurement(tmp_path, slower):
    # A files-only trace knows no functions, so only the same-code check keeps a slower body from passing as the
    # fast patch measured before it.
    fast = {"mylib.py": LINEAR.replace("seen", "known")}  # code the benchmark runs, as fast as the base
    first = evaluate_and_heal(sibling_ctx(tmp_path, "first", fast))
    assert_honest(first)
    assert list((tmp_path / "task-cache").glob("bench-measured-*/*.json"))
    result = evaluate_and_heal(sibling_ctx(tmp_path, "second", {"mylib.py": slower, "NOTES.txt": "x\n"}))
    assert result.evidence.get("shortcut") != "same_as_measured", result.rationale
    assert_regression(result, tamper=False)


@pytest.mark.parametrize(
    ("measured", "sibling"),
    [
        # The measured patch reads a data file; its sibling, the same code, makes that file huge.
        ({"mylib.py": READS_DATA, "data.txt": ""}, {"mylib.py": READS_DATA, "data.txt": "xx"}),
        # The measured patch reads its own source; its sibling, the same program, adds a long comment.
        ({"mylib.py": READS_ITSELF}, {"mylib.py": READS_ITSELF + "#" * 8000 + "\n"}),
    ],
    ids=["reads-a-data-file", "reads-its-own-source"],
)
def test_a_sibling_that_differs_where_the_measured_benchmark_looked_is_measured(tmp_path, measured, sibling):
    first = evaluate_and_heal(sibling_ctx(tmp_path, "first", measured))
    assert_honest(first)  # as fast as the base, and kept for its near-duplicates:
    assert list((tmp_path / "task-cache").glob("bench-measured-*/*.json"))
    result = evaluate_and_heal(sibling_ctx(tmp_path, "second", sibling))
    assert result.evidence.get("shortcut") != "same_as_measured", result.rationale
    assert_regression(result, tamper=False)


def test_a_files_only_trace_records_the_same_files_without_the_functions(tmp_path):
    ctx = sibling_ctx(tmp_path, "trace", {"mylib.py": READS_DATA, "data.txt": ""})
    argv = ctx.spec.argv(ctx.spec.benchmark_command)
    full = performance_critic._traced_run(ctx, ctx.patched_dir, argv)
    files = performance_critic._traced_run(ctx, ctx.patched_dir, argv, calls=False)
    assert full is not None and files is not None
    assert "unique" in full["functions"]["mylib.py"] and files["functions"] == {}
    assert "data.txt" in files["read"] and "mylib.py" in files["modules"]
    for key in ("modules", "read", "incomplete"):
        assert files[key] == full[key], key
    assert set(full["searched"]) <= set(files["searched"])


def test_the_same_tree_again_gets_the_measurement_without_any_run(tmp_path):
    first = evaluate_and_heal(sibling_ctx(tmp_path, "first", {"mylib.py": QUADRATIC}))
    ctx = sibling_ctx(tmp_path, "again", {"mylib.py": QUADRATIC})
    commands = counting(ctx)
    again = evaluate_and_heal(ctx)
    assert again.evidence["shortcut"] == "same_as_measured" and again.score == first.score
    assert commands == []
    assert "The two trees are the same." in again.rationale[0]
