"""The pages Django shows for 404 and 500: short, naming nothing of the server.

With DEBUG off (the default, also under `make run`) Django already hides its debug pages; these make the answer
match the caller too: the API's error shape (`{"detail": ...}`) under /api/, plain text elsewhere. They never list
URL patterns, settings or source.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

MESSAGES = {
    404: "Not found.",
    500: "Internal error; it has been logged.",
}


def _answer(request: HttpRequest, status: int) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": MESSAGES[status]}, status=status)
    return HttpResponse(MESSAGES[status], status=status, content_type="text/plain; charset=utf-8")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _answer(request, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    return _answer(request, 500)
