"""Reads over human labels, claims and critic runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, OuterRef

from labeling.models import Claim, CriticRun, LabelEvent
from scoring.core.aggregate.route import weighted_mean
from scoring.models import Patch


def latest_per_reviewer(events: Iterable[LabelEvent]) -> list[LabelEvent]:
    """Of `events` in id order, each reviewer's latest on each patch: their current label (an edit is a new event,
    the older ones stay as history). The one definition of "a reviewer's label" every read uses."""
    latest: dict[tuple[int, int], LabelEvent] = {}
    for event in events:
        latest[(event.patch_id, event.reviewer_id)] = event
    return list(latest.values())


def latest_label(*, patch_id: int, reviewer: Any) -> LabelEvent | None:
    """The reviewer's current label on a patch (their latest event), or None."""
    return LabelEvent.objects.filter(patch_id=patch_id, reviewer=reviewer).order_by("-id").first()


def latest_labels(patch: Patch) -> list[LabelEvent]:
    """The latest label event of each reviewer of `patch` (prefetched as `label_list` when listing)."""
    events = getattr(patch, "label_list", None)
    if events is None:
        events = list(patch.label_events.order_by("id"))
    return latest_per_reviewer(events)


def human_consensus(patch: Patch, weights: dict[str, float] | None = None) -> dict[str, Any] | None:
    """The `human` part of the Result: per criterion the mean of each reviewer's latest label, and its final."""
    labels = latest_labels(patch)
    if not labels:
        return None
    criteria = {name for label in labels for name in label.subscores}
    subscores: dict[str, float | None] = {}
    for name in sorted(criteria):
        values = [label.subscores[name].get("human") for label in labels if name in label.subscores]
        values = [v for v in values if v is not None]
        subscores[name] = round(sum(values) / len(values), 4) if values else None
    finals = [label.final_score for label in labels if label.final_score is not None]
    final = round(sum(finals) / len(finals), 4) if finals else (weighted_mean(subscores, weights) if weights else None)
    comment = next((label.comment for label in reversed(labels) if label.comment), "")
    return {"subscores": subscores, "final_score": final, "labels": len(labels), "comment": comment}


def critic_runs_series(*, last: int = 50) -> dict[str, Any]:
    """The metrics of the last `last` critic evaluations, oldest first, as chart data (labels and series).

    `mae` is the mean over the criteria that had a comparable score. Missing values are None (a gap).
    """
    runs = list(CriticRun.objects.order_by("-id")[:last])[::-1]

    def mean_mae(run: CriticRun) -> float | None:
        values = [v for v in run.mae.values() if v is not None]
        return round(sum(values) / len(values), 4) if values else None

    return {
        "labels": [f"{run.version} ({run.created_at:%m-%d %H:%M})" for run in runs],
        "series": [
            {"label": "valid JSON rate", "data": [run.valid_json_rate for run in runs]},
            {"label": "band agreement", "data": [run.band_agreement for run in runs]},
            {"label": "correctness agreement", "data": [run.correctness_agreement for run in runs]},
            {"label": "mean absolute error", "data": [mean_mae(run) for run in runs]},
        ],
    }


def held_exprs(now: Any, patch_ref: str) -> tuple[Exists, Exists]:
    """Whether someone holds the patch at `patch_ref`: a live claim, any label."""
    claimed = Exists(Claim.objects.filter(patch=OuterRef(patch_ref), lease_until__gt=now))
    labelled = Exists(LabelEvent.objects.filter(patch=OuterRef(patch_ref)))
    return claimed, labelled
