"""Weight profiles: immutable versions, activation with re-aggregation, the what-if, the fit to human labels.

Everything here re-scores stored subscores through scoring.core.pipeline.build_result, the function that scores
a fresh patch, so the what-if, an activation and a new patch can never disagree. No critic runs again.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone
from scipy.optimize import minimize

from labeling.models import Claim, LabelEvent
from labeling.selectors import human_consensus
from scoring.conf import pipeline_settings
from scoring.core.aggregate import Route, weighted_mean
from scoring.core.pipeline import PIPELINE_VERSION, build_result
from scoring.core.registry import BY_NAME, CRITERIA
from scoring.core.shaping import SHAPINGS
from scoring.core.types import CriticResult, PipelineSettings, Weights
from scoring.models import JUDGED_STATUSES, Evaluation, ReaggregationJob, WeightAudit, WeightProfile
from scoring.models import PatchStatus as S
from scoring.selectors import weights_of
from scoring.services import Conflict, ServiceError, evaluation_fields, patch_transition

log = logging.getLogger(__name__)

Job = ReaggregationJob.Status
#: Statuses whose patches have a current Evaluation worth showing in the what-if.
#: Histogram of final scores: ten bins of 0.1; 1.0 falls in the last one.
BINS = tuple(f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10))
MAX_LAST_N = 5000
RACE = "another profile was activated at the same moment; reload and try again"


# --- validation and versions ------------------------------------------------------------------------------


class WeightsInvalid(ServiceError):
    """A proposed profile that breaks a rule; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors.items()), errors=errors)
        self.errors = errors


