"""Housekeeping: the reconciler (re-sends what a broker lost) and the pruning of old evidence."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from scoring.models import Evaluation, Patch, PatchStatus, StageResult
from scoring.services import lifecycle

log = logging.getLogger(__name__)

S = PatchStatus


def reconcile(*, now=None) -> dict[str, int]:
    """Re-enqueue patches whose message was lost or whose worker died; fail those past the attempt cap.

    Runs from celery beat on one host. Enqueuing twice is harmless: only one delivery wins the claim.
    """
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=settings.REVIEWAPP["STUCK_AFTER_S"])
    counts = {"requeued": 0, "failed": 0}
    stale = Patch.objects.filter(
        Q(status=S.QUEUED, updated_at__lt=stuck_before)
        | Q(status=S.RUNNING, lease_until__lt=now)
        | Q(status=S.RUNNING, lease_until__isnull=True, updated_at__lt=stuck_before)
    ).only("pk", "attempts", "reason")[:1000]
    cap = settings.REVIEWAPP["MAX_ATTEMPTS"]
    for patch in stale:
        if patch.attempts >= cap:
            counts["failed"] += lifecycle.patch_fail(
                patch_id=patch.pk,
                reason=f"gave up after {patch.attempts} attempts: {patch.reason or 'worker lost'}",
            )
            continue
        Patch.objects.filter(pk=patch.pk).update(updated_at=now)
        lifecycle.enqueue_stage(patch.pk, lifecycle.next_stage(patch))
        counts["requeued"] += 1
    return counts


def prune_evidence(*, now=None) -> int:
    """Drop bulky evidence (test output, findings) older than the retention; scores and rationale stay."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.REVIEWAPP["RETENTION_DAYS"])
    pruned = 0
    for evaluation in Evaluation.objects.filter(created_at__lt=cutoff, meta__evidence_pruned__isnull=True):
        for sub in evaluation.subscores.values():
            sub["evidence"] = {"pruned": True}
        evaluation.meta["evidence_pruned"] = now.isoformat()
        evaluation.save(update_fields=["subscores", "meta", "updated_at"])
        pruned += 1
    StageResult.objects.filter(created_at__lt=cutoff).delete()
    return pruned
