"""Stored evaluations rebuilt under a weight profile: the scoring path itself, run on stored subscores."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet

from scoring.core.aggregate.route import Route
from scoring.core.critics.registry import BY_NAME
from scoring.core.pipeline import PIPELINE_VERSION, build_result
from scoring.core.types import CriticResult, PipelineSettings, Weights
from scoring.models import Evaluation, PatchStatus

log = logging.getLogger(__name__)

S = PatchStatus


def queue_move(status: str, route: str, *, held: bool) -> str | None:
    """The status a patch moves to under a new route, or None: only scored <-> needs_review (docs/contract.md).

    A patch enters the queue when its route is no longer `auto`; it leaves only when nobody holds it (a live
    claim or any label). Reviewed, failed and every other status stay where they are.
    """
    if status == S.SCORED and route != Route.AUTO:
        return S.NEEDS_REVIEW
    if status == S.NEEDS_REVIEW and route == Route.AUTO and not held:
        return S.SCORED
    return None


def current_evaluations() -> QuerySet[Evaluation]:
    """Evaluations of the current pipeline version, with what re-building them needs."""
    return Evaluation.objects.filter(pipeline_version=PIPELINE_VERSION).select_related("patch__task")


def rebuild(
    evaluation: Evaluation, weights: Weights, settings: PipelineSettings, *, held: bool = False
) -> dict[str, Any]:
    """The Result of a stored Evaluation under `weights`: the scoring path itself, run on stored subscores (and the
    learned critic's view stored in its meta). `held`: a reviewer holds the patch, so it stays in the queue."""
    results = {
        name: CriticResult.from_json(name, data) for name, data in evaluation.subscores.items() if name in BY_NAME
    }
    return build_result(
        task_name=evaluation.patch.task.name,
        results=results,
        weights=weights,
        settings=settings,
        audit_key=evaluation.patch.diff_sha256,
        meta=evaluation.meta,
        held=held,
    )
