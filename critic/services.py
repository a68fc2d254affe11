"""The learned critic's view on a scored patch, recorded next to what the tools measured. Never instead of it.

The critic (scoring.core.learned.model.CriticModel) reads the same prompt an `sft` export holds
(scoring.selectors.critic_input -> build_messages). Its view is recorded per criterion under
`evidence["critic"]` and in `meta["critic"]`; the measured scores, the final score and the tools' flags stay as
they are. When it disagrees with a measured subscore by more than DISAGREE_MARGIN, the evaluation gets the flag
`critic_disagrees`, its queue priority confidence (`min_confidence`) drops to 1 - the largest difference, and a
patch that was auto-accepted goes to review. The subscores' own `confidence` is left alone: it is part of the
critic's prompt, and changing it would make a later export differ from what the critic saw.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from labeling.models import CriticRun
from scoring import services
from scoring.conf import pipeline_settings
from scoring.core.aggregate.route import Route
from scoring.core.learned.model import MODEL_ENV, CriticModel
from scoring.core.learned.prompt import CRITIC_EVIDENCE_KEY
from scoring.core.learned.verdict import Verdict, VerdictError
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.models import Evaluation, Patch, PatchStatus
from scoring.selectors import critic_input, tools_comments, weights_of

log = logging.getLogger(__name__)

#: The critic disagrees with a measured subscore when they differ by more than this (on the 0..1 scale).
DISAGREE_MARGIN = 0.3

_critic: CriticModel | None = None
_loaded = False


def critic_configured() -> bool:
    """True when REVIEWAPP_CRITIC_MODEL names a model (settings.REVIEWAPP["CRITIC_MODEL"])."""
    return bool(str(settings.REVIEWAPP.get("CRITIC_MODEL") or "").strip())


def worker_critic() -> CriticModel | None:
    """The critic of this worker process, loaded once on first use; None when no model is configured.

    A configured folder that is not a model raises ValueError (naming the variable), every time it is asked for:
    a typo must not silently turn the critic off.
    """
    global _critic, _loaded
    if not _loaded:
        _critic = CriticModel.from_env({MODEL_ENV: str(settings.REVIEWAPP.get("CRITIC_MODEL") or "")})
        _loaded = True
    return _critic


def review_bound(patch: Patch, evaluation: Evaluation) -> bool:
    """Patches the critic looks at: those going to review, and those with a subscore still in doubt."""
    if patch.status == PatchStatus.NEEDS_REVIEW or evaluation.route != Route.AUTO:
        return True
    return bool(evaluation.doubt)


def wants_review(patch_id: int) -> bool:
    """True when the patch has a current evaluation and is review-bound: worth a message to the critic queue."""
    patch = Patch.objects.filter(pk=patch_id).only("status").first()
    evaluation = _current(patch_id)
    return patch is not None and evaluation is not None and review_bound(patch, evaluation)


def critic_review_patch(*, patch_id: int, critic: CriticModel) -> str:
    """Judge one patch with `critic` and record its view on the current Evaluation; return what happened.

    Idempotent: a patch this critic already judged is left alone. A verdict that does not parse after the
    critic's retries is recorded as a failure (`meta["critic"]["status"] == "failed"`), never as a number.
    The model runs outside any transaction; the record is written in one, against a fresh read.
    """
    patch = Patch.objects.select_related("task").filter(pk=patch_id).first()
    evaluation = _current(patch_id)
    if patch is None or evaluation is None:
        return "no evaluation"
    if not review_bound(patch, evaluation):
        return "not review-bound"
    model = str(critic.model_dir)
    if (evaluation.meta.get("critic") or {}).get("model") == model:
        return "already judged"
    task, diff, result = critic_input(patch)
    measured = _measured(evaluation.subscores)
    try:
        verdict = critic.review(task=task, diff=diff, result=result)
    except VerdictError as error:
        return _record(patch, evaluation, measured, model=model, verdict=None, error=str(error))
    return _record(patch, evaluation, measured, model=model, verdict=verdict, error="")


def _current(patch_id: int) -> Evaluation | None:
    return Evaluation.objects.filter(patch_id=patch_id, pipeline_version=PIPELINE_VERSION).first()


def _measured(subscores: Mapping[str, Any]) -> dict[str, float | None]:
    return {name: sub.get("score") for name, sub in subscores.items()}


def _record(
    patch: Patch,
    judged: Evaluation,
    measured: dict[str, float | None],
    *,
    model: str,
    verdict: Verdict | None,
    error: str,
) -> str:
    """Write the critic's view (or its failure) onto the evaluation it judged, if that is still current."""
    with transaction.atomic():
        evaluation = Evaluation.objects.select_for_update().filter(pk=judged.pk).first()
        if evaluation is None or _measured(evaluation.subscores) != measured:
            return "stale: the evaluation changed while the critic judged it"
        original = tools_comments(evaluation.meta, evaluation.comments)
        view: dict[str, Any] = {"model": model, "at": timezone.now().isoformat(), "tools_comments": original}
        if verdict is None:
            view.update(status="failed", error=error)
            evaluation.meta = {**evaluation.meta, "critic": view}
            evaluation.save(update_fields=["meta", "updated_at"])
            log.warning("critic %s gave no valid verdict on patch %s: %s", model, patch.pk, error)
            return "failed"
        deltas = _apply_view(evaluation, verdict, model=model)
        disagrees = sorted(name for name, delta in deltas.items() if delta > DISAGREE_MARGIN)
        view.update(
            status="ok",
            subscores=dict(verdict.subscores),
            comment=verdict.comment,
            reasoning=list(verdict.reasoning),
            disagrees=disagrees,
        )
        evaluation.meta = {**evaluation.meta, "critic": view}
        evaluation.comments = f"{original} Critic: {verdict.comment}".strip() if verdict.comment else original
        fields = ["subscores", "meta", "comments", "updated_at"]
        if disagrees:
            # The view is in meta now: the one scoring path gives the flag and the route (scoring.core.aggregate.route).
            result = services.rebuild(evaluation, weights_of(evaluation.weight_profile), pipeline_settings())
            evaluation.flags, evaluation.route = result["flags"], result["route"]
            evaluation.min_confidence = min(evaluation.min_confidence, round(1.0 - max(deltas.values()), 4))
            fields += ["flags", "min_confidence", "route"]
        evaluation.save(update_fields=fields)
        if disagrees:
            services.patch_transition(patch_id=patch.pk, source=(PatchStatus.SCORED,), target=PatchStatus.NEEDS_REVIEW)
    return "disagrees" if disagrees else "agrees"


def _apply_view(evaluation: Evaluation, verdict: Verdict, *, model: str) -> dict[str, float]:
    """Put the critic's score beside each measured subscore (evidence["critic"]); return |critic - measured|."""
    deltas: dict[str, float] = {}
    subscores = {name: dict(sub) for name, sub in evaluation.subscores.items()}
    for name, sub in subscores.items():
        judged = verdict.subscores.get(name)
        score = sub.get("score")
        delta = None if judged is None or score is None else round(abs(judged - score), 4)
        if delta is not None:
            deltas[name] = delta
        sub["evidence"] = {
            **(sub.get("evidence") or {}),
            CRITIC_EVIDENCE_KEY: {"score": judged, "delta": delta, "model": model},
        }
    evaluation.subscores = subscores
    return deltas


def critic_run_record(*, report: dict[str, Any], version: str, data: str) -> CriticRun:
    """Store one evaluation report as a CriticRun."""
    return CriticRun.objects.create(
        version=version,
        model_dir=str(report["model"]),
        data=data,
        rows=report["rows"],
        valid_json_rate=report["valid_json_rate"],
        band_agreement=report["band_agreement"],
        correctness_agreement=report["correctness_agreement"],
        mae=report["mae"],
        metrics=report,
    )
