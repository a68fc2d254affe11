"""Celery tasks: thin wrappers that fetch, call the pipeline or a service, and store.

Every task is idempotent: a redelivered or duplicated message finds the lease taken or the stage stored.
"""

from __future__ import annotations

import atexit
import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError

from scoring import services

log = logging.getLogger(__name__)
_analyser = None


def worker_analyser():
    """The warm analyser of this worker process, started on first use and closed at exit."""
    global _analyser
    if _analyser is None:
        from scoring.conf import pipeline_settings
        from scoring.core.analysis.analyser import Analyser

        conf = pipeline_settings()
        _analyser = Analyser(
            recycle_after=conf.analyser_recycle_after,
            timeout_s=conf.analyser_timeout_s,
            memory_bytes=conf.analyser_memory_bytes,
        )
        atexit.register(_analyser.close)
    return _analyser


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_stage(self, patch_id: int, stage: str) -> str:
    """Run one stage ("exec" or "bench") of a patch, then hand over to the next stage or finalize."""
    try:
        return _run_stage(patch_id, stage, token=self.request.id or "")
    except DatabaseError as exc:
        # The database is down: try again soon. A retry keeps this delivery's id, so the lease it may hold is
        # taken back at once instead of waiting for it to expire.
        raise self.retry(exc=exc, countdown=5, max_retries=360) from exc


def _run_stage(patch_id: int, stage: str, *, token: str) -> str:
    lease_s = settings.CELERY_TASK_TIME_LIMIT + 30
    patch = services.patch_claim(patch_id=patch_id, token=token, lease_s=lease_s, stage=stage)
    if patch is None:
        return "not claimed"
    try:
        following = services.stage_advance(patch=patch, stage=stage, analyser=worker_analyser())
    except SoftTimeLimitExceeded:
        services.patch_release(patch=patch, reason=f"{stage} stage ran past its time limit")
        return "timed out"
    except DatabaseError:
        raise
    except Exception as exc:  # an internal failure: retried by the reconciler, failed past the cap
        log.exception("stage %s of patch %s failed", stage, patch_id)
        services.patch_release(patch=patch, reason=f"{stage} stage failed: {type(exc).__name__}: {exc}")
        return "released"
    if following is not None:
        services.enqueue_stage(patch.pk, following)
        return f"handed to {following}"
    return "finalized"


@shared_task(acks_late=True)
def enqueue_patches(patch_ids: list[int]) -> int:
    """Fan a batch accepted by the API out into one scoring message per patch."""
    for patch_id in patch_ids:
        services.enqueue_stage(patch_id)
    return len(patch_ids)


@shared_task(acks_late=True)
def reconcile() -> dict[str, int]:
    return services.reconcile()


@shared_task(acks_late=True)
def prune_evidence() -> int:
    return services.prune_evidence()
