"""Weight profiles: immutable versions, activation with re-aggregation, the what-if, the fit to human labels.

Everything here re-scores stored subscores through scoring.core.pipeline.build_result, the function that scores
a fresh patch, so the what-if, an activation and a new patch can never disagree. No critic runs again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Prefetch, Q
from django.utils import timezone

from labeling.models import LabelEvent
from labeling.selectors import held_exprs, human_consensus
from scoring import queueing
from scoring.conf import pipeline_settings
from scoring.core import tuning as tuning_math
from scoring.core.aggregate.shaping import SHAPINGS
from scoring.core.types import PipelineSettings, Weights
from scoring.models import JUDGED_STATUSES, Evaluation, ReaggregationJob, WeightAudit, WeightProfile
from scoring.models import PatchStatus as S
from scoring.selectors import weights_of
from scoring.services import (
    Conflict,
    ServiceError,
    current_evaluations,
    evaluation_fields,
    patch_transition,
    queue_move,
    rebuild,
)

log = logging.getLogger(__name__)

Job = ReaggregationJob.Status
MAX_LAST_N = 5000
RACE = "another profile was activated at the same moment; reload and try again"


# --- validation and versions ------------------------------------------------------------------------------


class WeightsInvalid(ServiceError):
    """A proposed profile that breaks a rule; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors.items()), errors=errors)
        self.errors = errors


def proposal_validate(
    *,
    name: str,
    weights: Mapping[str, Any],
    band_low: Any,
    band_high: Any,
    audit_rate: Any,
    perf_knots: Any,
    shaping: Any = "sum",
    version: int = 0,
) -> Weights:
    """The pure Weights of a proposed profile, weights normalised to sum to 1. Raises WeightsInvalid.

    Rules: one non-negative weight per registry criterion, summing to more than 0; 0 <= band_low <= band_high
    <= 1; audit rate in [0, 1]; performance knots with increasing ratios and non-increasing scores; a shaping
    named in scoring.core.aggregate.shaping.SHAPINGS.
    """
    errors: dict[str, str] = {}
    if not isinstance(name, str) or not re.fullmatch(r"[-a-zA-Z0-9_]{1,50}", name):
        errors["name"] = "letters, digits, '-' and '_' only, at most 50"
    clean = tuning_math.clean_weights(weights, errors)
    low, high, rate = tuning_math.number(band_low), tuning_math.number(band_high), tuning_math.number(audit_rate)
    if low is None or high is None or not 0 <= low <= high <= 1:
        errors["band"] = "need 0 <= low <= high <= 1"
    if rate is None or not 0 <= rate <= 1:
        errors["audit_rate"] = "need a rate in [0, 1]"
    knots = tuning_math.clean_knots(perf_knots, errors)
    if shaping not in SHAPINGS:
        errors["shaping"] = f"choose one of {', '.join(SHAPINGS)}"
    if errors:
        raise WeightsInvalid(errors)
    return Weights(
        name=name,
        version=version,
        weights=clean,
        band_low=low,  # type: ignore[arg-type]  # checked by proposal_check before use
        band_high=high,  # type: ignore[arg-type]  # checked by proposal_check before use
        audit_rate=rate,  # type: ignore[arg-type]  # checked by proposal_check before use
        perf_knots=knots,
        shaping=shaping,
    )


def _columns(weights: Weights) -> dict[str, Any]:
    """The stored (JSON-friendly) columns of a profile, from its pure Weights."""
    return {
        "weights": dict(weights.weights),
        "band_low": weights.band_low,
        "band_high": weights.band_high,
        "audit_rate": weights.audit_rate,
        "perf_knots": [list(k) for k in weights.perf_knots],
        "shaping": weights.shaping,
    }


def profile_fields(profile: WeightProfile) -> dict[str, Any]:
    """The editable fields of a stored version, in the shape proposal_validate takes."""
    return {"name": profile.name, **_columns(weights_of(profile))}


def proposal_from(data: Mapping[str, Any], *, base: WeightProfile) -> Weights:
    """Validate a proposal whose missing fields are taken from `base`, the version being edited."""
    fields = profile_fields(base)
    fields.update({key: value for key, value in data.items() if key in fields and value is not None})
    return proposal_validate(**fields)


