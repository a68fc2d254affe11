"""Task affinity measured with two exec workers: rollout groups of the demo tasks, with affinity and without.

`run` registers the demo tasks on a throwaway SQLite database with a real Redis (common.django_env), then for each
mode starts two real Celery workers (`celery -A reviewapp worker`, one pool process each, every queue) and submits
`per_task` patches of every task, interleaved as a trainer's groups arrive (task A, B, C, A, B, C...), through the
real intake (services.patch_submit, enqueued on commit). It waits until every patch is finished and reads what the
workers stored: each patch's time from submission to its Evaluation, the exec stage's own time and which worker's
queue the exec stage went to.

The modes differ in one setting: `affinity` (REVIEWAPP_AFFINITY_BACKLOG=16, the default: a task's exec stages go
to the queue of the worker that owns it, scoring.affinity) and `shared` (0: every exec stage goes to the shared
queue, whichever worker is free takes it). A warm-up round first scores one patch of every task, so the caches on
disk (base trees, base facts) are warm for both modes, and each mode starts fresh workers: what differs is what a
worker keeps in memory (its warm test zygote per task environment, its analyser). The modes alternate over
`rounds` rounds, each round on new diffs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Goal, Section, django_ready, log, num, spread, table
from benchmarks.pages_bench import demo_tasks_by_name
from benchmarks.pipeline_bench import DEMO, varied

MODES = {"affinity": "16", "shared": "0"}
TASKS = ("intervals", "slugify", "textstats")
GOOD_PATCH = "patches/good_full_fix.diff"


def _workers(mode: str, logs: Path) -> list[subprocess.Popen]:
    """Two Celery workers on every queue, one pool process each, with the mode's affinity setting."""
    env = {**os.environ, "REVIEWAPP_AFFINITY_BACKLOG": MODES[mode], "PYTHONPATH": str(ROOT)}
    workers = []
    for n in (1, 2):
        argv = [sys.executable, "-m", "celery", "-A", "reviewapp", "worker", "-n", f"w{n}-{mode}@bench",
                "-Q", "exec,bench,score,critic", "-c", "1", "--pool", "prefork", "-l", "WARNING"]  # fmt: skip
        out = (logs / f"{mode}-w{n}.log").open("ab")
        workers.append(
            subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        )
    return workers


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)  # a clean stop withdraws the worker's advertisement
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _live(mode: str, timeout_s: float = 90) -> list[str]:
    """The two workers of `mode` once both advertise themselves as live exec workers."""
    from scoring import affinity

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        affinity._live = (0.0, [])  # ask Redis again, not this process's cache
        hosts = [host for host in affinity.live_exec_workers() if host.endswith(f"-{mode}@bench")]
        if len(hosts) == 2:
            return hosts
        time.sleep(0.5)
    raise RuntimeError(f"the two {mode} workers did not come up within {timeout_s:g} s (see their logs)")


def _submit(tasks: dict[str, Any], diffs: dict[str, list[str]]) -> list[int]:
    """Submit the groups interleaved across tasks, as rollouts of several tasks arrive; return the patch ids."""
    from scoring import services

    ids = []
    for k in range(max(len(group) for group in diffs.values())):
        for name in TASKS:
            if k < len(diffs[name]):
                submission = services.patch_submit(
                    client=None, task=tasks[name], diff=diffs[name][k], check_queue=False
                )
                ids.append(submission.patch.pk)
    return ids


def _wait(ids: list[int], timeout_s: float) -> None:
    from scoring.models import Patch, PatchStatus

    done = {PatchStatus.SCORED, PatchStatus.NEEDS_REVIEW, PatchStatus.REVIEWED, PatchStatus.FAILED}
    deadline = time.monotonic() + timeout_s
    while Patch.objects.filter(pk__in=ids).exclude(status__in=done).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"patches still unfinished after {timeout_s:g} s")
        time.sleep(0.25)


def _outcomes(ids: list[int], hosts: list[str], mode: str) -> list[dict[str, Any]]:
    from scoring import affinity
    from scoring.models import Patch, StageResult

    out = []
    for patch in Patch.objects.filter(pk__in=ids).select_related("task").order_by("pk"):
        exec_stage = StageResult.objects.filter(patch=patch, stage="exec").first()
        timings = (exec_stage.meta.get("timings_s") or {}) if exec_stage else {}
        out.append(
            {
                "mode": mode,
                "task": patch.task.name,
                "status": patch.status,
                "seconds": (patch.finished_at - patch.created_at).total_seconds() if patch.finished_at else None,
                "exec_s": sum(v for v in timings.values() if isinstance(v, int | float)),
                # Where affinity sends the task's exec stages (its owner's own queue); the shared mode has no owner.
                "owner": affinity.owner(patch.task_id, hosts) if mode == "affinity" else None,
            }
        )
    return out


