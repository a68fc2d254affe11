"""/weights/ and /api/v1/weights/: admins tune weight profiles with the what-if in view, fit them to human labels,
save new versions, activate (with a progress bar) and roll back. Reviewers get 403 everywhere here.

Thin: parse the input, call tuning.services, shape the output.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.core.aggregate.shaping import SHAPINGS
from scoring.core.critics.registry import REGISTRY
from scoring.models import ReaggregationJob, WeightAudit, WeightProfile
from scoring.roles import IsAdmin, admin_required
from scoring.selectors import active_weights
from tuning import services as svc

PAGE = "tuning/weights.html"
DEFAULT_LAST_N = 500
FINISHED = {ReaggregationJob.Status.DONE, ReaggregationJob.Status.SUPERSEDED, ReaggregationJob.Status.FAILED}


# --- the page ---------------------------------------------------------------------------------------------


def _posted(post: Any) -> dict[str, Any]:
    """A proposal from the page's form: a number per criterion, the band, the audit rate, the knot rows."""
    knots = [
        [ratio, score]
        for ratio, score in zip(post.getlist("knot_ratio"), post.getlist("knot_score"), strict=False)
        if ratio.strip() or score.strip()
    ]
    return {
        "name": post.get("name", "").strip(),
        "weights": {critic.name: post.get(f"weight_{critic.name}", "") for critic in REGISTRY},
        "band_low": post.get("band_low"),
        "band_high": post.get("band_high"),
        "audit_rate": post.get("audit_rate"),
        "perf_knots": knots,
        "shaping": post.get("shaping", "sum"),
    }


def _last_n(post: Any) -> int:
    try:
        return max(1, min(int(post.get("last_n", DEFAULT_LAST_N)), svc.MAX_LAST_N))
    except ValueError:
        return DEFAULT_LAST_N


def _page_context(fields: dict[str, Any], *, errors: dict[str, str] | None = None, note: str = "") -> dict:
    """Everything the page shows: the form (from `fields`), the history, the audit log, the latest job."""
    active, _ = active_weights()
    criteria = [
        {"name": critic.name, "label": critic.label or critic.name, "value": fields["weights"].get(critic.name, 0)}
        for critic in REGISTRY
    ]
    return {
        "fields": fields,
        "criteria": criteria,
        "knots": [*fields["perf_knots"], ["", ""]],  # one empty row to add a knot
        "shapings": SHAPINGS,
        "form_errors": errors or {},
        "note": note,
        "active": active,
        "history": WeightProfile.objects.select_related("created_by").order_by("name", "-version")[:100],
        "audit": WeightAudit.objects.select_related("actor", "profile").order_by("-id")[:20],
        "job": ReaggregationJob.objects.select_related("profile").first(),
        "last_n": DEFAULT_LAST_N,
    }


@require_GET
@admin_required
def weights_page(request: HttpRequest) -> HttpResponse:
    """The form starts from `?from=<id>` (a version to edit) or the active profile."""
    active, _ = active_weights()
    base = active
    if request.GET.get("from", "").isdigit():
        base = get_object_or_404(WeightProfile, pk=int(request.GET["from"]))
    return render(request, PAGE, _page_context(svc.profile_fields(base)))


@require_POST
@admin_required
def weights_what_if(request: HttpRequest) -> HttpResponse:
    """The what-if region for the form as it stands."""
    try:
        proposal = svc.proposal_validate(**_posted(request.POST))
    except svc.WeightsInvalid as exc:
        return render(request, f"{PAGE}#whatif", {"errors": exc.errors})
    result = svc.what_if(proposed=proposal, last_n=_last_n(request.POST))
    chart = {"bins": list(result.bins), "now": result.now, "proposed": result.proposed}
    return render(request, f"{PAGE}#whatif", {"result": result, "chart": chart, "band": proposal})