def _changes(previous: WeightProfile | None, proposal: Weights) -> dict[str, Any]:
    """What a new version changes against the previous one of its name: field -> [old, new]."""
    old = _columns(weights_of(previous)) if previous is not None else {}
    return {key: [old.get(key), value] for key, value in _columns(proposal).items() if old.get(key) != value}


def profile_create_version(
    *,
    name: str,
    weights: Mapping[str, Any],
    band_low: Any,
    band_high: Any,
    audit_rate: Any,
    perf_knots: Any,
    actor: Any,
    shaping: Any = "sum",
    note: str = "",
) -> WeightProfile:
    """Store a validated proposal as the next version of profile `name` (1 for a new name), with an audit row.

    Stored versions are never edited: a change is always a new version, so every Evaluation's version still
    says exactly which weights produced it. Raises WeightsInvalid on a bad proposal.
    """
    proposal = proposal_validate(
        name=name,
        weights=weights,
        band_low=band_low,
        band_high=band_high,
        audit_rate=audit_rate,
        perf_knots=perf_knots,
        shaping=shaping,
    )
    for _ in range(3):
        previous = WeightProfile.objects.filter(name=name).order_by("-version").first()
        try:
            with transaction.atomic():
                profile = WeightProfile.objects.create(
                    name=name,
                    version=previous.version + 1 if previous else 1,
                    **_columns(proposal),
                    created_by=actor,
                    note=note[:200],
                )
                WeightAudit.objects.create(
                    profile=profile,
                    actor=actor,
                    action="created",
                    detail={"changes": _changes(previous, proposal), "note": note[:200]},
                )
            return profile
        except IntegrityError:
            continue  # another admin saved this name at the same moment: take the next number
    raise Conflict(f"could not store a new version of {name!r}; try again")


# --- activation and re-aggregation ------------------------------------------------------------------------


def profile_activate(*, profile: WeightProfile, actor: Any) -> ReaggregationJob:
    """Make `profile` the active one and start re-aggregating every current Evaluation under it.

    Compare-and-set: the previously active row is switched off only if it is still active, and the unique
    constraint refuses a second active row, so two simultaneous activations cannot both win (the loser gets
    Conflict). Activating the active profile again re-runs its re-aggregation (a safe retry). Rolling back is
    activating an earlier version. Patches scored from now on use `profile` straight away.
    """
    with transaction.atomic():
        previous = WeightProfile.objects.filter(is_active=True).first()
        switched_off = (
            previous is None
            or previous.pk == profile.pk
            or WeightProfile.objects.filter(pk=previous.pk, is_active=True).update(is_active=False) == 1
        )
        if not switched_off:
            raise Conflict(RACE)
        try:
            with transaction.atomic():
                WeightProfile.objects.filter(pk=profile.pk).update(is_active=True)
        except IntegrityError as exc:
            raise Conflict(RACE) from exc
        job = ReaggregationJob.objects.create(profile=profile, requested_by=actor)
        WeightAudit.objects.create(
            profile=profile,
            actor=actor,
            action="activated",
            detail={"previous": str(previous) if previous else None, "job": job.pk},
        )
        transaction.on_commit(lambda: reaggregation_enqueue(job=job))
    profile.is_active = True
    return job


def reaggregation_enqueue(*, job: ReaggregationJob) -> None:
    """Send the job to a worker. A broker outage fails the job with a message (activating again retries)."""
    try:
        queueing.send(queueing.REAGGREGATE, job.profile_id, job.pk)
    except Exception as exc:  # kombu raises many types for a dead broker; the page must say so, not crash
        log.warning("could not enqueue re-aggregation job %s", job.pk, exc_info=True)
        ReaggregationJob.objects.filter(pk=job.pk, status=Job.PENDING).update(
            status=Job.FAILED,
            error=f"could not reach the task queue ({type(exc).__name__}); activate again to retry",
            finished_at=timezone.now(),
        )


