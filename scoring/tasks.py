"""Celery tasks: thin wrappers that fetch, call the pipeline or a service, and store.

Every task is idempotent: a redelivered or duplicated message finds the lease taken or the stage stored.
"""

from __future__ import annotations

import atexit
import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from scoring import services, storage
from scoring.conf import pipeline_settings
from scoring.core import pipeline
from scoring.core.diffcheck import parse_diff
from scoring.core.registry import REGISTRY
from scoring.core.spec import parse_spec

log = logging.getLogger(__name__)
_analyser = None


def worker_analyser():  # type: ignore[no-untyped-def]
    """The warm analyser of this worker process, started on first use and closed at exit."""
    global _analyser
    if _analyser is None:
        from scoring.core.analyser import Analyser

        _analyser = Analyser()
        atexit.register(_analyser.close)
    return _analyser


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_stage(self, patch_id: int, stage: str) -> str:  # type: ignore[no-untyped-def]
    """Run one stage ("exec" or "bench") of a patch, then hand over to the next stage or finalize."""
    lease_s = settings.CELERY_TASK_TIME_LIMIT + 30
    patch = services.patch_claim(patch_id=patch_id, token=self.request.id or "", lease_s=lease_s, stage=stage)
    if patch is None:
        return "not claimed"
    if services.next_stage(patch) == stage:
        task = patch.task
        try:
            outcome = pipeline.run_stage(
                critics=pipeline.stages(REGISTRY)[stage],
                spec=parse_spec(task.spec, api=True),
                diff=parse_diff(patch.diff, max_bytes=len(patch.diff.encode()) + 1),
                base_archive=storage.archive_path(task.base_sha256),
                hidden_archive=storage.archive_path(task.hidden_sha256) if task.hidden_sha256 else None,
                settings=pipeline_settings(),
                analyser=worker_analyser(),
            )
        except SoftTimeLimitExceeded:
            services.patch_release(patch=patch, reason=f"{stage} stage ran past its time limit")
            return "timed out"
        except Exception as exc:  # an internal failure: retried by the reconciler, failed past the cap
            log.exception("stage %s of patch %s failed", stage, patch_id)
            services.patch_release(patch=patch, reason=f"{stage} stage failed: {type(exc).__name__}: {exc}")
            return "released"
        services.stage_record(
            patch=patch,
            stage=stage,
            results=outcome.results,
            meta={
                "timings_s": outcome.timings_s,
                "sandbox": outcome.sandbox,
                "tools": pipeline.tool_versions(),
            },
        )
    following = services.next_stage(patch)
    if following is not None:
        services.patch_handoff(patch=patch, stage=following)
        services.enqueue_stage(patch.pk, following)
        return f"handed to {following}"
    services.patch_finalize(patch=patch)
    return "finalized"


@shared_task(acks_late=True)
def reconcile() -> dict[str, int]:
    return services.reconcile()


@shared_task(acks_late=True)
def prune_evidence() -> int:
    return services.prune_evidence()
