"""Reads over human labels."""

from __future__ import annotations

from typing import Any

from scoring.core.aggregate.route import weighted_mean
from scoring.models import Patch


def latest_labels(patch: Patch) -> list[Any]:
    """The latest label event of each reviewer of `patch` (prefetched as `label_list` when listing)."""
    events = getattr(patch, "label_list", None)
    if events is None:
        events = list(patch.label_events.order_by("id"))
    latest: dict[int, Any] = {}
    for event in events:
        latest[event.reviewer_id] = event
    return list(latest.values())


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
