"""Guards every page shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from rest_framework.views import APIView

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RefuseNulInFormsMiddleware:
    """Answer 400 to a form posted to a page when one of its fields holds a NUL character.

    PostgreSQL cannot store NUL in text and no form here has a use for it. Django's form fields refuse it one by
    one, but the review and weights pages read their sliders and notes from request.POST directly. The API's
    serializers refuse it themselves, with the API's JSON errors, so API views are left to them.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        api_view = isinstance(getattr(view, "cls", None), type) and issubclass(view.cls, APIView)
        if request.method != "POST" or request.content_type not in FORM_TYPES or api_view:
            return None
        if any("\x00" in key or "\x00" in value for key, values in request.POST.lists() for value in values):
            return HttpResponseBadRequest(
                "A form field holds a NUL character, which cannot be stored.", content_type="text/plain"
            )
        return None
