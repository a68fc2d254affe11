"""Demo labels made under the `demo` reviewer, marked as demo so exports leave them out unless asked."""

from __future__ import annotations

from typing import Any

from labeling.models import LabelEvent
from labeling.services import mark_reviewed_when_complete
from scoring import selectors
from scoring.core.aggregate.route import weighted_mean
from scoring.models import Patch


def demo_label(*, patch: Patch, reviewer: Any, kind: str) -> int:
    """Label a demo patch once: a good patch keeps its automatic scores, a bad one gets correctness 0.

    Returns 1 when a label was added, 0 when the reviewer had labelled it already (idempotent).
    """
    if LabelEvent.objects.filter(patch=patch, reviewer=reviewer).exists():
        return 0
    evaluation = selectors.current_evaluation(patch)
    if evaluation is None:
        return 0
    profile, weights = selectors.active_weights()
    subscores = {}
    for name, sub in evaluation.subscores.items():
        human = sub["score"]
        if kind == "bad" and name == "correctness":
            human = 0.0
        subscores[name] = {"auto": sub["score"], "human": human, "note": "demo label"}
    LabelEvent.objects.create(
        patch=patch,
        reviewer=reviewer,
        subscores=subscores,
        final_score=weighted_mean({n: s["human"] for n, s in subscores.items()}, weights.weights),
        weight_profile_version=profile.version,
        comment="Demo label: " + ("the fix looks right." if kind == "good" else "this does not fix the bug."),
        time_spent_s=30.0,
        is_demo=True,
    )
    mark_reviewed_when_complete(patch)
    return 1