def _reaggregate_one(
    evaluation: Evaluation, profile: WeightProfile, weights: Weights, settings: PipelineSettings, now: Any
) -> str | None:
    """Re-build one Evaluation under `profile` and re-route its patch: "entered", "left", "held" or None."""
    fields = evaluation_fields(rebuild(evaluation, weights, settings), profile)
    patch = evaluation.patch
    outcome = None
    move = queue_move(patch.status, fields["route"], held=False)
    if move == S.NEEDS_REVIEW and patch_transition(patch_id=patch.pk, source=(S.SCORED,), target=S.NEEDS_REVIEW):
        outcome = "entered"
    elif move == S.SCORED:
        claimed, labelled = held_exprs(now, "pk")
        # The hold is checked in the same UPDATE that moves the patch, so a claim taken a moment ago wins.
        if patch_transition(patch_id=patch.pk, source=(S.NEEDS_REVIEW,), target=S.SCORED, extra=Q(~claimed, ~labelled)):
            outcome = "left"
        else:
            outcome = "held"
            # It stays in the queue, so its route must still say so (route_for, given `held`).
            fields = evaluation_fields(rebuild(evaluation, weights, settings, held=True), profile)
    Evaluation.objects.filter(pk=evaluation.pk).update(**fields, updated_at=now)
    return outcome


def _job_update(job: ReaggregationJob | None, **fields: Any) -> None:
    if job is not None:
        ReaggregationJob.objects.filter(pk=job.pk).update(**fields, updated_at=timezone.now())


def reaggregate(*, profile: WeightProfile, job: ReaggregationJob | None = None, batch_size: int = 200) -> dict:
    """Re-build every current Evaluation under `profile` from its stored subscores, then re-route the patches.

    Runs in batches, one transaction each, recording progress on `job`. Each batch first locks the profile row
    and checks it is still active, so a job overtaken by another activation stops (status `superseded`) and
    never writes over the newer job's work. Safe to call twice: a second run moves nothing.
    Returns the counts: processed, entered, left, held.
    """
    weights = weights_of(profile)
    settings = pipeline_settings()
    evaluations = current_evaluations().order_by("pk")
    counts = {"processed": 0, "entered": 0, "left": 0, "held": 0}
    _job_update(job, status=Job.RUNNING, total=evaluations.count(), error="")
    last_pk = 0
    while True:
        with transaction.atomic():
            still_active = WeightProfile.objects.select_for_update().filter(pk=profile.pk, is_active=True).exists()
            if not still_active:
                _job_update(job, status=Job.SUPERSEDED, finished_at=timezone.now(), **counts)
                return counts
            batch = list(evaluations.filter(pk__gt=last_pk)[:batch_size])
            now = timezone.now()
            for evaluation in batch:
                outcome = _reaggregate_one(evaluation, profile, weights, settings, now)
                if outcome:
                    counts[outcome] += 1
        if not batch:
            break
        counts["processed"] += len(batch)
        last_pk = batch[-1].pk
        _job_update(job, **counts)
    _job_update(job, status=Job.DONE, finished_at=timezone.now(), **counts)
    return counts


def job_fail(*, job: ReaggregationJob, error: str) -> None:
    """Record why a job stopped; its finished batches stay done, and activating again finishes the rest."""
    _job_update(job, status=Job.FAILED, error=error[:2000], finished_at=timezone.now())


# --- what-if -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhatIf:
    """What activating a proposal would do to the last `n` scored patches."""

    n: int
    bins: tuple[str, ...]
    now: list[int]  # tuning_math.histogram of the stored final scores
    proposed: list[int]  # tuning_math.histogram of the final scores under the proposal
    unscored_now: int  # final score null (correctness not measured)
    unscored_proposed: int
    changed: int  # patches whose final score would change
    entering: int  # scored -> needs_review
    leaving: int  # needs_review -> scored
    held: int  # would leave, but someone claimed or labelled it
    labelled: int  # patches with a human final score
    distance_now: float | None  # mean |final - human final| over labelled patches
    distance_proposed: float | None


