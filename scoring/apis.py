"""The HTTP API of docs/contract.md. Thin: parse input, call a service or selector, shape the output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.validators import ProhibitSurrogateCharactersValidator
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from scoring import selectors, services
from scoring.core.aggregate.route import Route
from scoring.core.intake.diffcheck import DiffError
from scoring.core.intake.text import unstorable
from scoring.limits import BoundedJSONParser, CursorPages, Pagination, body_too_large, check_batch_bytes
from scoring.models import Patch, PatchStatus, Task
from scoring.roles import CanSubmit, is_staff_reader

log = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler plus our own errors: every refusal is a 4xx with a `detail` message, never a 500."""
    response: Response | None
    if isinstance(exc, services.ServiceError):
        response = Response({"detail": str(exc), **exc.extra}, status=exc.status)
        if exc.status == 429:
            response["Retry-After"] = str(exc.extra.get("retry_after", 30))
        return response
    if isinstance(exc, DiffError):
        return Response({"detail": f"diff: {exc}"}, status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": body_too_large()}, status=413)
    if isinstance(exc, OverflowError):
        # SQLite stores 64-bit integers: an id or a number past that cannot name a row.
        return Response({"detail": "a number in the request is out of range"}, status=400)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or restarting: a retry later succeeds (and with its external_id never duplicates).
        log.warning("database unavailable during %s", context.get("request"), exc_info=True)
        detail = {"detail": "the database is unavailable; retry later"}
        return Response(detail, status=503, headers={"Retry-After": "5"})
    response = drf_exception_handler(exc, context)
    if response is not None and not (isinstance(response.data, dict) and "detail" in response.data):
        # Field errors: keep them, and say in one sentence what was wrong.
        response.data = {"detail": _summary(response.data), "errors": response.data}
    return response


def _summary(errors: Any, prefix: str = "") -> str:
    """Flatten DRF's nested field errors into "field: message; other[2].field: message"."""
    if isinstance(errors, dict):
        parts = [_summary(value, f"{prefix}.{key}" if prefix else str(key)) for key, value in errors.items()]
    elif isinstance(errors, list) and errors and not all(isinstance(e, str) for e in errors):
        parts = [_summary(value, f"{prefix}[{i}]") for i, value in enumerate(errors) if value]
    else:
        messages = errors if isinstance(errors, list) else [errors]
        return f"{prefix}: {' '.join(str(m) for m in messages)}" if prefix else " ".join(map(str, messages))
    return "; ".join(p for p in parts if p)


class ResultSerializer(serializers.Serializer):
    """The Result of docs/contract.md (documentation only: the selector builds the dict)."""

    id = serializers.IntegerField()
    task = serializers.CharField()
    external_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=PatchStatus.choices)
    final_score = serializers.FloatField(allow_null=True)
    weight_profile = serializers.JSONField(allow_null=True)
    route = serializers.ChoiceField(choices=[r.value for r in Route], allow_null=True)
    flags = serializers.ListField(child=serializers.CharField())
    subscores = serializers.JSONField()
    comments = serializers.CharField(allow_blank=True)
    human = serializers.JSONField(allow_null=True)
    meta = serializers.JSONField()

    class Meta:
        ref_name = "Result"


def result_of(request, patch: Patch) -> dict[str, Any]:
    return selectors.patch_result(patch, reveal_hidden=is_staff_reader(request.user), human=selectors.human_of(patch))


