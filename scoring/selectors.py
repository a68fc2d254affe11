"""Reads: the active weight profile, a patch's Result as DESIGN.md fixes it, filtered patch lists."""

from __future__ import annotations

import copy
from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from scoring.core.aggregate import default_weights
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.core.registry import REGISTRY
from scoring.core.types import Weights
from scoring.models import Evaluation, Patch, PatchStatus, Task, WeightProfile


def weights_of(profile: WeightProfile) -> Weights:
    """The pure Weights for a stored profile."""
    return Weights(
        name=profile.name,
        version=profile.version,
        weights=dict(profile.weights),
        band_low=profile.band_low,
        band_high=profile.band_high,
        audit_rate=profile.audit_rate,
        perf_knots=tuple(tuple(k) for k in profile.perf_knots),
    )


def active_weights() -> tuple[WeightProfile, Weights]:
    """The active profile; the registry defaults are stored as `default` v1 the first time it is asked for."""
    profile = WeightProfile.objects.filter(is_active=True).first()
    if profile is None:
        defaults = default_weights(REGISTRY)
        profile, _ = WeightProfile.objects.get_or_create(
            name=defaults.name,
            version=defaults.version,
            defaults={
                "weights": dict(defaults.weights),
                "band_low": defaults.band_low,
                "band_high": defaults.band_high,
                "audit_rate": defaults.audit_rate,
                "perf_knots": [list(k) for k in defaults.perf_knots],
                "note": "built-in defaults",
            },
        )
        if not WeightProfile.objects.filter(is_active=True).exists():
            WeightProfile.objects.filter(pk=profile.pk).update(is_active=True)
    return profile, weights_of(profile)


def current_evaluation(patch: Patch) -> Evaluation | None:
    """The evaluation of the current pipeline version (prefetched as `current_evaluations` when listing)."""
    prefetched = getattr(patch, "current_evaluations", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return patch.evaluations.filter(pipeline_version=PIPELINE_VERSION).select_related("weight_profile").first()


def with_results(queryset: QuerySet[Patch]) -> QuerySet[Patch]:
    """Prefetch what patch_result needs, so a page of Results costs a constant number of queries."""
    return queryset.select_related("task").prefetch_related(
        Prefetch(
            "evaluations",
            queryset=Evaluation.objects.filter(pipeline_version=PIPELINE_VERSION).select_related("weight_profile"),
            to_attr="current_evaluations",
        )
    )


def hide_hidden_tests(subscores: dict[str, Any]) -> dict[str, Any]:
    """API clients see counts and pass/fail of hidden tests only: no names, no source, no output."""
    subscores = copy.deepcopy(subscores)
    for sub in subscores.values():
        hidden = sub.get("evidence", {}).get("hidden")
        if isinstance(hidden, dict):
            sub["evidence"]["hidden"] = {k: v for k, v in hidden.items() if k in ("passed", "failed", "total")}
    return subscores


def patch_result(patch: Patch, *, reveal_hidden: bool, include_id: bool = True, human: Any = None) -> dict[str, Any]:
    """The Result JSON of DESIGN.md for one patch, whatever its status."""
    evaluation = current_evaluation(patch) if patch.status not in (PatchStatus.REJECTED,) else None
    result: dict[str, Any] = {
        "id": patch.pk,
        "task": patch.task.name,
        "external_id": patch.external_id,
        "status": patch.status,
        "final_score": 0.0 if patch.status == PatchStatus.REJECTED else None,
        "weight_profile": None,
        "route": None,
        "flags": [],
        "subscores": {},
        "comments": patch.reason,
        "human": human,
        "meta": {"pipeline_version": PIPELINE_VERSION, "attempts": patch.attempts},
    }
    if evaluation is not None:
        subscores = evaluation.subscores if reveal_hidden else hide_hidden_tests(evaluation.subscores)
        result.update(
            final_score=evaluation.final_score,
            weight_profile={
                "name": evaluation.weight_profile.name,
                "version": evaluation.weight_profile.version,
            },
            route=evaluation.route,
            flags=evaluation.flags,
            subscores=subscores,
            comments=evaluation.comments,
            meta=dict(evaluation.meta, attempts=patch.attempts),
        )
    if not include_id:
        result.pop("id")
    return result


def patches_visible_to(user: Any) -> QuerySet[Patch]:
    """Clients see their own patches; reviewers and admins see all."""
    from scoring.roles import is_staff_reader

    queryset = Patch.objects.all()
    if not is_staff_reader(user):
        queryset = queryset.filter(client=user)
    return queryset


def tasks_visible_to(user: Any) -> QuerySet[Task]:
    """Clients see (and score) the tasks they registered and the shared ones; reviewers and admins see all."""
    from scoring.roles import is_staff_reader

    queryset = Task.objects.all()
    if not is_staff_reader(user):
        queryset = queryset.filter(Q(shared=True) | Q(created_by=user))
    return queryset
