"""Writes of the review queue: seats (claims with a lease) and append-only labels.

Two reviewers meet here, so every write states its outcome under concurrency and relies on the database, not
on Python-side checks: a seat is taken by an INSERT that the unique (patch, slot) constraint arbitrates, or by
a compare-and-set UPDATE on an expired lease; a label edit names the event it replaces, and `supersedes` is
unique, so two edits of the same version cannot both land. Portable to SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from labeling.models import Claim, LabelEvent
from labeling.selectors import human_consensus, labels_per_item, latest_label
from scoring.core.aggregate.route import weighted_mean
from scoring.core.critics.registry import CRITERIA
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.models import Evaluation, Patch, PatchStatus
from scoring.selectors import active_weights, current_evaluation
from scoring.services import patch_transition

#: How long a seat stays held without a renewal. The review page renews it every LEASE_RENEW_S seconds.
LEASE_S = settings.REVIEWAPP.get("REVIEW_LEASE_S", 300)
LEASE_RENEW_S = max(5, LEASE_S // 4)
#: Candidates fetched per round of claim_next; a round fails only if every one was taken meanwhile.
CLAIM_BATCH = 20
CLAIM_ROUNDS = 3


class ReviewError(Exception):
    """A review action the service refuses, with a message for the reviewer and the HTTP status."""

    status = 400


class LabelConflict(ReviewError):
    """A stale edit or a lost seat: nothing was written."""

    status = 409


def _live_or_done(now: datetime) -> Q:
    return Q(done_at__isnull=False) | Q(lease_until__gt=now)


def claimable(*, reviewer: Any, now: datetime) -> QuerySet[Evaluation]:
    """Evaluations of queued patches with a free seat that `reviewer` has not labelled, by priority.

    Priority: least confident first, then oldest. Reads only; the seat itself is taken by `claim_patch`.
    """
    seats_taken = (
        Claim.objects.filter(patch=OuterRef("patch_id"))
        .filter(_live_or_done(now))
        .order_by()
        .values("patch")
        .annotate(n=Count("pk"))
        .values("n")
    )
    mine = Claim.objects.filter(reviewer=reviewer).filter(_live_or_done(now)).values("patch_id")
    labelled = LabelEvent.objects.filter(reviewer=reviewer).values("patch_id")
    return (
        Evaluation.objects.filter(pipeline_version=PIPELINE_VERSION, patch__status=PatchStatus.NEEDS_REVIEW)
        .exclude(patch_id__in=mine)
        .exclude(patch_id__in=labelled)
        .annotate(
            seats=Coalesce(Cast(KeyTextTransform("labels_per_item", "patch__task__spec"), IntegerField()), Value(1)),
            taken=Coalesce(Subquery(seats_taken, output_field=IntegerField()), Value(0)),
        )
        .filter(taken__lt=F("seats"))
        .order_by("min_confidence", "patch_id")
    )


def current_claim(*, reviewer: Any, now: datetime | None = None) -> Claim | None:
    """The seat `reviewer` holds and has not finished, on a patch still waiting for review."""
    now = now or timezone.now()
    return (
        Claim.objects.filter(
            reviewer=reviewer, done_at__isnull=True, lease_until__gt=now, patch__status=PatchStatus.NEEDS_REVIEW
        )
        .order_by("-lease_until")
        .first()
    )


def claim_next(*, reviewer: Any, skip: Iterable[int] = (), now: datetime | None = None) -> Claim | None:
    """Give `reviewer` a seat on the most urgent item, or None when nothing is left for them.

    A reviewer holds one item at a time: if they still hold one, it comes back with a fresh lease. Never gives
    two reviewers the same seat, and never more reviewers to an item than its task's `labels_per_item`.
    `skip` lists patch ids the reviewer skipped recently; they are not offered again.
    """
    now = now or timezone.now()
    skip = list(skip)
    held = current_claim(reviewer=reviewer, now=now)
    if held is not None and held.patch_id not in skip:
        Claim.objects.filter(pk=held.pk, reviewer=reviewer).update(lease_until=now + timedelta(seconds=LEASE_S))
        return held
    for _ in range(CLAIM_ROUNDS):
        candidates = list(
            claimable(reviewer=reviewer, now=now)
            .exclude(patch_id__in=skip)
            .select_related("patch__task")
            .only("patch_id", "patch__task__spec", "patch__status")[:CLAIM_BATCH]
        )
        if not candidates:
            return None
        for evaluation in candidates:
            claim = claim_patch(patch=evaluation.patch, reviewer=reviewer, now=now)
            if claim is not None:
                return claim
    return None


def claim_patch(*, patch: Patch, reviewer: Any, now: datetime | None = None) -> Claim | None:
    """Take (or renew) `reviewer`'s seat on one patch. None when every seat is taken or they labelled it.

    Safe to race: a free slot is taken by an INSERT that the unique (patch, slot) constraint lets only one
    reviewer win; an expired seat is taken over by a compare-and-set on its expired lease.
    """
    now = now or timezone.now()
    lease = now + timedelta(seconds=LEASE_S)
    if patch.status != PatchStatus.NEEDS_REVIEW:
        return None
    own = Claim.objects.filter(patch=patch, reviewer=reviewer)
    if own.filter(done_at__isnull=True).update(lease_until=lease):
        return own.get()
    if own.exists() or LabelEvent.objects.filter(patch=patch, reviewer=reviewer).exists():
        return None
    seats = labels_per_item(patch.task)
    used = set(Claim.objects.filter(patch=patch).values_list("slot", flat=True))
    for slot in range(seats):
        if slot in used:
            continue
        try:
            with transaction.atomic():
                return Claim.objects.create(patch=patch, reviewer=reviewer, slot=slot, lease_until=lease)
        except IntegrityError:
            continue  # another reviewer took this slot a moment ago
    expired = Claim.objects.filter(patch=patch, slot__lt=seats, done_at__isnull=True, lease_until__lte=now)
    for pk in expired.values_list("pk", flat=True):
        try:
            with transaction.atomic():
                won = Claim.objects.filter(pk=pk, done_at__isnull=True, lease_until__lte=now).update(
                    reviewer=reviewer, lease_until=lease, created_at=now
                )
        except IntegrityError:
            continue
        if won:
            return Claim.objects.get(pk=pk)
    return None


def claim_renew(*, patch_id: int, reviewer: Any, now: datetime | None = None) -> Claim | None:
    """Extend `reviewer`'s unfinished seat on a patch. None when the seat is gone (taken over, done, released).

    An expired seat that nobody took yet is still the reviewer's, so a laptop waking from sleep keeps its item.
    """
    now = now or timezone.now()
    seat = Claim.objects.filter(
        patch_id=patch_id, reviewer=reviewer, done_at__isnull=True, patch__status=PatchStatus.NEEDS_REVIEW
    )
    if not seat.update(lease_until=now + timedelta(seconds=LEASE_S)):
        return None
    return seat.first()


def claim_release(*, patch_id: int, reviewer: Any) -> bool:
    """Give an unfinished seat back (skip). True if there was one."""
    deleted, _ = Claim.objects.filter(patch_id=patch_id, reviewer=reviewer, done_at__isnull=True).delete()
    return bool(deleted)


def holds_seat(*, patch_id: int, reviewer: Any) -> bool:
    """Whether `reviewer` has an unfinished seat on the patch (expired but not taken over counts)."""
    return Claim.objects.filter(patch_id=patch_id, reviewer=reviewer, done_at__isnull=True).exists()


def clean_scores(raw: Mapping[str, Any]) -> dict[str, float | None]:
    """Human scores per registry criterion, each None or a float in [0, 1]. Raises ReviewError otherwise."""
    unknown = set(raw) - set(CRITERIA)
    if unknown:
        raise ReviewError(f"unknown criteria: {', '.join(sorted(unknown))}")
    scores: dict[str, float | None] = {}
    for name in CRITERIA:
        value = raw.get(name)
        if value is None or value == "":
            scores[name] = None
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ReviewError(f"{name}: {value!r} is not a number") from exc
        if not 0.0 <= number <= 1.0:
            raise ReviewError(f"{name}: {number} is outside [0, 1]")
        scores[name] = round(number, 4)
    return scores


def _stale(patch: Patch, latest: LabelEvent) -> LabelConflict:
    saved = timezone.localtime(latest.created_at).strftime("%H:%M:%S")
    return LabelConflict(
        f"Your label on patch {patch.pk} changed after you opened this page (saved at {saved} UTC, "
        "probably from another tab or window). Nothing was overwritten: reload to see the current label, "
        "then apply your correction again."
    )


def _check_lengths(*, comment: str, notes: Mapping[str, str]) -> None:
    """Refuse (400) a comment or a note past its limit (settings.LIMITS), naming it: cutting it would lose words."""
    limits = settings.LIMITS
    if len(comment) > limits["LABEL_COMMENT_CHARS"]:
        raise ReviewError(
            f"The comment has {len(comment)} characters; the limit is {limits['LABEL_COMMENT_CHARS']} "
            "(REVIEWAPP_MAX_LABEL_COMMENT_CHARS). Nothing was saved."
        )
    for name, note in notes.items():
        if len(str(note)) > limits["LABEL_NOTE_CHARS"]:
            raise ReviewError(
                f"The note on {name} has {len(str(note))} characters; the limit is {limits['LABEL_NOTE_CHARS']} "
                "(REVIEWAPP_MAX_LABEL_NOTE_CHARS). Nothing was saved."
            )


def label_submit(
    *,
    patch: Patch,
    reviewer: Any,
    scores: Mapping[str, Any],
    notes: Mapping[str, str] | None = None,
    comment: str = "",
    time_spent_s: float = 0.0,
    base_event_id: int | None = None,
    task_broken: bool = False,
    now: datetime | None = None,
) -> LabelEvent:
    """Append the reviewer's label (a new event) with the automatic values at this moment. Never overwrites.

    `base_event_id` is the reviewer's latest event when they opened the page (None for a first label); if it
    is not their latest any more, LabelConflict. A first label needs the reviewer's seat, which it closes; a
    seat that expired and went to another reviewer gives LabelConflict. When the item has its
    `labels_per_item` labels, the patch moves needs_review -> reviewed.
    """
    now = now or timezone.now()
    _check_lengths(comment=comment, notes=notes or {})
    evaluation = current_evaluation(patch)
    if evaluation is None:
        raise ReviewError(f"Patch {patch.pk} has no automatic evaluation to correct.")
    human = {name: None for name in CRITERIA} if task_broken else clean_scores(scores)
    notes = notes or {}
    subscores = {
        name: {
            "auto": evaluation.subscores.get(name, {}).get("score"),
            "human": human[name],
            "note": str(notes.get(name, "")),
        }
        for name in CRITERIA
    }
    profile, weights = active_weights()
    latest = latest_label(patch_id=patch.pk, reviewer=reviewer)
    if (latest.pk if latest else None) != base_event_id:
        if latest is None:
            raise ReviewError("This edit names a label that does not exist; reload the page.")
        raise _stale(patch, latest)
    with transaction.atomic():
        if latest is None:
            closed = Claim.objects.filter(patch=patch, reviewer=reviewer, done_at__isnull=True).update(
                done_at=now, lease_until=now
            )
            if not closed:
                raced = latest_label(patch_id=patch.pk, reviewer=reviewer)
                if raced is not None:
                    raise _stale(patch, raced)
                raise LabelConflict(
                    f"You no longer hold patch {patch.pk}: your lease expired and another reviewer took it, or "
                    "you skipped it. Nothing was saved; take the next item."
                )
        try:
            with transaction.atomic():
                event = LabelEvent.objects.create(
                    patch=patch,
                    reviewer=reviewer,
                    supersedes=latest,
                    subscores=subscores,
                    final_score=None if task_broken else weighted_mean(human, weights.weights),
                    weight_profile_version=profile.version,
                    comment=comment,
                    task_broken=task_broken,
                    time_spent_s=max(0.0, min(float(time_spent_s), 86400.0)),
                )
        except IntegrityError:
            # Another save named the same previous event first (unique `supersedes`): this one is stale.
            raced = latest_label(patch_id=patch.pk, reviewer=reviewer) or latest
            assert raced is not None  # an edit names an event, and that event is never deleted (labels append)
            raise _stale(patch, raced) from None
    mark_reviewed_when_complete(patch)
    record_human_final(patch)
    return event


def record_human_final(patch: Patch) -> None:
    """Once a patch is `reviewed`, write the reviewers' consensus final score into its current evaluation's meta
    (`human_final_score`), where the scoring layer reads it for a reward it had withheld (scoring.selectors.rewards_of):
    a patch the policy held back until a person looked is paid what the people said, not what the machine said.
    Safe to call twice; a later label moves it."""
    patch.refresh_from_db(fields=["status"])
    if patch.status != PatchStatus.REVIEWED:
        return
    consensus = human_consensus(patch)
    evaluation = Evaluation.objects.filter(patch=patch, pipeline_version=PIPELINE_VERSION).first()
    if consensus is None or evaluation is None:
        return
    evaluation.meta = {**evaluation.meta, "human_final_score": consensus["final_score"]}
    evaluation.save(update_fields=["meta", "updated_at"])


def mark_reviewed_when_complete(patch: Patch) -> bool:
    """Move the patch to `reviewed` once its task's labels_per_item reviewers labelled it. True if moved."""
    reviewers = LabelEvent.objects.filter(patch=patch).values("reviewer").distinct().count()
    if reviewers < labels_per_item(patch.task):
        return False
    return patch_transition(patch_id=patch.pk, source=(PatchStatus.NEEDS_REVIEW,), target=PatchStatus.REVIEWED)
