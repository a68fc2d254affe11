"""Test data for the weights tests, written with scoring.models directly: tasks, scored patches, labels, claims.

Evaluations are built through the real scoring path (build_result) under the active profile, so the stored
rows look exactly like what a worker writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.utils import timezone

from labeling.models import Claim, LabelEvent
from scoring.conf import pipeline_settings
from scoring.core.critics.registry import BY_NAME
from scoring.core.pipeline import PIPELINE_VERSION, build_result
from scoring.core.types import CriticResult
from scoring.models import Evaluation, Patch, PatchStatus, Task
from scoring.selectors import active_weights
from scoring.services import evaluation_fields
from tuning import services as svc

#: The registry defaults, spelled out so a test sees the numbers it depends on.
DEFAULT = {"correctness": 0.4, "style": 0.2, "performance": 0.2, "security": 0.2}
KNOTS = [[1.05, 1.0], [1.3, 0.4], [2.0, 0.0]]


def new_version(actor, name: str = "test", **changes):
    """Store a version of `name`: the default weights, band [0.5, 0.7], no audit sample, unless changed."""
    fields = {
        "name": name,
        "weights": dict(DEFAULT),
        "band_low": 0.5,
        "band_high": 0.7,
        "audit_rate": 0.0,
        "perf_knots": KNOTS,
    }
    fields.update(changes)
    return svc.profile_create_version(actor=actor, **fields)


def make_task(name: str = "gcd") -> Task:
    task, _ = Task.objects.get_or_create(
        name=name,
        defaults={
            "spec": {"name": name, "test_command": "python -m pytest -q tests", "timeout_s": 60},
            "base_sha256": hashlib.sha256(name.encode()).hexdigest(),
        },
    )
    return task


def perf_evidence(ratio: float) -> dict[str, Any]:
    """Benchmark statistics as the performance critic stores them: a tight interval around `ratio`."""
    return {
        "command": "python bench/run.py",
        "metric": "wall",
        "base_median_s": 0.05,
        "patched_median_s": 0.05 * ratio,
        "ratio": ratio,
        "ci_low": ratio * 0.99,
        "ci_high": ratio * 1.01,
        "confidence_level": 0.95,
        "p_value": 1e-5 if abs(ratio - 1) > 0.05 else 0.5,
        "claim_alpha": 0.001,
        "n_base": 9,
        "n_patched": 9,
    }


def critic_result(name: str, score: float | None, *, weights=None, ratio: float | None = None) -> CriticResult:
    """A stored-shape subscore. Performance with `ratio` is judged by the critic itself under `weights`."""
    if name == "performance" and ratio is not None:
        raw = CriticResult(name, None, 0.9, ("Step: benchmark ran.", "Step: verdict."), perf_evidence(ratio))
        return BY_NAME[name].rescore(raw, weights or active_weights()[1])
    return CriticResult(name, score, 0.95, (f"Step: {name} checked. Score {score}.",), {"checked": True})


def make_scored_patch(
    scores: Mapping[str, float | None],
    *,
    ratio: float | None = None,
    status: str | None = None,
    task: Task | None = None,
) -> Patch:
    """A finished patch with its current Evaluation, scored under the active profile (status from the route
    unless `status` is given). `scores` has one entry per criterion except performance when `ratio` is set."""
    task = task or make_task()
    profile, weights = active_weights()
    results = {name: critic_result(name, score) for name, score in scores.items()}
    if ratio is not None:
        results["performance"] = critic_result("performance", None, weights=weights, ratio=ratio)
    serial = Patch.objects.count() + 1  # deterministic per test, so audit sampling is too
    diff = f"--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 0\n+x = {serial}\n"
    sha = hashlib.sha256(diff.encode()).hexdigest()
    meta = {"pipeline_version": PIPELINE_VERSION, "sandbox": "bwrap", "timings_s": {}, "tools": {}}
    result = build_result(
        task_name=task.name, results=results, weights=weights, settings=pipeline_settings(), audit_key=sha, meta=meta
    )
    routed = PatchStatus.SCORED if result["route"] == "auto" else PatchStatus.NEEDS_REVIEW
    patch = Patch.objects.create(
        task=task, diff=diff, diff_sha256=sha, status=status or routed, finished_at=timezone.now()
    )
    Evaluation.objects.create(patch=patch, pipeline_version=PIPELINE_VERSION, **evaluation_fields(result, profile))
    return patch


def make_label(patch: Patch, reviewer: Any, *, final: float, human: Mapping[str, float] | None = None) -> LabelEvent:
    """A reviewer's label with a human final score (and, optionally, corrected subscores)."""
    auto = patch.evaluations.get().subscores
    subscores = {
        name: {"auto": sub["score"], "human": (human or {}).get(name, sub["score"]), "note": ""}
        for name, sub in auto.items()
    }
    return LabelEvent.objects.create(patch=patch, reviewer=reviewer, subscores=subscores, final_score=final)


def make_claim(patch: Patch, reviewer: Any, *, live: bool = True) -> Claim:
    lease = timezone.now() + timedelta(minutes=10 if live else -10)
    return Claim.objects.create(patch=patch, reviewer=reviewer, lease_until=lease)
