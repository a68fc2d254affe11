"""POST /api/v1/tasks/import/: the bulk task import (scoring.task_import) over HTTP, for a JSONL upload."""

from __future__ import annotations

import json

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.core.intake.dataset_tasks import ColumnMap
from scoring.roles import CanSubmit
from scoring.task_import import tasks_import

MAX_ROWS = 1000  # per request: each row registers a task (archive, base-tree extraction) before the answer
MAX_BYTES = 64 * 1024 * 1024


class TaskImportApi(APIView):
    """Register one task per JSONL row (MBPP shape by default; `columns` renames). Existing names are skipped."""

    permission_classes = [CanSubmit]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        # A field named `data`, as the form posts it: it shadows Serializer.data, which this input never reads.
        data = serializers.FileField(  # type: ignore[assignment]  # see above
            help_text=f"JSONL, one task row a line, at most {MAX_ROWS} rows"
        )
        columns = serializers.CharField(required=False, allow_blank=True, default="", help_text="part=column,...")
        prefix = serializers.CharField(required=False, allow_blank=True, default="", max_length=40)
        holdout = serializers.IntegerField(required=False, default=1, min_value=0, max_value=100)

        class Meta:
            ref_name = "TaskImportInput"

    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        existing = serializers.IntegerField()
        refused = serializers.IntegerField()
        refused_by_reason = serializers.DictField(child=serializers.IntegerField())
        refused_rows = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "TaskImportSummary"

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        upload = body["data"]
        if upload.size > MAX_BYTES:
            raise ValidationError({"data": f"larger than {MAX_BYTES} bytes"})
        try:
            columns = ColumnMap.parse(body["columns"])
            lines = [line for line in upload.read().decode("utf-8").splitlines() if line.strip()]
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(
                {"columns" if isinstance(exc, ValueError) and "column" in str(exc) else "data": str(exc)}
            ) from exc
        if len(lines) > MAX_ROWS:
            raise ValidationError({"data": f"{len(lines)} rows; at most {MAX_ROWS} per request"})
        rows = []
        for number, line in enumerate(lines, start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                rows.append(f"line {number} is not JSON ({exc.msg})")
        summary = tasks_import(
            rows=rows, columns=columns, prefix=body["prefix"], holdout=body["holdout"], user=request.user
        )
        return Response(summary.as_json())
