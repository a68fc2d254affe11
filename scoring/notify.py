"""Patch-finished notifications over Redis pub/sub: workers publish, `/rewards/` waits on them without a thread.

A worker publishes a patch's id on one channel when the patch reaches one of scoring.models.TERMINAL_STATUSES
(after the commit that wrote it). Each web process holds one subscription per event loop, whatever the number of waiting
calls, and wakes the calls that wait for that id. A notification is a hint, never the truth: the database is
read before answering, at least every `REWARDS_RECHECK_S`, and after every (re)subscription, so a lost message
(Redis restarting, a listener reconnecting) only delays an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable

import redis
import redis.asyncio
from django.conf import settings

log = logging.getLogger(__name__)

CHANNEL = "reviewapp:patch-done"
#: Put in a waiter's queue when the listener (re)subscribed: messages may have been missed, read the database.
RECHECK = 0

_publisher: redis.Redis | None = None


def redis_url() -> str:
    """REDIS_URL in the form redis-py reads (Celery's `redis+socket://` becomes `unix://`)."""
    url = settings.REDIS_URL
    return "unix://" + url.removeprefix("redis+socket://") if url.startswith("redis+socket://") else url


def patch_done(patch_id: int) -> None:
    """Tell every web process that patch `patch_id` is done. Never raises: a lost message only delays a waiter."""
    global _publisher
    try:
        if _publisher is None:
            _publisher = redis.Redis.from_url(redis_url(), socket_timeout=2, socket_connect_timeout=2)
        _publisher.publish(CHANNEL, str(patch_id))
    except (redis.RedisError, OSError):
        log.warning("could not publish that patch %s is done; its waiters read the database later", patch_id)


class Listener:
    """One subscription to CHANNEL for one event loop, fanning each id out to the queues that wait for it."""

    def __init__(self) -> None:
        self.waiters: dict[int, set[asyncio.Queue[int]]] = {}
        self.subscribed = asyncio.Event()
        # A fresh context: the task outlives the request that started it, and must not run in its thread context.
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name="reviewapp-patch-done-listener", context=contextvars.Context()
        )

    def watch(self, ids: Iterable[int], queue: asyncio.Queue[int]) -> None:
        for patch_id in ids:
            self.waiters.setdefault(patch_id, set()).add(queue)

    def unwatch(self, ids: Iterable[int], queue: asyncio.Queue[int]) -> None:
        for patch_id in ids:
            queues = self.waiters.get(patch_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self.waiters[patch_id]

    def _wake_all(self) -> None:
        for queue in {q for queues in self.waiters.values() for q in queues}:
            queue.put_nowait(RECHECK)

    async def _run(self) -> None:
        while True:
            client = redis.asyncio.Redis.from_url(redis_url(), socket_connect_timeout=2, health_check_interval=30)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.subscribed.set()
                    self._wake_all()  # whatever finished while we were not subscribed is in the database
                    async for message in pubsub.listen():
                        try:
                            patch_id = int(message["data"])
                        except (TypeError, ValueError):
                            continue
                        for queue in self.waiters.get(patch_id, ()):
                            queue.put_nowait(patch_id)
            except (redis.RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("patch notifications interrupted (%s); waiters fall back to the database", exc)
                await asyncio.sleep(1)
            finally:
                await client.aclose()


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Listener] = weakref.WeakKeyDictionary()


def _listener() -> Listener:
    loop = asyncio.get_running_loop()
    listener = _listeners.get(loop)
    if listener is None or listener.task.done():
        listener = _listeners[loop] = Listener()
    return listener


async def wait_for_patches(
    ids: list[int], timeout_s: float, *, unfinished: Callable[[set[int]], Awaitable[set[int]]]
) -> set[int]:
    """Wait, holding no thread, until `unfinished(ids)` is empty or `timeout_s` passed; the ids still unfinished.

    `unfinished` reads the database (the truth); it runs once at the start, when every notified id is done,
    after a resubscription, and at least every REWARDS_RECHECK_S.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    recheck_s = settings.REVIEWAPP["REWARDS_RECHECK_S"]
    listener = _listener()
    queue: asyncio.Queue[int] = asyncio.Queue()
    listener.watch(ids, queue)  # before the first read, so a patch finishing in between is not missed
    try:
        if not listener.subscribed.is_set():
            # The first wait of a process: a message published before the subscription would be lost.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.subscribed.wait(), timeout=min(1.0, timeout_s))
        left = await unfinished(set(ids))
        while left:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                woken = [await asyncio.wait_for(queue.get(), timeout=min(recheck_s, remaining))]
            except TimeoutError:
                left = await unfinished(left)
                continue
            while not queue.empty():
                woken.append(queue.get_nowait())
            left -= set(woken)
            if not left:
                left = await unfinished(set(ids))  # confirm in the database: a message is a hint
            elif RECHECK in woken:
                left = await unfinished(left)
        return left
    finally:
        listener.unwatch(ids, queue)
