"""Reads for the review queue page: the filtered, prioritised list and its counts, in a constant number of
queries whatever the queue's size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from labeling.models import Claim, LabelEvent
from scoring.core.critics.registry import CRITERIA
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.core.types import FLAGS
from scoring.models import Evaluation, PatchStatus

ROUTES = ("review", "audit")


class QueueFilterForm(forms.Form):
    """The queue page's query (`?task=&flag=&route=&doubt=`), parsed by Django's form fields."""

    task = forms.CharField(required=False, max_length=100)
    flag = forms.ChoiceField(required=False, choices=[(flag, flag) for flag in sorted(FLAGS)])
    route = forms.ChoiceField(required=False, choices=[(route, route) for route in ROUTES])
    doubt = forms.ChoiceField(required=False, choices=[(name, name) for name in CRITERIA])


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters, validated: a value the form refuses (an unknown flag, a stale link) is dropped
    rather than raising, so an old bookmark still opens the queue."""

    task: str = ""
    flag: str = ""
    route: str = ""
    doubt: str = ""

    @classmethod
    def from_query(cls, query: Any) -> QueueFilters:
        form = QueueFilterForm(query)
        form.is_valid()  # fields with errors are left out of cleaned_data
        return cls(**{name: form.cleaned_data.get(name) or "" for name in QueueFilterForm.base_fields})

    def as_query(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


def queue_items(filters: QueueFilters, *, now: datetime) -> QuerySet[Evaluation]:
    """Queued evaluations, least confident first, then oldest, with what a queue row shows annotated.

    Bulky JSON (evidence, meta, the diff) is not loaded. Ordering, filtering and counting read only the columns
    of the `evaluation_queue` index (scoring.models.Evaluation).
    """
    live_seats = (
        Claim.objects.filter(patch=OuterRef("patch_id"))
        .filter(Q(done_at__isnull=True, lease_until__gt=now))
        .order_by()
        .values("patch")
        .annotate(n=Count("pk"))
        .values("n")
    )
    labels = (
        LabelEvent.objects.filter(patch=OuterRef("patch_id"))
        .order_by()
        .values("patch")
        .annotate(n=Count("reviewer", distinct=True))
        .values("n")
    )
    items = (
        Evaluation.objects.filter(pipeline_version=PIPELINE_VERSION, patch__status=PatchStatus.NEEDS_REVIEW)
        .select_related("patch__task")
        .only(
            "final_score",
            "route",
            "flags",
            "min_confidence",
            "doubt",
            "patch__id",
            "patch__created_at",
            "patch__external_id",
            "patch__task__name",
            "patch__task__spec",
        )
        .annotate(live_seats=Coalesce(Subquery(live_seats), Value(0)), labels=Coalesce(Subquery(labels), Value(0)))
        .order_by("min_confidence", "patch_id")
    )
    if filters.task:
        items = items.filter(patch__task__name=filters.task)
    # Flags and doubt are JSON lists of known words: matching the quoted word in their text works on both databases.
    if filters.flag:
        items = items.filter(flags__icontains=f'"{filters.flag}"')
    if filters.doubt:
        items = items.filter(doubt__icontains=f'"{filters.doubt}"')
    if filters.route:
        items = items.filter(route=filters.route)
    return items


def queue_counts(*, reviewer: Any, now: datetime) -> dict[str, int]:
    """Waiting, being reviewed right now, reviewed today, and labelled by this reviewer today."""
    day_ago = now - timedelta(hours=24)
    waiting = Evaluation.objects.filter(
        pipeline_version=PIPELINE_VERSION, patch__status=PatchStatus.NEEDS_REVIEW
    ).aggregate(total=Count("pk"), audit=Count("pk", filter=Q(route="audit")))
    labels = LabelEvent.objects.filter(created_at__gte=day_ago).aggregate(
        all=Count("pk"), mine=Count("pk", filter=Q(reviewer=reviewer))
    )
    return {
        "waiting": waiting["total"],
        "audit": waiting["audit"],
        "in_review": Claim.objects.filter(done_at__isnull=True, lease_until__gt=now).count(),
        "labels_today": labels["all"],
        "mine_today": labels["mine"],
    }
