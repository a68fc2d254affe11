"""WhiteNoise for an async middleware chain.

WhiteNoise's middleware is synchronous only, and one synchronous middleware makes Django run the rest of the
chain, the view included, inside a thread that waits for it: a waiting /rewards/ call would hold a thread again
(reviewapp.asgi). This one serves static files from a thread and passes everything else on without one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware as SyncWhiteNoiseMiddleware


class WhiteNoiseMiddleware(SyncWhiteNoiseMiddleware):
    """WhiteNoiseMiddleware that is sync- and async-capable."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, **kwargs: Any) -> None:
        super().__init__(get_response, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:  # development: looks on disk, so off the loop
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            response = await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
            # Django would read a synchronous file body whole, with a warning; stream it chunk by chunk instead.
            response.streaming_content = _read_off_the_loop(iter(response.streaming_content))
            return response
        return await self.get_response(request)


async def _read_off_the_loop(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks of a synchronous iterator, each read on a pool thread."""
    # next(iterator, default): asgiref's types keep only the one-argument form of next.
    while chunk := await sync_to_async(next, thread_sensitive=False)(chunks, b""):  # type: ignore[call-arg]  # see above
        yield chunk
