"""Reads over human labels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from labeling.models import LabelEvent
from scoring.core.aggregate import weighted_mean
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
