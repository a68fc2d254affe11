"""`POST /api/v1/rewards/` served on the event loop: a waiting call holds no thread.

The call runs in three steps. Submission (DRF's authentication, permissions, throttles, validation and
services.rewards_submit, exactly as RewardsApi does them) and the answer (selectors.rewards_of) are short
synchronous calls on one of the web process's bounded threads (reviewapp.asgi); between them the wait is an
`await` on scoring.notify, woken when a patch finishes. So one web process holds hundreds of waiting trainers
with a handful of threads, and the answer keeps the documented shape.

DRF has no async views, and adrf would replace the whole view stack for one endpoint; instead this class keeps
RewardsApi (its serializers, permission, throttles, error handler and the OpenAPI schema drf-spectacular reads
from `post`) and only splits DRF's `dispatch` around the wait.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase
from rest_framework.request import Request
from rest_framework.response import Response

from scoring import notify, selectors
from scoring.apis import RewardsApi
from scoring.models import TERMINAL_STATUSES, Patch


def unfinished(ids: set[int]) -> set[int]:
    """The ids among `ids` whose patch has not reached a done status."""
    return set(Patch.objects.filter(pk__in=ids).exclude(status__in=TERMINAL_STATUSES).values_list("pk", flat=True))


class RewardsWaitApi(RewardsApi):
    """RewardsApi whose POST waits for the rewards without holding a thread (other methods stay synchronous)."""

    @classmethod
    def as_view(cls, **initkwargs: Any):
        sync_view = super().as_view(**initkwargs)

        async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method != "POST":
                return await sync_to_async(sync_view)(request, *args, **kwargs)
            self = cls(**initkwargs)
            self.setup(request, *args, **kwargs)
            return await self.post_and_wait(request, *args, **kwargs)

        # What DRF's as_view sets and what drf-spectacular and the middleware read.
        view.cls = cls  # type: ignore[attr-defined]  # what APIView.as_view sets on its view, for the schema
        view.initkwargs = initkwargs  # type: ignore[attr-defined]  # what APIView.as_view sets on its view, for the schema
        view.csrf_exempt = True  # type: ignore[attr-defined]  # SessionAuthentication checks CSRF itself
        return view

    def get_view_name(self) -> str:
        return "Rewards Api"  # the name the browsable API and OPTIONS showed before the wait moved here

    async def post_and_wait(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Submit, wait on the event loop until every patch is done or wait_s passed, then answer."""
        submitted = await sync_to_async(self._submit)(request, *args, **kwargs)
        if isinstance(submitted, HttpResponseBase):
            return submitted
        drf_request, ids, wait_s = submitted
        try:
            if wait_s > 0:
                await notify.wait_for_patches(ids, wait_s, unfinished=sync_to_async(unfinished))
        except Exception as exc:  # the database went away while waiting: DRF's handler answers 503, not 500
            return await sync_to_async(self._respond)(drf_request, error=exc)
        return await sync_to_async(self._respond)(drf_request, ids=ids)

    def _submit(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[Request, list[int], float] | Response:
        """DRF's dispatch up to the wait: (request, ids, wait_s), or the rendered refusal."""
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        try:
            self.initial(drf_request, *args, **kwargs)
            ids, wait_s = self.submit(drf_request)
        except Exception as exc:
            return self._respond(drf_request, error=exc)
        return drf_request, ids, wait_s

    def _respond(self, request: Request, *, ids: list[int] | None = None, error: Exception | None = None) -> Response:
        """The rendered answer for `ids`, or DRF's answer to `error` (4xx, or 503 when the database is down)."""
        try:
            if error is not None:
                raise error
            response = Response(selectors.rewards_of(ids=ids or []))
        except Exception as exc:
            response = self.handle_exception(exc)
        response = self.finalize_response(request, response, *self.args, **self.kwargs)
        return response.render()
