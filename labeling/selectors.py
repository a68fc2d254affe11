"""Reads over human labels, claims and critic runs, and the review page's data."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, OuterRef

from labeling.models import Claim, CriticRun, LabelEvent
from labeling.present import findings_of, numeric_series, render_diff, render_evidence
from scoring.core.aggregate.route import weighted_mean
from scoring.core.critics.registry import REGISTRY
from scoring.models import Patch, Task
from scoring.roles import has_role
from scoring.selectors import active_weights, current_evaluation


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


def _criteria_rows(evaluation: Any, mine: LabelEvent | None, form: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per registry criterion: the automatic result, its evidence, and the value the form starts at."""
    rows = []
    for critic in REGISTRY:
        sub = evaluation.subscores.get(critic.name) or {}
        auto = sub.get("score")
        if form is not None:
            value, note = form["scores"].get(critic.name), form["notes"].get(critic.name, "")
        elif mine is not None:
            label = mine.subscores.get(critic.name, {})
            value, note = label.get("human"), label.get("note", "")
        else:
            value, note = auto, ""
        evidence = sub.get("evidence") or {}
        rows.append(
            {
                "name": critic.name,
                "label": critic.label,
                "auto": auto,
                "confidence": sub.get("confidence"),
                "doubt": critic.name in evaluation.doubt,
                "rationale": sub.get("rationale") or [],
                "flags": sub.get("flags") or [],
                "evidence": render_evidence(evidence) if evidence else None,
                "series": numeric_series(evidence),
                "value": value,
                "note": note,
            }
        )
    return rows


def _others_labels(patch: Patch, user: Any) -> list[dict[str, Any]]:
    """The latest label of every other reviewer, one value per registry criterion."""
    events = LabelEvent.objects.filter(patch=patch).exclude(reviewer=user).select_related("reviewer")
    latest = latest_per_reviewer(events.order_by("id"))
    return [
        {
            "reviewer": event.reviewer.get_username(),
            "task_broken": event.task_broken,
            "values": [event.subscores.get(c.name, {}).get("human") for c in REGISTRY],
            "final": event.final_score,
            "comment": event.comment,
        }
        for event in latest
    ]


def review_page_data(*, patch: Patch, user: Any, form: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Everything the review page of `patch` shows to `user` (a signed-in reviewer or admin); None until scored.

    `form`: the values a refused submission sent back, so the page shows them instead of the stored label.
    """
    evaluation = current_evaluation(patch)
    if evaluation is None:
        return None
    mine = latest_label(patch_id=patch.pk, reviewer=user)
    seat = Claim.objects.filter(patch=patch, reviewer=user, done_at__isnull=True).first()
    # Blind labelling: the others' labels stay hidden until this reviewer's own label is in. An admin who
    # holds no seat on the item is not labelling it and may look.
    reveal = mine is not None or (seat is None and has_role(user, "admin"))
    others = _others_labels(patch, user) if reveal else []
    findings = [
        finding
        for critic in REGISTRY
        for finding in findings_of(
            critic.name, critic.label, (evaluation.subscores.get(critic.name) or {}).get("evidence") or {}
        )
    ]
    files, omitted = render_diff(patch.diff, findings)
    profile, weights = active_weights()
    return {
        "patch": patch,
        "evaluation": evaluation,
        "criteria": _criteria_rows(evaluation, mine, form),
        "files": files,
        "omitted": omitted,
        "mine": mine,
        "seat": seat,
        "can_label": seat is not None or mine is not None,
        "others": others,
        "profile": profile,
        "weights": dict(weights.weights),
        "comment": form["comment"] if form else (mine.comment if mine else ""),
        "opened_at": form["opened_at"] if form else time.time(),
        "labels_per_item": labels_per_item(patch.task),
    }


def labels_per_item(task: Task) -> int:
    """How many distinct reviewers label each queued patch of `task` (the spec's `labels_per_item`, default 1)."""
    try:
        return max(1, int(task.spec.get("labels_per_item") or 1))
    except (TypeError, ValueError):
        return 1
