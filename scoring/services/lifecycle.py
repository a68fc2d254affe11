"""Writes: the status machine, the stages a patch goes through, and its Evaluation.

Every status change is a compare-and-set (`UPDATE ... WHERE status = ...`), portable to SQLite and PostgreSQL,
so two workers can never both move the same patch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from scoring import affinity, notify, queueing, selectors, signals, storage
from scoring.conf import pipeline_settings
from scoring.core.aggregate.route import Route, in_doubt
from scoring.core.critics.registry import REGISTRY
from scoring.core.intake import diffcheck
from scoring.core.pipeline import PIPELINE_VERSION, build_result, run_stage, stages, tool_versions
from scoring.core.types import CriticResult
from scoring.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Evaluation,
    Patch,
    PatchStatus,
    StageResult,
    WeightProfile,
)
from scoring.services.task_intake import task_spec

if TYPE_CHECKING:
    from kombu import Queue

log = logging.getLogger(__name__)

S = PatchStatus
#: The status machine of docs/contract.md: from -> allowed targets.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.QUEUED, S.SCORED, S.NEEDS_REVIEW, S.FAILED}),
    S.SCORED: frozenset({S.NEEDS_REVIEW}),
    S.NEEDS_REVIEW: frozenset({S.SCORED, S.REVIEWED}),
}


def patch_transition(*, patch_id: int, source: Iterable[str], target: str, extra: Q | None = None, **fields) -> bool:
    """Move a patch from one of `source` to `target` if it is still there. True if this call won."""
    source = tuple(source)
    for state in source:
        if target not in TRANSITIONS.get(state, ()):
            raise ValueError(f"{state} -> {target} is not a status transition")
    condition = Q(pk=patch_id, status__in=source)
    if extra is not None:
        condition &= extra
    won = Patch.objects.filter(condition).update(status=target, updated_at=timezone.now(), **fields) == 1
    if won and target in TERMINAL_STATUSES:
        # Wake the /rewards/ calls waiting for this patch, once the status they will read is committed.
        transaction.on_commit(lambda: notify.patch_done(patch_id))
    return won


def patch_claim(*, patch_id: int, token: str, lease_s: float, stage: str) -> Patch | None:
    """Take the lease on a patch to run one stage. None when someone else holds it or it is done.

    Claimable: queued; running with no live lease; or running under this same delivery (`token`, the Celery
    task id: a redelivery after the worker died). Every claim but a clean hand-over between stages counts an
    attempt; past the cap the patch fails with the last reason, so a poison pill cannot loop forever.
    """
    patch = Patch.objects.filter(pk=patch_id).first()
    if patch is None or patch.status not in ACTIVE_STATUSES:
        return None
    now = timezone.now()
    handoff = patch.status == S.RUNNING and patch.lease_until is None and patch.next_stage == stage
    cap = settings.REVIEWAPP["MAX_ATTEMPTS"]
    if not handoff and patch.attempts >= cap:
        patch_fail(
            patch_id=patch_id,
            reason=f"gave up after {patch.attempts} attempts: {patch.reason or 'worker lost'}",
        )
        return None
    free = Q(status=S.QUEUED) | Q(status=S.RUNNING) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(run_token=token)
    )
    attempts = patch.attempts if handoff else patch.attempts + 1
    won = Patch.objects.filter(Q(pk=patch_id, attempts=patch.attempts, updated_at=patch.updated_at) & free).update(
        status=S.RUNNING,
        lease_until=now + timedelta(seconds=lease_s),
        attempts=attempts,
        run_token=token,
        next_stage="",
        updated_at=now,
    )
    if won != 1:
        return None
    patch.refresh_from_db()
    return patch


def patch_handoff(*, patch: Patch, stage: str) -> None:
    """End this stage's lease and mark `stage` as next, so its claim does not count as a retry."""
    Patch.objects.filter(pk=patch.pk, status=S.RUNNING).update(
        lease_until=None, next_stage=stage, updated_at=timezone.now()
    )