@require_POST
@admin_required
def weights_fit(request: HttpRequest) -> HttpResponse:
    """The fit region: weights fitted to the human labels and their error, next to the form's. Saves nothing."""
    try:
        proposal = svc.proposal_validate(**_posted(request.POST))
        report = svc.fit_to_labels(proposed=proposal)
    except svc.ServiceError as exc:
        return render(request, f"{PAGE}#fit", {"fit_error": str(exc)})
    return render(request, f"{PAGE}#fit", {"report": report, "criteria": REGISTRY})


@require_POST
@admin_required
def weights_save(request: HttpRequest) -> HttpResponse:
    """Store the form as a new version (never an edit of an old one); errors re-render the page with 400."""
    fields = _posted(request.POST)
    note = request.POST.get("note", "").strip()
    try:
        profile = svc.profile_create_version(**fields, actor=request.user, note=note)
    except svc.WeightsInvalid as exc:
        return render(request, PAGE, _page_context(fields, errors=exc.errors, note=note), status=400)
    messages.success(request, f"Saved {profile}. It is not active until you activate it.")
    return redirect(f"/weights/?from={profile.pk}")


@require_POST
@admin_required
def weights_activate(request: HttpRequest, pk: int) -> HttpResponse:
    """Activate a version (an earlier one is a rollback); the page then shows the re-aggregation's progress."""
    profile = get_object_or_404(WeightProfile, pk=pk)
    try:
        svc.profile_activate(profile=profile, actor=request.user)
    except svc.Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Activated {profile}; re-aggregating the stored scores.")
    return redirect(f"/weights/?from={profile.pk}")


