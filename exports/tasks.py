"""Celery tasks of the exports app (the `critic` queue, off the reward path): fetch, call a service."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from exports import services as exports
from labeling.models import ExportJob


@shared_task(acks_late=True)
def export_run(job_id: int) -> str:
    """Write the file of one ExportJob (the /exports/ page and the API start them)."""
    job = ExportJob.objects.filter(pk=job_id).first()
    if job is None:
        return "no such job"
    try:
        return exports.export_job_run(job=job).status
    except SoftTimeLimitExceeded:
        exports.export_job_fail(job=job, error="ran past its time limit; export from the command line instead")
        return "timed out"