def patch_release(*, patch: Patch, reason: str) -> None:
    """Give the lease back after an internal failure so the reconciler retries it (attempts already counted)."""
    Patch.objects.filter(pk=patch.pk, status=S.RUNNING).update(
        status=S.QUEUED, lease_until=None, reason=reason[:2000], updated_at=timezone.now()
    )


def patch_fail(*, patch_id: int, reason: str) -> bool:
    return patch_transition(
        patch_id=patch_id,
        source=tuple(ACTIVE_STATUSES),
        target=S.FAILED,
        reason=reason[:2000],
        lease_until=None,
        finished_at=timezone.now(),
    )


def stage_record(*, patch: Patch, stage: str, results: Mapping[str, CriticResult], meta: Mapping[str, Any]) -> None:
    """Store one stage's results; a second call for the same stage and version keeps the first."""
    StageResult.objects.get_or_create(
        patch=patch,
        stage=stage,
        pipeline_version=PIPELINE_VERSION,
        defaults={"results": {n: r.to_json() for n, r in results.items()}, "meta": dict(meta)},
    )


def stage_execute(*, patch: Patch, stage: str, analyser: Any = None) -> None:
    """Run one stage of the pipeline on a patch and store its results. Call while holding the patch's lease.

    Raises SandboxUnavailable or an internal error; whatever the patch itself does ends up in the results.
    """
    task = patch.task
    outcome = run_stage(
        critics=stages(REGISTRY)[stage],
        spec=task_spec(task),
        diff=diffcheck.parse_diff(patch.diff, max_bytes=len(patch.diff.encode("utf-8", "surrogatepass")) + 1),
        base_archive=storage.archive_path(task.base_sha256),
        hidden_archive=storage.archive_path(task.hidden_sha256) if task.hidden_sha256 else None,
        settings=pipeline_settings(),
        analyser=analyser,
    )
    stage_record(
        patch=patch,
        stage=stage,
        results=outcome.results,
        meta={"timings_s": outcome.timings_s, "sandbox": outcome.sandbox, "tools": tool_versions()},
    )


def patch_score_inline(*, patch: Patch, analyser: Any = None) -> bool:
    """Score a queued patch in this process, every stage in turn, exactly as the workers would (the demo).

    False when a worker holds the patch.
    """
    stage = next_stage(patch)
    if stage is None:  # every stage stored already: only the Evaluation is missing
        patch_finalize(patch=patch)
    while stage is not None:
        claimed = patch_claim(patch_id=patch.pk, token=f"inline-{patch.pk}", lease_s=3600, stage=stage)
        if claimed is None:
            return False
        stage = stage_advance(patch=claimed, stage=stage, analyser=analyser)
    return True


def stage_advance(*, patch: Patch, stage: str, analyser: Any = None) -> str | None:
    """Run `stage` unless its results are stored already, then hand the patch to the next stage or finalize it.

    The one stage loop: the Celery task (scoring.tasks.run_stage) and the inline scorer both step through it.
    Call with the patch claimed for `stage`. Returns the stage the patch was handed to, or None once finalized.
    """
    if next_stage(patch) == stage:
        stage_execute(patch=patch, stage=stage, analyser=analyser)
    following = next_stage(patch)
    if following is not None:
        patch_handoff(patch=patch, stage=following)
        return following
    patch_finalize(patch=patch)
    return None


def next_stage(patch: Patch) -> str | None:
    """The first stage (in registry order) that has no stored result for this pipeline version."""
    done = set(
        StageResult.objects.filter(patch=patch, pipeline_version=PIPELINE_VERSION).values_list("stage", flat=True)
    )
    return next((stage for stage in stages(REGISTRY) if stage not in done), None)