class TaskListCreateApi(APIView):
    permission_classes = [CanSubmit]
    parser_classes = [MultiPartParser, FormParser]
    pagination_class = Pagination  # read by drf-spectacular too: the schema shows the page envelope

    class InputSerializer(serializers.Serializer):
        spec = serializers.CharField(
            help_text="The task spec as JSON (docs/contract.md), without repo / hidden_tests; "
            '"shared": true lets other clients see and score the task.'
        )
        repo = serializers.FileField(help_text="The base repository as .tar.gz or .zip.")
        hidden_tests = serializers.FileField(required=False, help_text="Held-out tests as .tar.gz or .zip.")
        reference = serializers.FileField(
            required=False,
            help_text="The reference solution for the discriminator: a unified diff against the repo, or a .tar.gz "
            "/ .zip of files that overlay it. It must apply and pass the visible tests (else 400); patches never "
            "see it.",
        )

        class Meta:
            ref_name = "TaskInput"

    class OutputSerializer(serializers.ModelSerializer):
        hidden_sha256 = serializers.SerializerMethodField()
        spec = serializers.SerializerMethodField()

        class Meta:
            model = Task
            fields = ["name", "spec", "shared", "base_sha256", "hidden_sha256", "created_at"]
            ref_name = "Task"

        def _insider(self, task: Task) -> bool:
            """The task's owner, reviewers and admins; other clients of a shared task are not."""
            user = self.context["request"].user
            return is_staff_reader(user) or (task.created_by_id is not None and task.created_by_id == user.pk)

        def get_hidden_sha256(self, task: Task) -> str:
            # A hash lets a client confirm a guess of the hidden tests' content: their owner's business only.
            return task.hidden_sha256 if self._insider(task) else ""

        def get_spec(self, task: Task) -> dict[str, Any]:
            spec = dict(task.spec, shared=task.shared)
            if not self._insider(task):
                spec = selectors.spec_for_outsiders(spec)
            return spec

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        paginator = self.pagination_class()
        tasks = selectors.tasks_visible_to(request.user).order_by("name")
        page = paginator.paginate_queryset(tasks, request, view=self)
        return paginator.get_paginated_response(
            self.OutputSerializer(page, many=True, context={"request": request}).data
        )

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = services.task_create(
            spec_data=data.validated_data["spec"],
            repo=data.validated_data["repo"],
            hidden_tests=data.validated_data.get("hidden_tests"),
            user=request.user,
            reference=data.validated_data.get("reference"),
        )
        return Response(self.OutputSerializer(task, context={"request": request}).data, status=status.HTTP_201_CREATED)


class TaskDetailApi(APIView):
    permission_classes = [CanSubmit]

    @extend_schema(responses=TaskListCreateApi.OutputSerializer)
    def get(self, request, name: str):
        task = get_object_or_404(selectors.tasks_visible_to(request.user), name=name)
        return Response(TaskListCreateApi.OutputSerializer(task, context={"request": request}).data)


class DiffField(serializers.CharField):
    """A diff's text, kept as sent. CharField's own check for surrogates walks the text one character at a time in
    Python, a fifth of a 1000-patch batch's time; diffcheck.parse_diff refuses the same texts when it encodes them
    as UTF-8 ("diff is not valid UTF-8 text"), before anything is stored."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitSurrogateCharactersValidator)]


class ExternalIdField(serializers.CharField):
    """A client's key for a patch, at most LIMITS["EXTERNAL_ID_CHARS"] characters (the column's width)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", settings.LIMITS["EXTERNAL_ID_CHARS"])
        kwargs.setdefault("error_messages", {"max_length": "at most {max_length} characters (the external_id limit)"})
        super().__init__(**kwargs)


