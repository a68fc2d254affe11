"""Factories for review-queue data: tasks, patches and their evaluations, built with the real models."""

from __future__ import annotations

import hashlib
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from scoring.core.critics.registry import CRITERIA
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.models import Evaluation, Patch, PatchStatus, Task
from scoring.selectors import active_weights
from scoring.services import confidence_fields

SAMPLE_DIFF = """\
diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,4 +1,5 @@
 def gcd(a, b):
-    while b:
-        a, b = b, a % b
+    import os
+    while b != 0:
+        a, b = b, a % b  # "euclid"
     return a
"""


class TaskFactory(DjangoModelFactory):
    class Meta:
        model = Task

    name = factory.Sequence(lambda n: f"task-{n}")
    spec = factory.LazyAttribute(
        lambda o: {"name": o.name, "test_command": "python -m pytest -q tests", "labels_per_item": 1}
    )
    base_sha256 = "0" * 64


class PatchFactory(DjangoModelFactory):
    class Meta:
        model = Patch

    task = factory.SubFactory(TaskFactory)
    diff = SAMPLE_DIFF
    diff_sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.diff.encode()).hexdigest())
    status = PatchStatus.NEEDS_REVIEW
    finished_at = factory.LazyFunction(timezone.now)


def subscore(name: str, score: float | None = 0.6, confidence: float = 0.8, **evidence: Any) -> dict[str, Any]:
    """A stored subscore in the Result's shape, with evidence the review page knows how to show."""
    return {
        "score": score,
        "confidence": confidence,
        "rationale": [f"Step: {name} check. Score {score}."],
        "evidence": evidence,
        "flags": [],
    }


def default_evidence(name: str) -> dict[str, Any]:
    """Evidence shaped like each critic stores it: failing tests with output, findings with file and line,
    benchmark runs."""
    return {
        "correctness": {
            "failing": [{"name": "tests/test_calc.py::test_gcd_zero", "hidden": True, "output": "assert 0 == 5\n"}]
        },
        "style": {
            "introduced": [
                {
                    "file": "calc.py",
                    "line": 2,
                    "id": "C0415",
                    "symbol": "import-outside-toplevel",
                    "message": "Import outside toplevel (os)",
                    "severity": "convention",
                }
            ]
        },
        "performance": {"base_s": [0.050, 0.051, 0.049, 0.050], "patched_s": [0.061, 0.060, 0.063, 0.062]},
    }.get(name, {})


def evaluate(
    patch: Patch,
    *,
    scores: dict[str, float | None] | None = None,
    confidence: float = 0.8,
    route: str = "review",
    flags: list[str] | None = None,
    subscores: dict[str, Any] | None = None,
) -> Evaluation:
    """The patch's evaluation under the current pipeline version and the active weight profile."""
    from scoring.core.aggregate.route import weighted_mean

    profile, weights = active_weights()
    scores = {name: 0.6 for name in CRITERIA} | (scores or {})
    stored = {name: subscore(name, scores[name], confidence, **default_evidence(name)) for name in CRITERIA}
    stored.update(subscores or {})
    return Evaluation.objects.create(
        patch=patch,
        pipeline_version=PIPELINE_VERSION,
        subscores=stored,
        final_score=weighted_mean({n: s["score"] for n, s in stored.items()}, weights.weights),
        weight_profile=profile,
        route=route,
        flags=flags or [],
        **confidence_fields(stored),
    )


def queued_patch(
    *, confidence: float = 0.8, labels_per_item: int = 1, task: Task | None = None, **kwargs: Any
) -> Patch:
    """A patch waiting for review, with its evaluation. `labels_per_item` applies to a new task."""
    if task is None:
        task = TaskFactory(spec={"name": "t", "test_command": "pytest", "labels_per_item": labels_per_item})
    evaluation_kwargs = {k: kwargs.pop(k) for k in ("scores", "route", "flags", "subscores") if k in kwargs}
    patch = PatchFactory(task=task, **kwargs)
    evaluate(patch, confidence=confidence, **evaluation_kwargs)
    return patch