def enqueue_many(patch_ids: list[int]) -> None:
    """Enqueue the first stage of many patches with one message; a worker fans it out (scoring.tasks)."""
    if not patch_ids:
        return
    try:
        queueing.send(queueing.ENQUEUE_PATCHES, patch_ids, queue="score")
    except Exception:  # a dead broker must not lose the rows: the reconciler enqueues them later
        log.warning("could not enqueue %d patches; the reconciler will retry", len(patch_ids), exc_info=True)


def enqueue_stage(patch_id: int, stage: str | None = None) -> None:
    """Send a patch's next stage to its queue. A broker outage is logged, not raised: the row is safe, and the
    reconciler enqueues it again once the broker is back."""
    stage = stage or next(iter(stages(REGISTRY)))
    queue: str | Queue = stage
    if stage == "exec":  # a task's patches go to the worker that has the task warm (scoring.affinity)
        task_id = Patch.objects.filter(pk=patch_id).values_list("task_id", flat=True).first()
        queue = affinity.exec_queue(task_id) if task_id is not None else stage
    try:
        queueing.send(queueing.RUN_STAGE, patch_id, stage, queue=queue)
    except Exception:  # kombu raises many types for a dead broker; none of them may lose the patch
        log.warning("could not enqueue patch %s (%s); the reconciler will retry", patch_id, stage, exc_info=True)


def patch_finalize(*, patch: Patch) -> Evaluation:
    """Aggregate the stored stage results into the Evaluation and route the patch. Safe to call twice."""
    rows = StageResult.objects.filter(patch=patch, pipeline_version=PIPELINE_VERSION)
    results: dict[str, CriticResult] = {}
    meta: dict[str, Any] = {"timings_s": {}, "sandbox": "bwrap"}
    for row in rows:
        results.update({n: CriticResult.from_json(n, data) for n, data in row.results.items()})
        meta["timings_s"].update(row.meta.get("timings_s", {}))
        if row.meta.get("sandbox") == "unsandboxed":
            meta["sandbox"] = "unsandboxed"
        meta["tools"] = row.meta.get("tools", {})
    meta.update(pipeline_version=PIPELINE_VERSION, task_sha256=patch.task.base_sha256)
    profile, weights = selectors.active_weights()
    result = build_result(
        task_name=patch.task.name,
        results=results,
        weights=weights,
        settings=pipeline_settings(),
        audit_key=patch.diff_sha256,
        meta=meta,
    )
    with transaction.atomic():
        evaluation, _ = Evaluation.objects.get_or_create(
            patch=patch,
            pipeline_version=PIPELINE_VERSION,
            defaults=evaluation_fields(result, profile),
        )
        target = S.SCORED if evaluation.route == Route.AUTO else S.NEEDS_REVIEW
        patch_transition(
            patch_id=patch.pk,
            source=(S.RUNNING,),
            target=target,
            lease_until=None,
            finished_at=timezone.now(),
        )
    # The layers above hear of it (the learned critic, off the reward path); none of them may fail scoring.
    for receiver, error in signals.patch_finalized.send_robust(sender=Evaluation, patch_id=patch.pk):
        if isinstance(error, Exception):
            log.warning("patch_finalized receiver %s failed for patch %s", receiver, patch.pk, exc_info=error)
    return evaluation


def evaluation_fields(result: Mapping[str, Any], profile: WeightProfile) -> dict[str, Any]:
    """The columns of an Evaluation for a built Result."""
    return {
        "subscores": result["subscores"],
        "final_score": result["final_score"],
        "weight_profile": profile,
        "route": result["route"],
        "flags": result["flags"],
        "comments": result["comments"],
        "meta": result["meta"],
        **confidence_fields(result["subscores"]),
    }


def confidence_fields(subscores: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The review queue's columns for stored subscores: the lowest measured confidence, and the criteria in doubt."""
    results = {name: CriticResult.from_json(name, data) for name, data in subscores.items()}
    measured = [r.confidence for r in results.values() if r.score is not None]
    return {
        "min_confidence": min(measured, default=0.0),
        "doubt": list(in_doubt(results, pipeline_settings().heal_confidence_threshold)),
    }