def _number(value: Any) -> float | None:
    """A finite float from a number or numeric text; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _clean_weights(weights: Any, errors: dict[str, str]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or set(weights) != set(CRITERIA):
        errors["weights"] = f"give exactly one weight per criterion: {', '.join(CRITERIA)}"
        return {}
    values = {name: _number(weights[name]) for name in CRITERIA}
    if any(value is None or value < 0 for value in values.values()):
        errors["weights"] = "every weight must be a number >= 0"
        return {}
    total = sum(values.values())  # type: ignore[arg-type]
    if total <= 0:
        errors["weights"] = "at least one weight must be above 0"
        return {}
    return {name: round(value / total, 6) for name, value in values.items()}  # type: ignore[operator]


def _clean_knots(knots: Any, errors: dict[str, str]) -> tuple[tuple[float, float], ...]:
    problem = "give at least two [ratio, score] pairs, ratios > 0 and increasing, scores in [0, 1] not increasing"
    try:
        pairs = tuple((_number(ratio), _number(score)) for ratio, score in knots)
    except (TypeError, ValueError):
        errors["perf_knots"] = problem
        return ()
    ok = len(pairs) >= 2 and all(r is not None and s is not None and r > 0 and 0 <= s <= 1 for r, s in pairs)
    ok = ok and all(a[0] < b[0] and a[1] >= b[1] for a, b in itertools.pairwise(pairs))
    if not ok:
        errors["perf_knots"] = problem
        return ()
    return pairs  # type: ignore[return-value]


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
    named in scoring.core.shaping.SHAPINGS.
    """
    errors: dict[str, str] = {}
    if not isinstance(name, str) or not re.fullmatch(r"[-a-zA-Z0-9_]{1,50}", name):
        errors["name"] = "letters, digits, '-' and '_' only, at most 50"
    clean = _clean_weights(weights, errors)
    low, high, rate = _number(band_low), _number(band_high), _number(audit_rate)
    if low is None or high is None or not 0 <= low <= high <= 1:
        errors["band"] = "need 0 <= low <= high <= 1"
    if rate is None or not 0 <= rate <= 1:
        errors["audit_rate"] = "need a rate in [0, 1]"
    knots = _clean_knots(perf_knots, errors)
    if shaping not in SHAPINGS:
        errors["shaping"] = f"choose one of {', '.join(SHAPINGS)}"
    if errors:
        raise WeightsInvalid(errors)
    return Weights(
        name=name,
        version=version,
        weights=clean,
        band_low=low,  # type: ignore[arg-type]
        band_high=high,  # type: ignore[arg-type]
        audit_rate=rate,  # type: ignore[arg-type]
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
    from scoring.tasks import reaggregate as reaggregate_task

    try:
        reaggregate_task.apply_async((job.profile_id, job.pk))
    except Exception as exc:  # kombu raises many types for a dead broker; the page must say so, not crash
        log.warning("could not enqueue re-aggregation job %s", job.pk, exc_info=True)
        ReaggregationJob.objects.filter(pk=job.pk, status=Job.PENDING).update(
            status=Job.FAILED,
            error=f"could not reach the task queue ({type(exc).__name__}); activate again to retry",
            finished_at=timezone.now(),
        )


def queue_move(status: str, route: str, *, held: bool) -> str | None:
    """The status a patch moves to under a new route, or None: only scored <-> needs_review (docs/contract.md).

    A patch enters the queue when its route is no longer `auto`; it leaves only when nobody holds it (a live
    claim or any label). Reviewed, failed and every other status stay where they are.
    """
    if status == S.SCORED and route != Route.AUTO:
        return S.NEEDS_REVIEW
    if status == S.NEEDS_REVIEW and route == Route.AUTO and not held:
        return S.SCORED
    return None


def _held(now: Any, patch_ref: str) -> tuple[Exists, Exists]:
    """Whether someone holds the patch at `patch_ref`: a live claim, any label."""
    claimed = Exists(Claim.objects.filter(patch=OuterRef(patch_ref), lease_until__gt=now))
    labelled = Exists(LabelEvent.objects.filter(patch=OuterRef(patch_ref)))
    return claimed, labelled


def current_evaluations() -> QuerySet[Evaluation]:
    """Evaluations of the current pipeline version, with what re-building them needs."""
    return Evaluation.objects.filter(pipeline_version=PIPELINE_VERSION).select_related("patch__task")


def rebuild(
    evaluation: Evaluation, weights: Weights, settings: PipelineSettings, *, held: bool = False
) -> dict[str, Any]:
    """The Result of a stored Evaluation under `weights`: the scoring path itself, run on stored subscores (and the
    learned critic's view stored in its meta). `held`: a reviewer holds the patch, so it stays in the queue."""
    results = {
        name: CriticResult.from_json(name, data) for name, data in evaluation.subscores.items() if name in BY_NAME
    }
    return build_result(
        task_name=evaluation.patch.task.name,
        results=results,
        weights=weights,
        settings=settings,
        audit_key=evaluation.patch.diff_sha256,
        meta=evaluation.meta,
        held=held,
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
        claimed, labelled = _held(now, "pk")
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
    now: list[int]  # histogram of the stored final scores
    proposed: list[int]  # histogram of the final scores under the proposal
    unscored_now: int  # final score null (correctness not measured)
    unscored_proposed: int
    changed: int  # patches whose final score would change
    entering: int  # scored -> needs_review
    leaving: int  # needs_review -> scored
    held: int  # would leave, but someone claimed or labelled it
    labelled: int  # patches with a human final score
    distance_now: float | None  # mean |final - human final| over labelled patches
    distance_proposed: float | None


def histogram(scores: Sequence[float | None]) -> tuple[list[int], int]:
    """Counts per 0.1 bin of [0, 1], and how many scores are null."""
    counts = [0] * len(BINS)
    for score in scores:
        if score is not None:
            counts[min(int(score * len(BINS)), len(BINS) - 1)] += 1
    return counts, sum(score is None for score in scores)


def _mean_distance(pairs: Sequence[tuple[float | None, float]]) -> float | None:
    distances = [abs(score - human) for score, human in pairs if score is not None]
    return round(sum(distances) / len(distances), 4) if distances else None


def _recent(last_n: int, now: Any) -> list[Evaluation]:
    """The current evaluations of the last `last_n` scored patches, with hold and labels prefetched."""
    claimed, labelled = _held(now, "patch_id")
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
            held = evaluation.claimed or evaluation.labelled
            moves["held" if held else "leaving"] += 1
        human = human_consensus(evaluation.patch, dict(proposed.weights))
        if human is not None and human["final_score"] is not None:
            human_pairs_now.append((evaluation.final_score, human["final_score"]))
            human_pairs_new.append((final, human["final_score"]))
    now_counts, now_null = histogram(stored)
    new_counts, new_null = histogram(new)
    return WhatIf(
        n=len(stored),
        bins=BINS,
        now=now_counts,
        proposed=new_counts,
        unscored_now=now_null,
        unscored_proposed=new_null,
        changed=sum(a != b for a, b in zip(stored, new, strict=True)),
        labelled=len(human_pairs_new),
        distance_now=_mean_distance(human_pairs_now),
        distance_proposed=_mean_distance(human_pairs_new),
        **moves,
    )


# --- the fit to human labels -------------------------------------------------------------------------------

Row = tuple[Mapping[str, float | None], float]  # (subscores, human final score)


@dataclass(frozen=True)
class Fit:
    """Weights fitted to human final scores, and how far the aggregation under them stays from those scores."""

    weights: dict[str, float]
    n: int
    rmse: float
    mae: float


def fit_error(rows: Sequence[Row], weights: Mapping[str, float]) -> tuple[float, float]:
    """(RMSE, MAE) of the real aggregation (weighted_mean, nulls renormalised) against the human scores."""
    residuals = []
    for scores, human in rows:
        predicted = weighted_mean(scores, weights)
        residuals.append((predicted if predicted is not None else 0.0) - human)
    errors = np.asarray(residuals, dtype=float)
    return round(float(np.sqrt(np.mean(errors**2))), 4), round(float(np.mean(np.abs(errors))), 4)


def fit_weights(rows: Sequence[Row], *, criteria: Sequence[str] = CRITERIA) -> Fit:
    """Least-squares weights (each >= 0, summing to 1) that make the aggregation match the human scores.

    The model is the aggregation itself: a null subscore leaves the mean and the other weights renormalise, so
    the prediction is sum(w_i s_i) / sum(w_i over measured i). SLSQP minimises the squared error under
    w >= 0 and sum(w) = 1 with the exact gradient. With no nulls this is the plain simplex-constrained linear
    least squares. Raises ValueError without rows.
    """
    if not rows:
        raise ValueError("no labelled patches to fit")
    table = np.array([[np.nan if s.get(c) is None else s[c] for c in criteria] for s, _ in rows], dtype=float)
    measured = (~np.isnan(table)).astype(float)
    scores = np.nan_to_num(table)
    target = np.array([human for _, human in rows], dtype=float)
    k, n = len(criteria), len(rows)
    tiny = 1e-9

    def residual(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        total = np.maximum(measured @ w, tiny)
        predicted = (scores @ w) / total
        return predicted - target, predicted, total

    def loss(w: np.ndarray) -> float:
        r, _, _ = residual(w)
        return float(r @ r / n)

    def gradient(w: np.ndarray) -> np.ndarray:
        r, predicted, total = residual(w)
        jacobian = (scores - predicted[:, None] * measured) / total[:, None]
        return 2 * jacobian.T @ r / n

    solution = minimize(
        loss,
        np.full(k, 1.0 / k),
        jac=gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    w = np.clip(solution.x, 0.0, None)
    w = w / w.sum()
    weights = {name: round(float(value), 4) for name, value in zip(criteria, w, strict=True)}
    rmse, mae = fit_error(rows, weights)
    return Fit(weights=weights, n=n, rmse=rmse, mae=mae)


def labelled_rows(*, weights: Weights, last_n: int = MAX_LAST_N) -> list[Row]:
    """(subscores re-scored under `weights`, human final score) of recently labelled patches with correctness
    measured: the data the fit and its error are computed on."""
    settings = pipeline_settings()
    rows: list[Row] = []
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

    fit: Fit
    current_rmse: float
    current_mae: float


def fit_to_labels(*, proposed: Weights, last_n: int = MAX_LAST_N) -> FitReport:
    """Fit weights to the human labels (performance re-scored through the proposal's knots). Nothing is saved.

    Raises ServiceError when no labelled patch has a measured correctness.
    """
    rows = labelled_rows(weights=proposed, last_n=last_n)
    if not rows:
        raise ServiceError("no labelled patches with a measured correctness yet: nothing to fit", status=409)
    current_rmse, current_mae = fit_error(rows, proposed.weights)
    return FitReport(fit=fit_weights(rows), current_rmse=current_rmse, current_mae=current_mae)
