"""Coalesce per-sample reward calls into batched /rewards/ calls.

OpenRLHF (>= 0.10) and verifiers (0.4, `@vf.reward`) ask for one reward per rollout, many at a time. Sent one by
one, each would be its own long-poll of up to wait_s and its own request. The batcher holds each call for a
short linger (50 ms by default), then sends everything that arrived meanwhile as one /rewards/ call per task
(RewardClient.rewards_by_task) and hands each caller its own row.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from reviewapp_client.client import CRITERIA, Completion, RewardClient


@dataclass(frozen=True)
class Scored:
    """One row of a /rewards/ answer."""

    id: int | None
    status: str | None
    reward: float | None
    subscores: dict[str, float | None]


@dataclass
class _Request:
    task: str
    completion: Completion
    future: Future


class RewardBatcher:
    """Thread-safe: `submit(task, completion)` returns a Future of a Scored; calls close in time share a request.

    A batch closes `linger_s` after its first call or at `max_batch` calls, whichever comes first; up to
    `max_in_flight` batches are scored at once. A failed request fails every call of its batch with the
    client's RewardServiceError. `calls` counts the /rewards/ batches sent (for tests and logs).
    """

    def __init__(
        self,
        client: RewardClient,
        *,
        wait_s: float = 120,
        linger_s: float = 0.05,
        max_batch: int = 256,
        max_in_flight: int = 8,
    ) -> None:
        self.client = client
        self.wait_s = wait_s
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.calls = 0
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="reviewapp-batch")
        self._thread = threading.Thread(target=self._collect, name="reviewapp-batcher", daemon=True)
        self._thread.start()

    def submit(self, task: str, completion: Completion) -> Future:
        """Queue one completion; the Future resolves to its Scored row."""
        future: Future = Future()
        self._queue.put(_Request(task, completion, future))
        return future

    def score(self, task: str, completion: Completion) -> Scored:
        """Block until this completion's row is back (at most about wait_s plus the client's timeout)."""
        return self.submit(task, completion).result()

    async def ascore(self, task: str, completion: Completion) -> Scored:
        """The awaitable form of score, for asyncio callers (verifiers)."""
        return await asyncio.wrap_future(self.submit(task, completion))

    def _collect(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.linger_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            self.calls += 1
            self._pool.submit(self._send, batch)

    def _send(self, batch: list[_Request]) -> None:
        try:
            answer = self.client.rewards_by_task(
                [request.task for request in batch], [request.completion for request in batch], wait_s=self.wait_s
            )
        except BaseException as exc:
            for request in batch:
                request.future.set_exception(exc)
            return
        for row, request in enumerate(batch):
            request.future.set_result(
                Scored(
                    id=answer["ids"][row],
                    status=answer["status"][row],
                    reward=answer["rewards"][row],
                    subscores={name: answer["subscores"].get(name, [None] * len(batch))[row] for name in CRITERIA},
                )
            )


_BATCHERS: dict[tuple[str, str, float], RewardBatcher] = {}
_BATCHERS_LOCK = threading.Lock()


def _batcher_for(url: str, token: str, wait_s: float) -> RewardBatcher:
    # One per process and setting, made under a lock: the first rollouts arrive all at once, and a batcher each
    # would send them one by one.
    with _BATCHERS_LOCK:
        key = (url, token, wait_s)
        if key not in _BATCHERS:
            _BATCHERS[key] = RewardBatcher(RewardClient(url, token), wait_s=wait_s)
        return _BATCHERS[key]


def batcher_from_env() -> RewardBatcher:
    """The batcher for REVIEWAPP_URL, REVIEWAPP_TOKEN and REVIEWAPP_WAIT_S; RuntimeError naming what is unset."""
    missing = [name for name in ("REVIEWAPP_URL", "REVIEWAPP_TOKEN") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"set {' and '.join(missing)} for the reviewapp reward function")
    wait_s = float(os.environ.get("REVIEWAPP_WAIT_S", "120"))
    return _batcher_for(os.environ["REVIEWAPP_URL"], os.environ["REVIEWAPP_TOKEN"], wait_s)