class PatchInputSerializer(serializers.Serializer):
    task = serializers.CharField(max_length=100)
    diff = DiffField()
    external_id = ExternalIdField(required=False, allow_null=True)
    metadata = serializers.DictField(
        required=False, default=dict, help_text="Any JSON object, up to REVIEWAPP_MAX_METADATA_BYTES as UTF-8 JSON."
    )

    class Meta:
        ref_name = "PatchInput"

    def validate_metadata(self, value: dict) -> dict:
        """Refuse metadata past its size limit, and text no database stores (scoring.core.intake.text) at any depth."""
        limit = settings.LIMITS["METADATA_BYTES"]
        size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValidationError(
                f"metadata is {size} bytes as JSON; the limit is {limit} (REVIEWAPP_MAX_METADATA_BYTES)"
            )
        for text in _strings(value):
            if reason := unstorable(text):
                raise ValidationError(f"metadata {reason}")
        return value


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included (with a stack: the nesting is the client's to choose)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class AcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    code = serializers.IntegerField(required=False)
    detail = serializers.CharField(required=False)

    class Meta:
        ref_name = "PatchAccepted"


class PatchListCreateApi(APIView):
    permission_classes = [CanSubmit]
    parser_classes = [BoundedJSONParser]
    # Patches arrive while a client pages through them: cursor pages (scoring.limits.CursorPages). Read by
    # drf-spectacular too: the schema shows the page envelope and its parameters.
    pagination_class = CursorPages

    class FilterSerializer(serializers.Serializer):
        """The list's query: each filter optional, a malformed one a 400 naming it."""

        task = serializers.CharField(required=False, max_length=100)
        status = serializers.ChoiceField(choices=PatchStatus.values, required=False)
        since = serializers.DateTimeField(required=False, help_text="ISO 8601 time; patches created at or after it")
        ids = serializers.RegexField(
            r"^\s*\d{1,18}\s*(,\s*\d{1,18}\s*)*$",
            required=False,
            help_text=f"comma-separated patch ids, at most {settings.LIMITS['BATCH_ITEMS']}",
            error_messages={"invalid": "a comma-separated list of patch ids"},
        )

        class Meta:
            ref_name = "PatchListFilter"

        def validate_ids(self, value: str) -> list[int]:
            ids = [int(i) for i in value.split(",")]
            limit = settings.LIMITS["BATCH_ITEMS"]
            if len(ids) > limit:
                raise ValidationError(f"a comma-separated list of at most {limit} patch ids")
            return ids

    @extend_schema(parameters=[FilterSerializer], responses=ResultSerializer(many=True))
    def get(self, request):
        # An empty filter (`?task=&status=`) filters nothing, as docs/contract.md writes the query.
        query = self.FilterSerializer(data={k: v for k, v in request.query_params.items() if v != ""})
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        queryset = selectors.patches_visible_to(request.user)
        if "task" in filters:
            queryset = queryset.filter(task__name=filters["task"])
        if "status" in filters:
            queryset = queryset.filter(status=filters["status"])
        if "since" in filters:
            queryset = queryset.filter(created_at__gte=filters["since"])
        if "ids" in filters:
            queryset = queryset.filter(pk__in=filters["ids"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.with_results(queryset), request, view=self)
        return paginator.get_paginated_response([result_of(request, p) for p in page])

    @extend_schema(
        request=PatchInputSerializer,
        responses={200: AcceptedSerializer, 202: AcceptedSerializer, 409: AcceptedSerializer},
        description=(
            f"One patch object, or a list of up to {settings.LIMITS['BATCH_ITEMS']} (then the answer is a list of "
            "per-item results)."
        ),
    )
    def post(self, request):
        if isinstance(request.data, list):
            return self._post_many(request)
        data = PatchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = data.validated_data
        task = selectors.tasks_visible_to(request.user).filter(name=item["task"]).first()
        if task is None:
            raise ValidationError({"task": f"unknown task {item['task']!r}"})
        submission = services.patch_submit(
            client=request.user,
            task=task,
            diff=item["diff"],
            external_id=item.get("external_id"),
            metadata=item.get("metadata"),
        )
        code = status.HTTP_202_ACCEPTED if submission.created else status.HTTP_200_OK
        return Response({"id": submission.patch.pk, "status": submission.patch.status}, status=code)

    def _post_many(self, request):
        limit = settings.LIMITS["BATCH_ITEMS"]
        if not request.data or len(request.data) > limit:
            raise ValidationError({"detail": f"a batch holds 1 to {limit} patches, got {len(request.data)}"})
        check_batch_bytes(request.data)
        data = PatchInputSerializer(data=request.data, many=True)
        data.is_valid(raise_exception=True)
        names = {item["task"] for item in data.validated_data}
        tasks = {t.name: t for t in selectors.tasks_visible_to(request.user).filter(name__in=names)}
        out = []
        for sub in services.patch_submit_many(client=request.user, items=data.validated_data, tasks=tasks):
            if sub.error is not None:
                out.append(
                    {
                        "id": sub.error.extra.get("patch_id"),
                        "status": "error",
                        "code": sub.error.status,
                        "detail": str(sub.error),
                    }
                )
            else:
                out.append({"id": sub.patch.pk, "status": sub.patch.status, "code": 202 if sub.created else 200})
        return Response(out, status=status.HTTP_202_ACCEPTED)


class PatchDetailApi(APIView):
    permission_classes = [CanSubmit]

    def _patch(self, request, pk: int) -> Patch:
        return get_object_or_404(selectors.with_results(selectors.patches_visible_to(request.user)), pk=pk)

    @extend_schema(responses=ResultSerializer)
    def get(self, request, pk: int):
        return Response(result_of(request, self._patch(request, pk)))

    @extend_schema(responses={200: AcceptedSerializer, 409: AcceptedSerializer})
    def delete(self, request, pk: int):
        patch = self._patch(request, pk)
        if not services.patch_cancel(patch=patch):
            patch.refresh_from_db()
            raise services.Conflict(f"patch {pk} is {patch.status}; only queued patches can be cancelled")
        return Response({"id": pk, "status": PatchStatus.CANCELLED})


class RewardsApi(APIView):
    """Batch rewards for an RL trainer: submit completions, wait up to wait_s, get rewards in order."""

    permission_classes = [CanSubmit]
    parser_classes = [BoundedJSONParser]

    class InputSerializer(serializers.Serializer):
        task = serializers.CharField(max_length=100)
        completions = serializers.ListField(
            child=serializers.JSONField(), min_length=1, max_length=settings.LIMITS["BATCH_ITEMS"]
        )
        external_ids = serializers.ListField(child=ExternalIdField(allow_null=True), required=False)
        wait_s = serializers.FloatField(min_value=0, max_value=600, default=120)

        class Meta:
            ref_name = "RewardsInput"

        def validate(self, attrs):
            ids = attrs.get("external_ids")
            if ids is not None and len(ids) != len(attrs["completions"]):
                raise ValidationError({"external_ids": "must have one entry per completion"})
            check_batch_bytes(attrs["completions"])
            for index, completion in enumerate(attrs["completions"]):
                if not isinstance(completion, str | list):
                    raise ValidationError({"completions": f"item {index} is neither a string nor a message list"})
            return attrs

    class OutputSerializer(serializers.Serializer):
        ids = serializers.ListField(child=serializers.IntegerField())
        status = serializers.ListField(child=serializers.CharField())
        rewards = serializers.ListField(child=serializers.FloatField(allow_null=True))
        subscores = serializers.DictField(child=serializers.ListField(child=serializers.FloatField(allow_null=True)))

        class Meta:
            ref_name = "Rewards"

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request):
        # The route serves scoring.rewards_async.RewardsWaitApi, which waits on the event loop between these two
        # steps; this synchronous form answers at once.
        ids, _ = self.submit(request)
        return Response(selectors.rewards_of(ids=ids))

    def submit(self, request) -> tuple[list[int], float]:
        """Validate the body and store every completion: the patch ids in order, and the seconds to wait."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        task = selectors.tasks_visible_to(request.user).filter(name=body["task"]).first()
        if task is None:
            raise ValidationError({"task": f"unknown task {body['task']!r}"})
        external_ids = body.get("external_ids") or [None] * len(body["completions"])
        ids = services.rewards_submit(
            client=request.user, task=task, completions=body["completions"], external_ids=external_ids
        )
        return ids, body["wait_s"]


#: OpenAPI links (https://spec.openapis.org/oas/v3.0.3#link-object): what a created resource's answer lets a client
#: call next. Schemathesis follows them in its stateful tests; a generated client can too.
#: (producer path, method, status) -> {link name: (target operationId, {parameter: runtime expression})}
SCHEMA_LINKS: dict[tuple[str, str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("/api/v1/patches/", "post", "202"): {
        "GetPatch": ("v1_patches_retrieve", {"id": "$response.body#/id"}),
        "CancelPatch": ("v1_patches_destroy", {"id": "$response.body#/id"}),
    },
    ("/api/v1/patches/", "post", "200"): {"GetPatch": ("v1_patches_retrieve", {"id": "$response.body#/id"})},
    ("/api/v1/tasks/", "post", "201"): {"GetTask": ("v1_tasks_retrieve", {"name": "$response.body#/name"})},
    ("/api/v1/exports/", "post", "202"): {
        "GetExport": ("v1_exports_retrieve", {"id": "$response.body#/id"}),
        "GetExportManifest": ("v1_exports_manifest_retrieve", {"id": "$response.body#/id"}),
    },
    ("/api/v1/weights/", "post", "201"): {
        "GetProfile": ("v1_weights_retrieve", {"id": "$response.body#/id"}),
        "ActivateProfile": ("v1_weights_activate_create", {"id": "$response.body#/id"}),
    },
}


def schema_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular post-processing hook: add SCHEMA_LINKS to the responses they start from."""
    for (path, method, code), links in SCHEMA_LINKS.items():
        response = result.get("paths", {}).get(path, {}).get(method, {}).get("responses", {}).get(code)
        if response is not None:
            response["links"] = {
                name: {"operationId": target, "parameters": parameters} for name, (target, parameters) in links.items()
            }
    return result
