"""Celery tasks of the tuning app: thin wrappers that fetch and call a service (the `score` queue)."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from scoring.models import ReaggregationJob
from tuning import services as weights


@shared_task(acks_late=True)
def reaggregate(profile_id: int, job_id: int) -> dict[str, int]:
    """Re-aggregate every current Evaluation under an activated weight profile (tuning.services.reaggregate)."""
    job = ReaggregationJob.objects.select_related("profile").filter(pk=job_id, profile_id=profile_id).first()
    if job is None:
        return {}
    try:
        return weights.reaggregate(profile=job.profile, job=job)
    except SoftTimeLimitExceeded:
        weights.job_fail(job=job, error="ran past its time limit; activate the profile again to finish")
        return {}
    except Exception as exc:  # the progress bar must show the failure instead of spinning forever
        weights.job_fail(job=job, error=f"{type(exc).__name__}: {exc}")
        raise
