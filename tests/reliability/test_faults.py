"""Faults injected into a real service (web server, Celery workers, PostgreSQL, Redis, all private to the run).

The promise under test (docs/contract.md, "Nothing lost"): a submission answered 2xx is scored eventually, whatever dies
in between, and never scored twice into two different results.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from scoring.core.critics.registry import REGISTRY
from scoring.core.pipeline import stages
from tests.reliability.conftest import Stack, tiny_diff, wait_for

pytestmark = pytest.mark.reliability

STAGES = set(stages(REGISTRY))
FINISHED_SCORED = {"scored", "needs_review"}


def submit_all(stack: Stack, count: int, prefix: str, start: int = 0) -> list[int]:
    """Submit `count` distinct valid fixes; their ids (each answered 202)."""
    ids = []
    for n in range(start, start + count):
        status, body = stack.submit(stack.token, tiny_diff(n), f"{prefix}-{n}")
        assert status == 202, body
        ids.append(body["id"])
    return ids


def assert_whole(stack: Stack, ids: list[int]) -> dict[int, int]:
    """Every patch scored exactly once, fully: one Evaluation, every stage stored once, correctness 1.0.

    Also, database-wide, no half-written rows: no Evaluation for a patch that is not finished, no finished patch
    without its Evaluation. Returns the attempts of each patch.
    """
    rows = stack.sql("SELECT id, status, attempts, reason FROM scoring_patch WHERE id = ANY(%s)", ids)
    assert sorted(pk for pk, status, *_ in rows if status in FINISHED_SCORED) == sorted(ids), rows
    assert stack.evaluations_per_patch() == dict.fromkeys(ids, 1)
    stage_rows = stack.sql("SELECT patch_id, stage, count(*) FROM scoring_stageresult GROUP BY patch_id, stage")
    assert {(pk, stage) for pk, stage, n in stage_rows if n == 1} == {(pk, s) for pk in ids for s in STAGES}
    assert all(n == 1 for *_, n in stage_rows)
    assert [stack.correctness(pk) for pk in ids] == [1.0] * len(ids)
    orphans = stack.sql(
        "SELECT e.patch_id, p.status FROM scoring_evaluation e JOIN scoring_patch p ON p.id = e.patch_id "
        "WHERE p.status NOT IN ('scored', 'needs_review', 'reviewed')"
    )
    assert orphans == []
    return {pk: attempts for pk, _, attempts, _ in rows}


def reconcile_until_done(stack: Stack, ids: list[int], *, timeout_s: float) -> dict[int, str]:
    """Run the reconciler every few seconds (celery beat's job, at a faster pace) until every patch finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the database may still be coming back
            states = {pk: s for pk, s in stack.statuses().items() if pk in ids}
            if len(states) == len(ids) and not {"queued", "running"} & set(states.values()):
                return states
        stack.reconcile()
        time.sleep(4)
    pytest.fail(f"patches still unfinished after {timeout_s} s: {stack.statuses()}")


def test_kill_9_of_pool_processes_mid_scoring_loses_nothing_and_scores_each_patch_once(stack, report):
    stack.worker(concurrency=2, beat=True, REVIEWAPP_MAX_ATTEMPTS="10")
    worker = stack.workers[0]
    ids = submit_all(stack, 10, "kill")
    rng = random.Random(10)  # fixed, so a failure replays the same timings
    kills = 0
    while kills < 12:
        running = stack.sql("SELECT count(*) FROM scoring_patch WHERE status = 'running' AND lease_until IS NOT NULL")
        if not running[0][0]:
            if not stack.sql("SELECT 1 FROM scoring_patch WHERE status IN ('queued', 'running')"):
                break
            time.sleep(0.05)
            continue
        time.sleep(rng.uniform(0.05, 0.9))  # somewhere inside the stage: tree copy, tests, lint, the writes
        kills += worker.kill_children()
        wait_for(lambda: len(worker.pool_children()) == 2, timeout_s=30, what="the pool to replace its processes")
    stack.wait_all_done(ids, timeout_s=180)
    attempts = assert_whole(stack, ids)
    retried = sum(1 for n in attempts.values() if n > 1)
    assert kills >= 8 and retried >= 3, (kills, attempts)
    report.record(
        "Fault injection",
        "`kill -9` of the worker's pool processes at random moments while 10 patches were being scored",
        times=kills,
        outcome=f"all 10 scored, exactly 1 Evaluation and 1 row per stage each, correctness 1.0; "
        f"{retried} patches were interrupted and retried (attempts {dict(sorted(Counter(attempts.values()).items()))})",
    )


def test_kill_9_of_the_whole_worker_is_recovered_once_its_lease_expires(stack, report):
    # A short time limit on the doomed worker keeps its lease at 95 s (soft 5 + 60 + 30), so the test is bounded.
    doomed = stack.worker(concurrency=2, REVIEWAPP_TASK_SOFT_LIMIT_S="5")
    ids = submit_all(stack, 4, "whole")
    wait_for(
        lambda: stack.sql("SELECT count(*) FROM scoring_patch WHERE status = 'running'")[0][0] >= 1,
        timeout_s=30,
        what="a patch to be running",
    )
    pool = doomed.pool_children()
    doomed.kill_all()
    _, alive = psutil.wait_procs(pool, timeout=10)  # SIGKILL is delivered asynchronously: give it a moment
    assert not [p for p in alive if _live(p)], "pool processes outlived the worker"
    killed_running = [pk for pk, s in stack.statuses().items() if s == "running"]
    stack.worker(concurrency=2)
    reconcile_until_done(stack, ids, timeout_s=200)
    attempts = assert_whole(stack, ids)
    assert all(attempts[pk] >= 2 for pk in killed_running), attempts
    report.record(
        "Fault injection",
        "`kill -9` of a whole worker (main process and pool) with 4 patches submitted, "
        f"{len(killed_running)} of them mid-stage; a new worker started",
        times=1,
        outcome="the reconciler re-enqueued the patches it held (the running ones once their lease expired, "
        "retried as a second attempt); all 4 scored once",
    )


def test_redis_outage_while_patches_arrive_answers_202_or_503_and_scores_every_accepted_patch(stack, report):
    stack.worker(concurrency=2, beat=True)
    accepted = submit_all(stack, 3, "before")
    stack.redis.stop()  # SIGKILL, no persistence: every message in the broker is gone too
    codes = Counter()
    for n in range(3, 9):
        status, body = stack.submit(stack.token, tiny_diff(n), f"during-{n}", timeout_s=60)
        codes[status] += 1
        assert status in (202, 503), (status, body)
        if status == 202:
            accepted.append(body["id"])
    health, body = stack.request("GET", "/healthz")
    # Anonymous callers get up or down and the queue depth only (the broker's detail is for admins).
    assert health == 503 and body["status"] == "error", body
    time.sleep(2)
    stack.redis.start()
    states = stack.wait_all_done(accepted, timeout_s=150)  # the worker reconnects; beat's reconciler re-enqueues
    assert_whole(stack, accepted)
    report.record(
        "Fault injection",
        "Redis killed (its queued messages lost with it) while 6 patches arrived, then restarted; worker with beat",
        times=1,
        outcome=f"answers during the outage: {dict(codes)} (never 500), /healthz 503; all {len(states)} accepted "
        "patches scored once after Redis returned",
    )


def test_postgres_crash_mid_scoring_leaves_no_half_written_rows_and_scores_after_restart(stack, report):
    stack.worker(concurrency=2, REVIEWAPP_TASK_SOFT_LIMIT_S="5")
    ids = submit_all(stack, 8, "pg")
    wait_for(
        lambda: (
            stack.sql("SELECT count(*) FROM scoring_evaluation")[0][0] >= 1
            and stack.sql("SELECT count(*) FROM scoring_patch WHERE status = 'running'")[0][0] >= 1
        ),
        timeout_s=60,
        what="the first evaluation while others run",
        every_s=0.05,
    )
    stack.postgres.stop("immediate")  # a crash: open transactions die, recovery from the WAL on restart
    codes = Counter()
    for n in range(8, 11):
        status, body = stack.submit(stack.token, tiny_diff(n), f"pg-down-{n}", timeout_s=60)
        codes[status] += 1
        assert status == 503, (status, body)
    health, _ = stack.request("GET", "/healthz")
    assert health == 503
    time.sleep(3)
    stack.postgres.start()
    reconcile_until_done(stack, ids, timeout_s=200)
    assert_whole(stack, ids)
    assert stack.sql("SELECT count(*) FROM scoring_patch")[0][0] == len(ids)  # the refused ones left no row
    report.record(
        "Fault injection",
        "PostgreSQL crashed (`pg_ctl stop -m immediate`) while 8 patches were being scored, restarted 3 s later; "
        "3 patches submitted while it was down",
        times=1,
        outcome=f"during the outage the API answered {dict(codes)} and /healthz 503; after the restart all 8 "
        "scored once, no Evaluation or stage row without its finished patch, no row for the refused submissions",
    )


def test_the_same_task_delivered_twice_makes_one_evaluation(stack, report):
    ids = submit_all(stack, 5, "dup")  # no worker yet: the messages wait in Redis
    broker = stack.redis.client()
    messages = broker.lrange("exec", 0, -1)
    assert len(messages) == 5, messages
    for raw in messages:  # the exact same message again: what a redelivery after a visibility timeout looks like
        broker.lpush("exec", raw)
    from celery import Celery

    sender = Celery(broker=stack.redis.url)
    for pk in ids:  # and a second message for the same stage under another task id
        sender.send_task("scoring.tasks.run_stage", args=[pk, "exec"], queue="exec")
    stack.worker(concurrency=2)
    stack.wait_all_done(ids, timeout_s=120)
    for raw in messages:  # late duplicates, after the patches are scored
        broker.lpush("exec", raw)
    wait_for(lambda: broker.llen("exec") == 0, timeout_s=30, what="the late duplicates to be consumed")
    time.sleep(2)
    assert_whole(stack, ids)
    report.record(
        "Fault injection",
        "every exec message of 5 patches delivered 4 times: the same message twice before scoring (racing on "
        "2 pool processes), once more under another task id, and once again after scoring",
        times=15,
        outcome="exactly 1 Evaluation and 1 row per stage for each patch; the extra deliveries found the lease "
        "taken or the stage stored",
    )


def test_a_patch_that_kills_its_worker_every_time_fails_after_the_attempt_cap_with_the_reason(stack, report):
    """A poison pill, made honestly: the sandbox shields the worker from anything a patch does, so the test plays
    the poison's part from outside and SIGKILLs the pool process each time it starts this patch (a new attempt)."""
    cap = 3
    worker = stack.worker(concurrency=1, REVIEWAPP_MAX_ATTEMPTS=str(cap))
    poison, healthy = submit_all(stack, 2, "poison")
    killed_at: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, attempts = stack.sql("SELECT status, attempts FROM scoring_patch WHERE id = %s", poison)[0]
        if status not in ("queued", "running"):
            break
        if status == "running" and attempts not in killed_at:
            worker.kill_children()
            killed_at.add(attempts)
        time.sleep(0.05)
    stack.wait_all_done([poison, healthy], timeout_s=60)
    status, attempts, reason = stack.sql("SELECT status, attempts, reason FROM scoring_patch WHERE id = %s", poison)[0]
    assert status == "failed", (status, reason)
    assert killed_at == set(range(1, cap + 1))
    assert reason.startswith(f"gave up after {cap} attempts"), reason
    assert stack.evaluations_per_patch() == {healthy: 1}
    assert stack.sql("SELECT count(*) FROM scoring_stageresult WHERE patch_id = %s", poison) == [(0,)]
    assert stack.correctness(healthy) == 1.0
    api_status, body = stack.request("GET", f"/api/v1/patches/{poison}/", token=stack.token)
    assert api_status == 200 and body["status"] == "failed"
    report.record(
        "Fault injection",
        f"a poison pill: the pool process killed each time it started one patch (attempt cap {cap})",
        times=len(killed_at),
        outcome=f'the patch ended `failed` with the reason "{reason}", no Evaluation; the patch queued behind '
        "it was scored",
    )


@pytest.fixture
def small_disk():
    """A 2 MB tmpfs for the workspace (REVIEWAPP_WORK_ROOT), unmounted afterwards."""
    mount = Path(f"/tmp/reviewapp-disk-{os.getpid()}")
    mount.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True, timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True, timeout=30)
        mount.rmdir()


