"""/exports/ and /api/v1/exports/: admins export labels (with a progress bar), download the files and follow the
learned critic's metrics over its versions. Reviewers get 403 everywhere here; anonymous visitors the login page.

Thin: parse the input, call exports.services, shape the output.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from exports import services as exports
from exports.parquet import parquet_path
from labeling.models import CriticRun, ExportJob
from labeling.selectors import critic_runs_series
from scoring.roles import IsAdmin, admin_required

PAGE = "exports/exports.html"
FINISHED = {ExportJob.Status.DONE, ExportJob.Status.FAILED}
JSONL = "application/x-ndjson"


def _file(job: ExportJob, what: str) -> FileResponse:
    """The export file (`what` = "data"), its Parquet copy or its manifest of a finished job, as a download; 404
    otherwise."""
    if job.status != ExportJob.Status.DONE or not job.path:
        raise Http404("This export has no file (yet).")
    path = {
        "data": Path(job.path),
        "manifest": exports.manifest_path(Path(job.path)),
        "parquet": parquet_path(Path(job.path)),
    }[what]
    if not path.is_file():
        raise Http404("The export file was removed from the server; start the export again.")
    kind = {"data": JSONL, "manifest": "application/json", "parquet": "application/vnd.apache.parquet"}[what]
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name, content_type=kind)


# --- the page ---------------------------------------------------------------------------------------------


@require_GET
@admin_required
def exports_page(request: HttpRequest) -> HttpResponse:
    """The export form, the latest job's progress, past exports and the critic's metrics over versions."""
    jobs = list(ExportJob.objects.select_related("requested_by")[:30])
    return render(
        request,
        PAGE,
        {
            "formats": exports.FORMATS,
            "min_margin": exports.DEFAULT_MIN_MARGIN,
            "job": jobs[0] if jobs else None,
            "jobs": jobs,
            "runs": CriticRun.objects.all()[:30],
            "chart": critic_runs_series(),
        },
    )


@require_POST
@admin_required
def exports_start(request: HttpRequest) -> HttpResponse:
    """Start an export job from the form; the page then shows its progress."""
    try:
        margin = float(request.POST.get("min_margin") or exports.DEFAULT_MIN_MARGIN)
        job = exports.export_job_start(
            fmt=request.POST.get("format", ""),
            include_demo=request.POST.get("include_demo") == "on",
            with_execution=request.POST.get("with_execution") == "on",
            min_margin=margin,
            user=request.user,
        )
    except ValueError as exc:  # ExportError, or a margin that is not a number
        messages.error(request, f"Export not started: {exc}")
    else:
        messages.success(
            request, f"Export {job.pk} ({job.fmt}) started; labels up to {job.cutoff:%Y-%m-%d %H:%M:%S} UTC."
        )
    return redirect("exports")


@require_GET
@admin_required
def exports_job(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress bar; polled by htmx until the job is finished, then polling stops."""
    job = get_object_or_404(ExportJob, pk=pk)
    if job.status in FINISHED:
        return HttpResponseStopPolling(render_to_string(f"{PAGE}#job", {"job": job}, request=request))
    return render(request, f"{PAGE}#job", {"job": job})


@require_GET
@admin_required
def exports_download(request: HttpRequest, pk: int, what: str = "data") -> FileResponse:
    return _file(get_object_or_404(ExportJob, pk=pk), what)


# --- the API ----------------------------------------------------------------------------------------------


class ExportJobSerializer(serializers.ModelSerializer):
    format = serializers.CharField(source="fmt")
    requested_by = serializers.CharField(source="requested_by.username", allow_null=True, default=None)
    download = serializers.SerializerMethodField()

    class Meta:
        model = ExportJob
        fields = ["id", "format", "include_demo", "with_execution", "min_margin", "cutoff", "status", "total"]
        fields += ["processed", "error", "manifest", "download", "requested_by", "created_at", "finished_at"]
        ref_name = "ExportJob"

    def get_download(self, job: ExportJob) -> str | None:
        """Where to fetch the JSONL once the job is done (add `manifest/` for the manifest)."""
        return reverse("api-exports-download", args=[job.pk]) if job.status == ExportJob.Status.DONE else None


class CriticRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = CriticRun
        fields = ["id", "version", "model_dir", "data", "rows", "valid_json_rate", "band_agreement"]
        fields += ["correctness_agreement", "mae", "metrics", "created_at"]
        ref_name = "CriticRun"


class ExportListApi(APIView):
    permission_classes = [IsAdmin]

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=exports.FORMATS)
        include_demo = serializers.BooleanField(default=False)
        with_execution = serializers.BooleanField(default=False, help_text="sft: add the execution-graded rows")
        min_margin = serializers.FloatField(
            default=exports.DEFAULT_MIN_MARGIN, min_value=0.0, max_value=1.0, help_text="pairwise: in (0, 1]"
        )

        class Meta:
            ref_name = "ExportJobInput"

    @extend_schema(responses=ExportJobSerializer(many=True))
    def get(self, request):
        """The latest 100 export jobs, newest first."""
        jobs = ExportJob.objects.select_related("requested_by")[:100]
        return Response(ExportJobSerializer(jobs, many=True).data)

    @extend_schema(request=InputSerializer, responses={202: ExportJobSerializer})
    def post(self, request):
        """Start an export of labels up to now; poll the job, then download its file."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            job = exports.export_job_start(
                fmt=values["format"],
                include_demo=values["include_demo"],
                with_execution=values["with_execution"],
                min_margin=values["min_margin"],
                user=request.user,
            )
        except exports.ExportError as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from exc
        return Response(ExportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(responses=ExportJobSerializer)
    def get(self, request, pk: int):
        return Response(ExportJobSerializer(get_object_or_404(ExportJob, pk=pk)).data)


class ExportDownloadApi(APIView):
    permission_classes = [IsAdmin]
    what = "data"

    def perform_content_negotiation(self, request, force=False):
        # A file is a file whatever the Accept header asks for; only errors go through a renderer.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(responses={(200, JSONL): OpenApiResponse(OpenApiTypes.BINARY), 404: None})
    def get(self, request, pk: int):
        """The export file of a finished job (JSONL), or with `manifest/` its manifest."""
        return _file(get_object_or_404(ExportJob, pk=pk), self.what)


class ExportParquetApi(ExportDownloadApi):
    what = "parquet"

    @extend_schema(responses={(200, "application/vnd.apache.parquet"): OpenApiResponse(OpenApiTypes.BINARY), 404: None})
    def get(self, request, pk: int):
        """The Parquet copy of a finished export (one schema over every row: loads at any size)."""
        return super().get(request, pk)


class ExportManifestApi(ExportDownloadApi):
    what = "manifest"

    @extend_schema(responses={(200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT), 404: None})
    def get(self, request, pk: int):
        """The manifest of a finished export job (docs/exports.md lists its fields)."""
        return super().get(request, pk)


class CriticRunListApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(responses=CriticRunSerializer(many=True))
    def get(self, request):
        """The stored eval_critic metrics, newest first (the latest 100)."""
        return Response(CriticRunSerializer(CriticRun.objects.all()[:100], many=True).data)
