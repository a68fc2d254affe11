"""Export test data built with the real models: tasks, scored patches with evaluations, label events."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from exports.services import VAL_SHARE, _bucket
from labeling.models import LabelEvent
from scoring.core.aggregate.route import weighted_mean
from scoring.core.critics.registry import CRITERIA
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.models import Evaluation, Patch, PatchStatus, Task
from scoring.selectors import active_weights
from scoring.services import confidence_fields


def diff_for(n: int) -> str:
    """A small, distinct diff (patch `n`)."""
    return (
        f"--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b + {n}\n"
    )


def make_task(name: str, *, is_demo: bool = False) -> Task:
    spec = {"name": name, "test_command": "python -m pytest -q tests", "hidden_test_command": "pytest -q hidden"}
    return Task.objects.create(name=name, spec=spec, base_sha256="0" * 64, is_demo=is_demo)


def stored_subscores(scores: dict[str, float | None], confidence: float = 0.9) -> dict[str, Any]:
    """Subscores shaped like the pipeline stores them, hidden test names included (reviewers see them)."""
    return {
        name: {
            "score": score,
            "confidence": confidence,
            "rationale": [f"Step: {name}. Score {score}."],
            "evidence": {"hidden": {"failed": ["hidden/test_secret.py::test_overflow"], "passed": 2}}
            if name == "correctness"
            else {},
            "flags": [],
        }
        for name, score in scores.items()
    }


def evaluation_for(
    patch: Patch, *, scores: dict[str, float | None], confidence: float, route: str, active: Any = None
) -> Evaluation:
    """An unsaved Evaluation of `patch` under the current pipeline version and the active weight profile."""
    profile, weights = active or active_weights()
    stored = stored_subscores(scores, confidence)
    return Evaluation(
        patch=patch,
        pipeline_version=PIPELINE_VERSION,
        subscores=stored,
        final_score=weighted_mean(scores, weights.weights),
        weight_profile=profile,
        route=route,
        flags=[],
        comments="The tools found nothing to act on.",
        meta={"pipeline_version": PIPELINE_VERSION, "tools": {"pylint": "3.3.0", "bandit": "1.8.0"}},
        **confidence_fields(stored),
    )


def make_patch(
    task: Task,
    n: int = 0,
    *,
    scores: dict[str, float | None] | None = None,
    status: str = PatchStatus.NEEDS_REVIEW,
    confidence: float = 0.9,
    route: str = "review",
    is_demo: bool = False,
) -> Patch:
    """A finished patch with its evaluation (measured scores default to 0.6 everywhere)."""
    diff = diff_for(n)
    patch = Patch.objects.create(
        task=task, diff=diff, diff_sha256=hashlib.sha256(diff.encode()).hexdigest(), status=status, is_demo=is_demo
    )
    scores = {name: 0.6 for name in CRITERIA} | (scores or {})
    evaluation_for(patch, scores=scores, confidence=confidence, route=route).save()
    return patch


def label_subscores(human: dict[str, float | None]) -> dict[str, Any]:
    return {name: {"auto": 0.6, "human": human.get(name), "note": ""} for name in CRITERIA}


def make_label(
    patch: Patch,
    reviewer: Any,
    human: dict[str, float | None],
    *,
    comment: str = "",
    final: float | None = None,
    is_demo: bool = False,
    task_broken: bool = False,
    supersedes: LabelEvent | None = None,
    created_at: datetime | None = None,
) -> LabelEvent:
    """A label event as labeling.services writes it; `created_at` back-dates it."""
    _, weights = active_weights()
    event = LabelEvent.objects.create(
        patch=patch,
        reviewer=reviewer,
        supersedes=supersedes,
        subscores=label_subscores(human),
        final_score=final if final is not None else weighted_mean(human, weights.weights),
        comment=comment,
        is_demo=is_demo,
        task_broken=task_broken,
    )
    if created_at is not None:
        LabelEvent.objects.filter(pk=event.pk).update(created_at=created_at)
        event.refresh_from_db()
    return event


def bulk_labelled(task: Task, reviewer: Any, count: int, *, start: int = 0) -> None:
    """`count` labelled patches of `task` in a few queries, for the volume tests."""
    patches = Patch.objects.bulk_create(
        Patch(task=task, diff=diff_for(n), diff_sha256=str(n), status=PatchStatus.REVIEWED)
        for n in range(start, start + count)
    )
    scores, active = {name: 0.5 for name in CRITERIA}, active_weights()
    Evaluation.objects.bulk_create(
        evaluation_for(p, scores=scores, confidence=0.9, route="review", active=active) for p in patches
    )
    LabelEvent.objects.bulk_create(
        LabelEvent(patch=p, reviewer=reviewer, subscores=label_subscores({"correctness": 0.7}), final_score=0.7)
        for p in patches
    )


def two_sided_tasks():
    """Task names whose hashes put one in val and one in train on their own (no rebalancing involved)."""
    names = [f"task{i}" for i in range(200)]
    val = next(n for n in names if _bucket(n) < VAL_SHARE)
    train = next(n for n in names if _bucket(n) >= VAL_SHARE)
    return val, train
