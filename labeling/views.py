"""The review queue, the review page and the dashboard: thin views over labeling.services and the reads.

Every page needs a reviewer or an admin: anonymous visitors go to the login page, other accounts get 403.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from labeling import dashboard as stats
from labeling import services
from labeling.queue import ROUTES, QueueFilters, queue_counts, queue_items
from labeling.selectors import critic_runs_series, review_page_data
from scoring.conf import pipeline_settings
from scoring.core.critics.registry import REGISTRY
from scoring.core.types import FLAGS
from scoring.models import Patch, Task
from scoring.roles import reviewer_required

PAGE_SIZE = 50
#: Recently skipped patches are not offered again in this session (capped so the session stays small).
MAX_SKIPPED = 200


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# --- queue --------------------------------------------------------------------------------------------------


@require_GET
@reviewer_required
def queue(request: HtmxHttpRequest) -> HttpResponse:
    """The queue: counts, filters and the items by priority. htmx polls refresh the counts alone."""
    now = timezone.now()
    counts = queue_counts(reviewer=request.user, now=now)
    if request.htmx and request.htmx.target == "queue-counts":
        return render(request, "labeling/queue.html#counts", {"counts": counts})
    filters = QueueFilters.from_query(request.GET)
    page = Paginator(queue_items(filters, now=now), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "counts": counts,
        "filters": filters,
        "filter_query": urlencode(filters.as_query()),
        "page": page,
        "tasks": Task.objects.order_by("name").values_list("name", flat=True),
        "flags": sorted(FLAGS),
        "routes": ROUTES,
        "criteria": REGISTRY,
        "threshold": pipeline_settings().heal_confidence_threshold,  # the rule that fills Evaluation.doubt
        "held": services.current_claim(reviewer=request.user, now=now),
    }
    if request.htmx and request.htmx.target == "queue-table":
        return render(request, "labeling/queue.html#table", context)
    return render(request, "labeling/queue.html", context)


def _skipped(request: HttpRequest) -> list[int]:
    return list(request.session.get("review_skipped", []))


def _go_next(request: HttpRequest) -> HttpResponse:
    claim = services.claim_next(reviewer=request.user, skip=_skipped(request))
    if claim is None:
        messages.info(request, "Nothing left for you to review right now.")
        return redirect("labeling:queue")
    return redirect("labeling:item", patch_id=claim.patch_id)


@require_POST
@reviewer_required
def review_next(request: HtmxHttpRequest) -> HttpResponse:
    """Claim the most urgent item (or the one already held) and open it."""
    return _go_next(request)


@require_POST
@reviewer_required
def item_claim(request: HtmxHttpRequest, patch_id: int) -> HttpResponse:
    """Claim one chosen item from the queue list, if a seat on it is free."""
    patch = _patch_or_404(patch_id)
    if services.claim_patch(patch=patch, reviewer=request.user) is None:
        messages.warning(request, f"Patch {patch_id} has no free seat for you (taken, done or already labelled).")
    return redirect("labeling:item", patch_id=patch_id)


# --- the review page ----------------------------------------------------------------------------------------


def _patch_or_404(patch_id: int) -> Patch:
    patch = Patch.objects.select_related("task").filter(pk=patch_id).first()
    if patch is None:
        raise Http404("No such patch.")
    return patch


def review_context(request: HttpRequest, patch: Patch, *, form: dict[str, Any] | None = None) -> dict[str, Any]:
    data = review_page_data(patch=patch, user=request.user, form=form)
    if data is None:
        raise Http404("This patch has not been scored yet.")
    return {**data, "renew_s": services.LEASE_RENEW_S}


@require_GET
@reviewer_required
def item(request: HtmxHttpRequest, patch_id: int) -> HttpResponse:
    """The review page of one patch."""
    patch = _patch_or_404(patch_id)
    return render(request, "labeling/review.html", review_context(request, patch))


def _form_values(request: HttpRequest) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    for critic in REGISTRY:
        unmeasured = request.POST.get(f"na-{critic.name}") == "on"
        scores[critic.name] = None if unmeasured else request.POST.get(f"score-{critic.name}", "")
    try:
        opened_at = float(request.POST.get("opened_at", ""))
    except ValueError:
        opened_at = time.time()
    base = request.POST.get("base_event", "")
    return {
        "scores": scores,
        "notes": {c.name: request.POST.get(f"note-{c.name}", "").strip() for c in REGISTRY},
        "comment": request.POST.get("comment", "").strip(),
        "opened_at": opened_at,
        "base_event": int(base) if base.isdigit() else None,
    }


def _save(request: HttpRequest, patch_id: int, *, task_broken: bool) -> HttpResponse:
    patch = _patch_or_404(patch_id)
    form = _form_values(request)
    try:
        services.label_submit(
            patch=patch,
            reviewer=request.user,
            scores=form["scores"],
            notes=form["notes"],
            comment=form["comment"],
            time_spent_s=time.time() - form["opened_at"],
            base_event_id=form["base_event"],
            task_broken=task_broken,
        )
    except services.ReviewError as exc:
        context = review_context(request, patch, form=form)
        context["error"] = str(exc)
        return render(request, "labeling/review.html", context, status=exc.status)
    messages.success(request, f"Saved your label on patch {patch.pk}.")
    return _go_next(request)


@require_POST
@reviewer_required
def item_submit(request: HtmxHttpRequest, patch_id: int) -> HttpResponse:
    """Save the reviewer's label (a new event) and open the next item; a stale edit re-renders with 409."""
    return _save(request, patch_id, task_broken=False)