@require_GET
@admin_required
def weights_job(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress bar; polled by htmx until the job is finished, then polling stops."""
    job = get_object_or_404(ReaggregationJob.objects.select_related("profile"), pk=pk)
    if job.status in FINISHED:
        return HttpResponseStopPolling(render_to_string(f"{PAGE}#job", {"job": job}, request=request))
    return render(request, f"{PAGE}#job", {"job": job})


# --- the API ----------------------------------------------------------------------------------------------


class ProposalSerializer(serializers.Serializer):
    """A proposed profile. Omitted fields are taken from the version being edited (or the active one)."""

    weights = serializers.DictField(child=serializers.FloatField(), required=False)
    band_low = serializers.FloatField(required=False)
    band_high = serializers.FloatField(required=False)
    audit_rate = serializers.FloatField(required=False)
    perf_knots = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2), required=False
    )
    shaping = serializers.ChoiceField(
        choices=list(SHAPINGS), required=False, help_text="scoring.core.aggregate.shaping"
    )

    class Meta:
        ref_name = "WeightProposal"


class ProfileSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = WeightProfile
        fields = [
            "id",
            "name",
            "version",
            "weights",
            "band_low",
            "band_high",
            "audit_rate",
            "perf_knots",
            "shaping",
            "is_active",
            "created_by",
            "created_at",
            "note",
        ]
        ref_name = "WeightProfile"


class JobSerializer(serializers.ModelSerializer):
    profile = serializers.CharField(source="profile.__str__")

    class Meta:
        model = ReaggregationJob
        fields = ["id", "profile", "status", "total", "processed", "entered", "left", "held", "error"]
        fields += ["created_at", "finished_at"]
        ref_name = "ReaggregationJob"


class WeightProfileListApi(APIView):
    permission_classes = [IsAdmin]

    class InputSerializer(ProposalSerializer):
        name = serializers.SlugField(max_length=50, required=False, help_text="Default: the active profile's.")
        note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "WeightProfileInput"

    @extend_schema(responses=ProfileSerializer(many=True))
    def get(self, request):
        profiles = WeightProfile.objects.select_related("created_by").order_by("name", "-version")
        return Response(ProfileSerializer(profiles, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ProfileSerializer})
    def post(self, request):
        """A new version of `name`: given fields, the rest from its latest version (or the active profile)."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        note = values.pop("note")
        active, _ = active_weights()
        name = values.pop("name", active.name)
        base = WeightProfile.objects.filter(name=name).order_by("-version").first() or active
        fields = svc.profile_fields(base) | values | {"name": name}
        profile = svc.profile_create_version(**fields, actor=request.user, note=note)
        return Response(ProfileSerializer(profile).data, status=status.HTTP_201_CREATED)


class WeightProfileDetailApi(APIView):
    """One stored version. Versions are immutable: there is no PUT, PATCH or DELETE."""

    permission_classes = [IsAdmin]

    @extend_schema(responses=ProfileSerializer)
    def get(self, request, pk: int):
        return Response(ProfileSerializer(get_object_or_404(WeightProfile, pk=pk)).data)


class WeightProfileActivateApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(request=None, responses={202: JobSerializer})
    def post(self, request, pk: int):
        """Activate a version (an earlier one is a rollback) and start the re-aggregation; poll the job."""
        job = svc.profile_activate(profile=get_object_or_404(WeightProfile, pk=pk), actor=request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ReaggregationJobApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(responses=JobSerializer)
    def get(self, request, pk: int):
        return Response(JobSerializer(get_object_or_404(ReaggregationJob, pk=pk)).data)


class WhatIfApi(APIView):
    permission_classes = [IsAdmin]

    class InputSerializer(ProposalSerializer):
        last_n = serializers.IntegerField(min_value=1, max_value=svc.MAX_LAST_N, default=DEFAULT_LAST_N)

        class Meta:
            ref_name = "WhatIfInput"

    class OutputSerializer(serializers.Serializer):
        n = serializers.IntegerField()
        bins = serializers.ListField(child=serializers.CharField())
        now = serializers.ListField(child=serializers.IntegerField())
        proposed = serializers.ListField(child=serializers.IntegerField())
        unscored_now = serializers.IntegerField()
        unscored_proposed = serializers.IntegerField()
        changed = serializers.IntegerField()
        entering = serializers.IntegerField()
        leaving = serializers.IntegerField()
        held = serializers.IntegerField()
        labelled = serializers.IntegerField()
        distance_now = serializers.FloatField(allow_null=True)
        distance_proposed = serializers.FloatField(allow_null=True)

        class Meta:
            ref_name = "WhatIf"

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request):
        """What activating the proposal would do to the last `last_n` scored patches. Changes nothing."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        last_n = values.pop("last_n")
        proposal = svc.proposal_from(values, base=active_weights()[0])
        result = svc.what_if(proposed=proposal, last_n=last_n)
        return Response(self.OutputSerializer(dataclasses.asdict(result)).data)


class WeightFitApi(APIView):
    permission_classes = [IsAdmin]

    class OutputSerializer(serializers.Serializer):
        weights = serializers.DictField(child=serializers.FloatField())
        n = serializers.IntegerField(help_text="labelled patches the fit used")
        rmse = serializers.FloatField()
        mae = serializers.FloatField()
        current_rmse = serializers.FloatField(help_text="error of the proposal's own weights on the same labels")
        current_mae = serializers.FloatField()

        class Meta:
            ref_name = "WeightFit"

    @extend_schema(request=ProposalSerializer, responses=OutputSerializer)
    def post(self, request):
        """Weights fitted to the human labels (performance through the proposal's knots). Saves nothing."""
        data = ProposalSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        proposal = svc.proposal_from(dict(data.validated_data), base=active_weights()[0])
        report = svc.fit_to_labels(proposed=proposal)
        payload = dataclasses.asdict(report.fit) | {
            "current_rmse": report.current_rmse,
            "current_mae": report.current_mae,
        }
        return Response(self.OutputSerializer(payload).data)


class WeightAuditApi(APIView):
    permission_classes = [IsAdmin]

    class OutputSerializer(serializers.ModelSerializer):
        profile = serializers.CharField(source="profile.__str__")
        actor = serializers.CharField(source="actor.username", allow_null=True, default=None)

        class Meta:
            model = WeightAudit
            fields = ["id", "profile", "actor", "action", "detail", "created_at"]
            ref_name = "WeightAudit"

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        """Who created or activated which version, newest first (the last 200)."""
        rows = WeightAudit.objects.select_related("actor", "profile").order_by("-id")[:200]
        return Response(self.OutputSerializer(rows, many=True).data)
