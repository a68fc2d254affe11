"""The size and shape limits of API input (settings.LIMITS), enforced before a view reads the data.

Every refusal is a 4xx that names the limit and the variable that sets it: 413 for bytes, 400 for the rest.
Kept apart from scoring.apis because DRF imports its default parser and paginator while `rest_framework.views`
itself is still loading.
"""

from __future__ import annotations

import codecs
import json
import math
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException, NotFound, ParseError, ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response


def body_too_large() -> str:
    """The 413 message for a request body past LIMITS["REQUEST_BYTES"]."""
    return f"request body larger than {settings.LIMITS['REQUEST_BYTES']} bytes (REVIEWAPP_MAX_REQUEST_BYTES)"


class TooLarge(APIException):
    status_code = 413
    default_detail = "request too large"
    default_code = "too_large"


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with every failure a 400 (or 413) that names it, never a 500.

    DRF reads a JSON body straight from the socket, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE never sees it: the
    size is bounded here. A body nested deeper than Python's recursion limit raised RecursionError (a 500), an
    unknown or non-text charset a LookupError or TypeError, 1e400 became an Infinity that PostgreSQL's jsonb
    refuses: each is a ParseError now, and nesting is bounded by LIMITS["JSON_DEPTH"].
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.LIMITS["REQUEST_BYTES"]
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise TooLarge(body_too_large())
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            if not codecs.lookup(encoding)._is_text_encoding:  # rot13, base64...: codecs that bytes.decode refuses
                raise LookupError(encoding)
            text = raw.decode(encoding)
        except LookupError as exc:
            raise ParseError(f"JSON parse error - unknown text encoding {encoding!r}") from exc
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - the body is not valid {encoding}: {exc.reason}") from exc
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError as exc:
            raise ParseError(_too_deep()) from exc
        except ValueError as exc:  # JSONDecodeError, too many digits, Infinity / NaN
            raise ParseError(f"JSON parse error - {exc}") from exc
        if _depth_over(data, settings.LIMITS["JSON_DEPTH"]):
            raise ParseError(_too_deep())
        return data


def _too_deep() -> str:
    depth = settings.LIMITS["JSON_DEPTH"]
    return f"JSON parse error - nested deeper than {depth} levels (REVIEWAPP_MAX_JSON_DEPTH)"


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """True when `value` nests lists and objects more than `limit` levels deep (with a stack, not recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class Pagination(LimitOffsetPagination):
    """LimitOffsetPagination with bounds: `?limit=` above LIMITS["PAGE_SIZE"] is lowered to it (DRF's max_limit),
    and `?offset=` past LIMITS["PAGE_OFFSET"] is a 400. Python reads any number; a database cannot seek past
    64 bits, and `?limit=100000000000000000000` was a 500."""

    @property
    def max_limit(self) -> int:  # type: ignore[override]  # DRF declares a class attribute; read from settings here
        return settings.LIMITS["PAGE_SIZE"]

    def get_offset(self, request) -> int:
        offset = super().get_offset(request)
        if offset > settings.LIMITS["PAGE_OFFSET"]:
            raise ValidationError({"offset": f"at most {settings.LIMITS['PAGE_OFFSET']}"})
        return offset


class CursorPages(CursorPagination):
    """Pages of a list that grows while a client reads it (the patch list): newest first, each page continuing
    below the last id of the one before, so rows added between two requests neither shift a row onto the next
    page twice nor push one past it unseen, as offsets did. https://www.django-rest-framework.org/api-guide/pagination/#cursorpagination

    The envelope keeps LimitOffsetPagination's keys (`count`, `next`, `previous`, `results`); `?limit=` sets the
    page size up to LIMITS["PAGE_SIZE"]; `?offset=` is a 400 (it would silently return the first page again).
    """

    ordering = "-id"
    page_size_query_param = "limit"
    count = 0

    @property
    def max_page_size(self) -> int:  # type: ignore[override]  # DRF's class attribute, read from settings here
        return settings.LIMITS["PAGE_SIZE"]

    def paginate_queryset(self, queryset, request, view=None):
        if "offset" in request.query_params:
            raise ValidationError({"offset": "this list pages by cursor: follow `next` instead"})
        self.count = queryset.count()
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """DRF's cursor, refused with a 400 when it is not one this server wrote: a garbled cursor is a 404 in
        DRF, and a cursor whose position is not an id reached the database filter (a 500)."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError({"cursor": "not a cursor from this list: follow `next` or `previous`"}) from exc
        if cursor is not None and cursor.position is not None:
            position = cursor.position
            if not (position.isdigit() and int(position) < 2**63):
                raise ValidationError({"cursor": "not a cursor from this list: follow `next` or `previous`"})
        return cursor

    def get_paginated_response(self, data):
        return Response(
            {"count": self.count, "next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}
        )

    def get_paginated_response_schema(self, schema):
        envelope = super().get_paginated_response_schema(schema)
        envelope["required"] = ["count", *envelope.get("required", [])]
        envelope["properties"] = {"count": {"type": "integer", "example": 123}, **envelope["properties"]}
        return envelope


def check_batch_bytes(items: list[Any]) -> None:
    """Raise TooLarge (413) when a batch's items, as UTF-8 JSON, pass LIMITS["BATCH_BYTES"]."""
    limit = settings.LIMITS["BATCH_BYTES"]
    size = sum(len(json.dumps(item, ensure_ascii=False).encode("utf-8", "surrogatepass")) for item in items)
    if size > limit:
        raise TooLarge(f"the batch is {size} bytes as JSON; the limit is {limit} (REVIEWAPP_MAX_BATCH_BYTES)")
