"""Activation through the real Celery worker on a real Redis: the progress bar's job runs to the end."""

from __future__ import annotations

import time

import pytest

from scoring.models import Evaluation, Patch, PatchStatus, ReaggregationJob
from tests.weights.factories import make_scored_patch, new_version
from tuning import services as svc


def wait_finished(job: ReaggregationJob, timeout_s: float = 60) -> ReaggregationJob:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status not in (ReaggregationJob.Status.PENDING, ReaggregationJob.Status.RUNNING):
            return job
        time.sleep(0.2)
    pytest.fail(f"re-aggregation job still {job.status} after {timeout_s} s")


@pytest.mark.slow
def test_activation_re_aggregates_and_re_routes_in_the_celery_worker(celery_worker, admin, base_profile):
    leaves = make_scored_patch({"correctness": 1.0, "style": 0.0, "security": 0.0}, ratio=1.0)  # 0.6 -> 0.87
    enters = make_scored_patch({"correctness": 0.5, "style": 1.0, "security": 1.0}, ratio=1.0)  # 0.8 -> 0.6
    eager = new_version(
        admin, weights={"correctness": 0.8, "style": 0.2 / 3, "performance": 0.2 / 3, "security": 0.2 / 3}
    )

    job = wait_finished(svc.profile_activate(profile=eager, actor=admin))

    assert (job.status, job.total, job.processed, job.entered, job.left) == ("done", 2, 2, 1, 1), job.error
    assert Patch.objects.get(pk=leaves.pk).status == PatchStatus.SCORED
    assert Patch.objects.get(pk=enters.pk).status == PatchStatus.NEEDS_REVIEW
    assert set(Evaluation.objects.values_list("weight_profile", flat=True)) == {eager.pk}
