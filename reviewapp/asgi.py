"""The ASGI entry point (`uvicorn reviewapp.asgi:application`): Django on an event loop with a bounded thread pool.

Stock Django gives every request its own thread for its synchronous code (middleware, ORM, sync views), kept until
the request ends: a call that waits on the loop still costs a thread, and the thread count follows the number of
open requests. Here every request is given one of REVIEWAPP_WEB_THREADS single-thread executors instead (the
least busy one), through asgiref's ThreadSensitiveContext(executor=...): a request's synchronous calls still run
one after another on one thread (Django's thread-local database connection stays consistent within a call), and
requests on the same thread take turns between their calls. A waiting /rewards/ call (scoring.rewards_async)
holds none of them.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")

import django
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler


class Lane(ThreadPoolExecutor):
    """One thread that runs the synchronous calls of the requests given to it, counting the calls not yet done."""

    def __init__(self, index: int) -> None:
        super().__init__(max_workers=1, thread_name_prefix=f"web-{index}")
        self.requests = 0  # open requests given to this lane (changed on the event loop only)
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            self._pending += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future) -> None:
        with self._lock:
            self._pending -= 1


class BoundedASGIHandler(ASGIHandler):
    """Django's ASGI handler with every request's synchronous code on one of `threads` threads."""

    def __init__(self, threads: int) -> None:
        super().__init__()
        if threads < 1:
            raise ValueError("REVIEWAPP_WEB_THREADS must be at least 1")
        self.lanes = [Lane(i) for i in range(threads)]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django's own refusal
        # Least busy first: calls queued on the thread, then open requests (a waiting call queues nothing).
        lane = min(self.lanes, key=lambda lane: (lane.pending, lane.requests))
        lane.requests += 1
        try:
            async with ThreadSensitiveContext(executor=lane):
                await self.handle(scope, receive, send)
        finally:
            lane.requests -= 1


django.setup(set_prefix=False)
application = BoundedASGIHandler(threads=settings.WEB_THREADS)