@require_POST
@reviewer_required
def item_broken(request: HtmxHttpRequest, patch_id: int) -> HttpResponse:
    """Label the item "task is broken" (no scores; the comment says why) and open the next item."""
    return _save(request, patch_id, task_broken=True)


@require_POST
@reviewer_required
def item_skip(request: HtmxHttpRequest, patch_id: int) -> HttpResponse:
    """Give the seat back, keep the item out of this session's offers, and open the next item."""
    services.claim_release(patch_id=patch_id, reviewer=request.user)
    skipped = [p for p in _skipped(request) if p != patch_id] + [patch_id]
    request.session["review_skipped"] = skipped[-MAX_SKIPPED:]
    return _go_next(request)


@require_POST
@reviewer_required
def item_lease(request: HtmxHttpRequest, patch_id: int) -> HttpResponse:
    """Renew the seat while the page is open (htmx poll). Polling stops once the seat is gone."""
    seat = services.claim_renew(patch_id=patch_id, reviewer=request.user)
    if seat is None:
        response = render(request, "labeling/review.html#lease", {"seat": None, "lost": True})
        return HttpResponseStopPolling(response.content)
    return render(request, "labeling/review.html#lease", {"seat": seat, "renew_s": services.LEASE_RENEW_S})


# --- dashboard ----------------------------------------------------------------------------------------------

CHARTS: dict[str, Callable[..., dict[str, Any]]] = {
    "queue": lambda now: stats.queue_over_time(now=now),
    "pace": lambda now: stats.labels_per_hour(now=now),
    "distributions": lambda now: stats.distributions(),
    "scatter": lambda now: stats.auto_vs_human(),
    "agreement": lambda now: stats.agreement(),
    "critic": lambda now: critic_runs_series(),
}


@require_GET
@reviewer_required
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    """The dashboard page; its charts fetch their data from `dashboard_data`."""
    return render(request, "labeling/dashboard.html", {"charts": list(CHARTS), "criteria": REGISTRY})


@require_GET
@reviewer_required
def dashboard_data(request: HtmxHttpRequest, name: str) -> JsonResponse:
    """The JSON one dashboard chart draws."""
    chart = CHARTS.get(name)
    if chart is None:
        raise Http404("No such chart.")
    return JsonResponse(chart(timezone.now()))