def run(*, per_task: int = 4, rounds: int = 2, warm_up: bool = True) -> dict[str, Any]:
    """Score `rounds` x `per_task` patches of each demo task per mode with two workers; see the module docstring.

    `warm_up=False` skips the warm-up round (the smoke test: the figures then include cold caches).
    """
    django_ready()
    logs = Path(os.environ["REVIEWAPP_DATA_DIR"]) / "worker-logs"
    logs.mkdir(parents=True, exist_ok=True)
    tasks = demo_tasks_by_name(TASKS)
    good = {name: (DEMO / "tasks" / name / GOOD_PATCH).read_text() for name in TASKS}
    counter = iter(range(1, 1_000_000))

    def fresh(count: int) -> dict[str, list[str]]:
        return {name: [varied(good[name], next(counter)) for _ in range(count)] for name in TASKS}

    if warm_up:
        workers = _workers("shared", logs)
        try:
            _live("shared")
            log("affinity: warm-up round (one patch per task, caches on disk)")
            _wait(_submit(tasks, fresh(1)), timeout_s=600)
        finally:
            _stop(workers)
    patches: list[dict[str, Any]] = []
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(rounds):
        order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
        for mode in order:
            workers = _workers(mode, logs)
            try:
                hosts = _live(mode)
                log(f"affinity: round {r + 1}, {mode}: {per_task * len(TASKS)} patches on {', '.join(hosts)}")
                started = time.monotonic()
                ids = _submit(tasks, fresh(per_task))
                _wait(ids, timeout_s=1200)
                walls[mode].append(time.monotonic() - started)
                patches += _outcomes(ids, hosts, mode)
            finally:
                _stop(workers)
    return {"per_task": per_task, "rounds": rounds, "tasks": list(TASKS), "walls": walls, "patches": patches}


def render(result: dict[str, Any]) -> Section:
    rows = []
    throughput = {}
    for mode in MODES:
        mine = [p for p in result["patches"] if p["mode"] == mode]
        count = len(mine)
        wall = sum(result["walls"][mode])
        throughput[mode] = count / wall if wall else 0.0
        seconds = spread([p["seconds"] for p in mine if p["seconds"] is not None])
        exec_s = spread([p["exec_s"] for p in mine if p["exec_s"]])
        failed = sum(p["status"] == "failed" for p in mine)
        rows.append(
            [
                mode,
                count,
                f"{wall:.1f}",
                f"{60 * throughput[mode]:.1f}",
                f"{num(seconds['median'])} (IQR {num(seconds['q1'])}-{num(seconds['q3'])})",
                f"{num(exec_s['median'])} (IQR {num(exec_s['q1'])}-{num(exec_s['q3'])})",
                failed,
            ]
        )
    owners = sorted({(p["task"], p["owner"]) for p in result["patches"] if p["owner"]})
    ratio = throughput["affinity"] / throughput["shared"] if throughput["shared"] else 0.0
    body = (
        f"Two Celery workers (one pool process each, every queue) on this machine, {result['per_task']} patches of "
        f"each of {len(result['tasks'])} demo tasks per round, submitted interleaved, {result['rounds']} rounds per "
        "mode alternating which goes first; `affinity` routes a task's exec stages to the worker that owns it, "
        "`shared` lets whichever worker is free take them. Caches on disk were warmed first for both; each mode "
        "starts fresh workers, so what differs is what a worker keeps in memory (the warm test zygote of a task's "
        "environment, the analyser). Seconds per patch are from submission to its Evaluation.\n\n"
        + table(
            ["mode", "patches", "wall s", "patches/min", "s per patch, median", "exec stage s, median", "failed"],
            rows,
        )
        + f"\n\nThroughput with affinity: **{ratio:.2f}x** the shared queue's, side by side in this run. "
        + "Owners (the worker whose queue a task's exec stages went to): "
        + "; ".join(f"{task} -> {owner.split('@')[0]}" for task, owner in owners)
        + "."
    )
    goal = Goal(
        "rollout groups stay warm: affinity at least as fast as the shared queue, two workers",
        ">= 1.0x",
        f"{ratio:.2f}x",
        ratio >= 1.0,
    )
    return Section("Task affinity with two workers", body, [goal])
