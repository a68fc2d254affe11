"""Guards every view shares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from rest_framework.views import APIView

from scoring.core.intake.text import unstorable

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RefuseUnstorableTextMiddleware(MiddlewareMixin):  # sync and async (reviewapp.asgi)
    """Answer 400 when a query parameter, or a field of a form posted to a page, holds text no database stores.

    PostgreSQL cannot hold NUL in text, so a NUL reaching a query or a row is a 500 there (scoring.core.intake.text).
    Django's form fields refuse it one by one, but the pages read filters, sliders and notes from request.GET
    and request.POST directly. API views get a JSON error; their serializers check the bodies they accept.
    """

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        api = isinstance(getattr(view, "cls", None), type) and issubclass(view.cls, APIView)
        for where, text in _fields(request, forms=not api):
            if reason := unstorable(text):
                message = f"A {where} {reason}, which cannot be stored or searched for."
                if api:
                    return JsonResponse({"detail": message}, status=400)
                return HttpResponseBadRequest(message, content_type="text/plain")
        return None


def _fields(request: HttpRequest, *, forms: bool) -> Iterator[tuple[str, str]]:
    """(where, text) for every query parameter and, with `forms`, every posted form field: names and values."""
    sources = [("query parameter", request.GET)]
    if forms and request.method == "POST" and request.content_type in FORM_TYPES:
        sources.append(("form field", request.POST))
    for where, data in sources:
        for key, values in data.lists():
            yield where, key
            for value in values:
                yield where, value


class NumberOutOfRangeMiddleware(MiddlewareMixin):  # sync and async (reviewapp.asgi)
    """Answer 400 when a number from the request (a path's <int:...>, a query parameter) is past what the database
    stores: SQLite raises OverflowError for integers past 64 bits, which would be a 500. API views answer it in
    scoring.apis.exception_handler with the API's error shape."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OverflowError):
            return HttpResponseBadRequest("A number in the request is out of range.", content_type="text/plain")
        return None