def _recent(last_n: int, now: Any) -> list[Evaluation]:
    """The current evaluations of the last `last_n` scored patches, with hold and labels prefetched."""
    claimed, labelled = held_exprs(now, "patch_id")
    queryset = (
        current_evaluations()
        .filter(patch__status__in=JUDGED_STATUSES)
        .annotate(claimed=claimed, labelled=labelled)
        .prefetch_related(
            Prefetch("patch__label_events", queryset=LabelEvent.objects.order_by("id"), to_attr="label_list")
        )
        .order_by("-patch_id")
    )
    return list(queryset[: max(1, min(last_n, MAX_LAST_N))])


def what_if(*, proposed: Weights, last_n: int = 500) -> WhatIf:
    """Distribution of final scores now vs under `proposed`, queue moves and distance to human labels.

    Uses the same re-build and the same queue rule as reaggregate, so over the same patches the counts are
    exactly what activating the proposal then does.
    """
    settings = pipeline_settings()
    now = timezone.now()
    stored, new = [], []
    moves = {"entering": 0, "leaving": 0, "held": 0}
    human_pairs_now, human_pairs_new = [], []
    for evaluation in _recent(last_n, now):
        result = rebuild(evaluation, proposed, settings)
        final = result["final_score"]
        stored.append(evaluation.final_score)
        new.append(final)
        status, route = evaluation.patch.status, result["route"]
        if queue_move(status, route, held=False) == S.NEEDS_REVIEW:
            moves["entering"] += 1
        elif queue_move(status, route, held=False) == S.SCORED:
            held = evaluation.claimed or evaluation.labelled  # type: ignore[attr-defined]  # annotated in _recent
            moves["held" if held else "leaving"] += 1
        human = human_consensus(evaluation.patch, dict(proposed.weights))
        if human is not None and human["final_score"] is not None:
            human_pairs_now.append((evaluation.final_score, human["final_score"]))
            human_pairs_new.append((final, human["final_score"]))
    now_counts, now_null = tuning_math.histogram(stored)
    new_counts, new_null = tuning_math.histogram(new)
    return WhatIf(
        n=len(stored),
        bins=tuning_math.BINS,
        now=now_counts,
        proposed=new_counts,
        unscored_now=now_null,
        unscored_proposed=new_null,
        changed=sum(a != b for a, b in zip(stored, new, strict=True)),
        labelled=len(human_pairs_new),
        distance_now=tuning_math.mean_distance(human_pairs_now),
        distance_proposed=tuning_math.mean_distance(human_pairs_new),
        **moves,
    )


# --- the fit to human labels -------------------------------------------------------------------------------


def labelled_rows(*, weights: Weights, last_n: int = MAX_LAST_N) -> list[tuning_math.Row]:
    """(subscores re-scored under `weights`, human final score) of recently labelled patches with correctness
    measured: the data the fit and its error are computed on."""
    settings = pipeline_settings()
    rows: list[tuning_math.Row] = []
    for evaluation in _recent(last_n, timezone.now()):
        human = human_consensus(evaluation.patch, dict(weights.weights))
        if human is None or human["final_score"] is None:
            continue
        subscores = rebuild(evaluation, weights, settings)["subscores"]
        scores = {name: sub["score"] for name, sub in subscores.items()}
        if scores.get("correctness") is not None:
            rows.append((scores, human["final_score"]))
    return rows


@dataclass(frozen=True)
class FitReport:
    """The fitted weights next to the error of the weights the admin is looking at, on the same labels."""

    fit: tuning_math.Fit
    current_rmse: float
    current_mae: float


def fit_to_labels(*, proposed: Weights, last_n: int = MAX_LAST_N) -> FitReport:
    """Fit weights to the human labels (performance re-scored through the proposal's knots). Nothing is saved.

    Raises ServiceError when no labelled patch has a measured correctness.
    """
    rows = labelled_rows(weights=proposed, last_n=last_n)
    if not rows:
        raise ServiceError("no labelled patches with a measured correctness yet: nothing to fit", status=409)
    current_rmse, current_mae = tuning_math.fit_error(rows, proposed.weights)
    return FitReport(fit=tuning_math.fit_weights(rows), current_rmse=current_rmse, current_mae=current_mae)
