"""The dashboard's numbers: queue size over time, labelling pace, score distributions, auto-vs-human
agreement and agreement between reviewers (Krippendorff's alpha). Each function returns plain JSON data that
one chart draws."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import krippendorff
import numpy as np

from labeling.models import LabelEvent
from labeling.selectors import latest_per_reviewer
from scoring.core.critics.registry import REGISTRY
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.models import Evaluation, Patch, PatchStatus

BINS = 10
#: Points per scatter: enough to see the shape, few enough to keep the page light.
MAX_POINTS = 2000


def _hours(now: datetime, hours: int) -> list[datetime]:
    top = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return [top - timedelta(hours=hours - i) for i in range(hours + 1)]


def queue_over_time(*, now: datetime, hours: int = 48) -> dict[str, Any]:
    """Patches waiting for review at each hour: routed to review (finished_at) and not yet reviewed then.

    A reviewed patch left the queue at its last status change (`updated_at`).
    """
    rows = Patch.objects.filter(status__in=[PatchStatus.NEEDS_REVIEW, PatchStatus.REVIEWED]).values_list(
        "status", "finished_at", "created_at", "updated_at"
    )
    ticks = _hours(now, hours)
    counts = [0] * len(ticks)
    for status, finished, created, updated in rows:
        entered = finished or created
        left = updated if status == PatchStatus.REVIEWED else None
        for i, tick in enumerate(ticks):
            if entered <= tick and (left is None or left > tick):
                counts[i] += 1
    return {"labels": [t.isoformat() for t in ticks], "data": counts}


def labels_per_hour(*, now: datetime, hours: int = 48) -> dict[str, Any]:
    """Label events per hour, one series per reviewer."""
    ticks = _hours(now, hours)
    start = ticks[0]
    series: dict[str, list[int]] = defaultdict(lambda: [0] * hours)
    for name, created in LabelEvent.objects.filter(created_at__gte=start).values_list(
        "reviewer__username", "created_at"
    ):
        index = min(hours - 1, int((created - start).total_seconds() // 3600))
        series[name][index] += 1
    return {
        "labels": [t.isoformat() for t in ticks[:-1]],
        "series": [{"label": name, "data": data} for name, data in sorted(series.items())],
    }


def _latest_events() -> list[LabelEvent]:
    """The latest label of each reviewer on each patch (older events were edited away)."""
    events = LabelEvent.objects.only("patch_id", "reviewer_id", "subscores", "task_broken").order_by("id")
    return [e for e in latest_per_reviewer(events) if not e.task_broken]


def _histogram(values: list[float]) -> list[int]:
    counts, _ = np.histogram(values, bins=BINS, range=(0.0, 1.0))
    return [int(c) for c in counts]


def distributions() -> dict[str, Any]:
    """Per criterion: histograms of automatic scores (current evaluations) and human scores (latest labels)."""
    auto: dict[str, list[float]] = defaultdict(list)
    for subscores in Evaluation.objects.filter(pipeline_version=PIPELINE_VERSION).values_list("subscores", flat=True):
        for name, sub in subscores.items():
            if isinstance(sub, dict) and sub.get("score") is not None:
                auto[name].append(sub["score"])
    human: dict[str, list[float]] = defaultdict(list)
    for event in _latest_events():
        for name, sub in event.subscores.items():
            if sub.get("human") is not None:
                human[name].append(sub["human"])
    edges = [round(i / BINS, 2) for i in range(BINS)]
    return {
        "bins": [f"{e:.1f}-{e + 1 / BINS:.1f}" for e in edges],
        "criteria": [
            {"name": c.name, "label": c.label, "auto": _histogram(auto[c.name]), "human": _histogram(human[c.name])}
            for c in REGISTRY
        ],
    }


def auto_vs_human() -> dict[str, Any]:
    """Per criterion: (automatic score when labelled, human score) points from the latest labels."""
    points: dict[str, list[dict[str, float]]] = defaultdict(list)
    for event in _latest_events():
        for name, sub in event.subscores.items():
            if sub.get("auto") is not None and sub.get("human") is not None and len(points[name]) < MAX_POINTS:
                points[name].append({"x": sub["auto"], "y": sub["human"]})
    return {"criteria": [{"name": c.name, "label": c.label, "points": points[c.name]} for c in REGISTRY]}


def agreement() -> dict[str, Any]:
    """Krippendorff's alpha (interval) per criterion over items that at least two reviewers labelled."""
    by_item: dict[int, dict[int, LabelEvent]] = defaultdict(dict)
    for event in _latest_events():
        by_item[event.patch_id][event.reviewer_id] = event
    shared = {patch: labels for patch, labels in by_item.items() if len(labels) >= 2}
    reviewers = sorted({r for labels in shared.values() for r in labels})
    rows = []
    for critic in REGISTRY:
        matrix = [[_human(shared[patch].get(r), critic.name) for patch in sorted(shared)] for r in reviewers]
        rows.append({"name": critic.name, "label": critic.label, "alpha": _alpha(matrix), "items": len(shared)})
    return {"criteria": rows, "items": len(shared), "reviewers": len(reviewers)}


def _human(event: LabelEvent | None, name: str) -> float:
    if event is None:
        return np.nan
    value = event.subscores.get(name, {}).get("human")
    return np.nan if value is None else float(value)


def _alpha(matrix: list[list[float]]) -> float | None:
    """Alpha, or None when it is undefined (fewer than two paired values, or no variation at all)."""
    data = np.array(matrix, dtype=float)
    paired = (~np.isnan(data)).sum(axis=0) >= 2
    if data.size == 0 or paired.sum() < 2:
        return None
    values = data[:, paired]
    if np.nanmax(values) == np.nanmin(values):
        return None
    try:
        alpha = krippendorff.alpha(reliability_data=values, level_of_measurement="interval")
    except (ValueError, ZeroDivisionError):
        return None
    return None if np.isnan(alpha) else round(float(alpha), 3)