def fill(mount: Path, *, leave_bytes: int) -> Path:
    """Fill the file system until only `leave_bytes` are free."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    stats = os.statvfs(mount)
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave_bytes))
    return filler


def test_a_full_disk_under_the_workspace_is_a_retryable_failure_with_nothing_partial(stack, small_disk, report):
    work = small_disk / "work"
    work.mkdir()
    stack.worker(concurrency=1, beat=True, REVIEWAPP_WORK_ROOT=str(work), REVIEWAPP_MAX_ATTEMPTS="20")
    outcomes = {}
    ids = []
    for n, free_kib in enumerate((0, 8, 16, 24, 28, 32)):  # from full to just enough
        filler = fill(small_disk, leave_bytes=free_kib * 1024)
        (pk,) = submit_all(stack, 1, "disk", start=n)
        ids.append(pk)

        def settled(pk=pk):
            row = stack.sql("SELECT status, reason FROM scoring_patch WHERE id = %s", pk)[0]
            return row if row[0] in FINISHED_SCORED or (row[0] == "queued" and row[1]) else None

        status, reason = wait_for(settled, timeout_s=60, what=f"patch {pk} with {free_kib} KiB free")
        assert list(work.iterdir()) == [], "a partial tree was left in the workspace"
        if status == "queued":
            assert "No space left on device" in reason, reason
            assert stack.sql("SELECT count(*) FROM scoring_stageresult WHERE patch_id = %s", pk) == [(0,)]
            assert stack.evaluations_per_patch().get(pk) is None
        else:
            assert stack.correctness(pk) == 1.0  # enough room: a normal, correct score, never a wrong one
        outcomes[free_kib] = "retryable failure" if status == "queued" else "scored correctly"
    assert outcomes[0] == "retryable failure"
    filler.unlink()
    stack.wait_all_done(ids, timeout_s=120)  # beat's reconciler retries them now that there is room
    assert_whole(stack, ids)
    report.record(
        "Fault injection",
        "a full disk under the workspace (2 MB tmpfs as REVIEWAPP_WORK_ROOT, filled to leave "
        + ", ".join(f"{k} KiB" for k in outcomes)
        + " free)",
        times=len(outcomes),
        outcome="; ".join(f"{k} KiB: {v}" for k, v in outcomes.items())
        + "; no partial tree, stage row or Evaluation left; after space was freed every patch was scored once",
    )


def _live(process: psutil.Process) -> bool:
    """Still running and not a zombie (a process that vanished while we looked counts as gone)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
