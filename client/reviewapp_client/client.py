"""A Python client for reviewapp's reward API, and reward functions for RL trainers.

Needs httpx only: no Django, no torch. Installed on its own with `pip install ./client`; the service imports
this same code as `scoring.client`.

    from reviewapp_client import RewardClient, trl_reward_func
    client = RewardClient("http://127.0.0.1:8000", token="...")
    results = client.score(task="gcd", diffs=[...], wait_s=120)      # Results, in order
    reward_fn = trl_reward_func(client, task_column="task")         # a GRPOTrainer reward_funcs entry

What each status is worth as a reward (None: no reward to train on) is reviewapp_client.semantics.reward_for.
docs/rl.md shows every adapter at work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger(__name__)

#: The criteria of scoring.core.critics.registry.CRITERIA, in the same order. Mirrored rather than imported because
#: the registry imports every critic (scipy, pylint glue: about a second) and a trainer only needs the names;
#: tests/client/test_offline.py fails when the two drift apart.
CRITERIA: tuple[str, ...] = ("correctness", "style", "performance", "security")

MAX_BATCH = 1000  # completions per /rewards/ request and patches per POST /patches/ list: the server's limit
RETRY_STATUSES = frozenset({429, 502, 503, 504})  # busy or restarting; any other 4xx or 5xx is final
FETCH_CONCURRENCY = 8  # tasks scored in parallel by rewards_by_task

Completion = str | list[dict[str, Any]]


class RewardServiceError(Exception):
    """The service refused a request (its `detail` is the message) or stayed unreachable after every retry.

    `status` is the HTTP status, or None when no answer came back at all.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


# --- the parts the sync and async clients share ----------------------------------------------------------


class _Base:
    """Configuration, request shapes and the retry policy; the subclasses only do the I/O."""

    def __init__(
        self, base_url: str, token: str, *, timeout_s: float = 30, retries: int = 3, backoff_s: float = 0.5
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._http_options: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": {"Authorization": f"Token {token}", "Accept": "application/json"},
            "timeout": httpx.Timeout(timeout_s),
            "limits": httpx.Limits(max_connections=32, max_keepalive_connections=16),
        }

    def _timeout(self, wait_s: float = 0) -> httpx.Timeout:
        """The server holds a /rewards/ request open for up to wait_s, so reads may take that much longer."""
        return httpx.Timeout(self.timeout_s + wait_s, connect=self.timeout_s)

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before retry number `attempt` (0-based): the server's Retry-After, else exponential backoff."""
        if response is not None:
            with contextlib.suppress(KeyError, ValueError):
                return max(0.0, float(response.headers["Retry-After"]))
        return self.backoff_s * 2**attempt

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        """The JSON body of a 2xx answer; RewardServiceError carrying the server's `detail` otherwise."""
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_success:
            return body
        detail = body.get("detail", body) if isinstance(body, dict) else body
        if not isinstance(detail, str):
            detail = json.dumps(detail)
        raise RewardServiceError(f"HTTP {response.status_code}: {detail}", status=response.status_code, body=body)

    @staticmethod
    def _rewards_body(
        task: str, completions: Sequence[Completion], wait_s: float, external_ids: Sequence[str | None] | None
    ) -> dict[str, Any]:
        """The /rewards/ request body."""
        keys = _keys(len(completions), external_ids)
        return {"task": task, "completions": list(completions), "external_ids": keys, "wait_s": wait_s}

    @staticmethod
    def _patch_items(
        task: str, diffs: Sequence[str], external_ids: Sequence[str | None] | None, metadata: dict | None
    ) -> list[dict[str, Any]]:
        """The POST /patches/ objects."""
        keys = _keys(len(diffs), external_ids)
        return [
            {"task": task, "diff": diff, "external_id": key, "metadata": metadata or {}}
            for diff, key in zip(diffs, keys, strict=True)
        ]


def _results_paths(ids: Sequence[int]) -> list[str]:
    """The list requests that fetch the Results of `ids`, 1000 per request."""
    return [
        f"/api/v1/patches/?limit={MAX_BATCH}&ids=" + ",".join(str(int(i)) for i in ids[start : start + MAX_BATCH])
        for start in range(0, len(ids), MAX_BATCH)
    ]


def _in_order(ids: Sequence[int], pages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Results of list `pages`, in the order of `ids`."""
    found = {result["id"]: result for page in pages for result in page["results"]}
    return [found[i] for i in ids]


def _keys(count: int, external_ids: Sequence[str | None] | None) -> list[str | None]:
    """The caller's external_ids, or fresh idempotency keys: a request retried after a lost answer then finds
    the patches it already created instead of scoring them twice."""
    if external_ids is None:
        prefix = f"rc-{uuid.uuid4().hex}"
        return [f"{prefix}-{index}" for index in range(count)]
    if len(external_ids) != count:
        raise ValueError(f"{len(external_ids)} external_ids for {count} items")
    return list(external_ids)


def _plan(tasks: Sequence[str]) -> list[tuple[str, list[int]]]:
    """Group row indices by task, in order of first appearance, in chunks the server accepts."""
    by_task: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        by_task.setdefault(task, []).append(index)
    return [
        (task, rows[start : start + MAX_BATCH])
        for task, rows in by_task.items()
        for start in range(0, len(rows), MAX_BATCH)
    ]


def _merge(count: int, plan: list[tuple[str, list[int]]], answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Put per-task /rewards/ answers back into the caller's row order (same shape as one /rewards/ answer)."""
    merged: dict[str, Any] = {
        "ids": [None] * count,
        "status": [None] * count,
        "rewards": [None] * count,
        "subscores": {criterion: [None] * count for criterion in CRITERIA},
    }
    for (_, rows), answer in zip(plan, answers, strict=True):
        for position, row in enumerate(rows):
            for key in ("ids", "status", "rewards"):
                merged[key][row] = answer[key][position]
            for criterion, values in answer["subscores"].items():
                merged["subscores"].setdefault(criterion, [None] * count)[row] = values[position]
    return merged


def _check_rows(tasks: Sequence[str], completions: Sequence[Completion]) -> None:
    if len(tasks) != len(completions):
        raise ValueError(f"{len(tasks)} task names for {len(completions)} completions")


# --- the synchronous client -------------------------------------------------------------------------------


class RewardClient(_Base):
    """Blocking client: submit patches and completions, wait for rewards, fetch Results.

    Retries connection errors, 429 (honouring Retry-After), 502, 503 and 504 up to `retries` times with
    exponential backoff from `backoff_s`; any other refusal raises RewardServiceError at once. Thread-safe.
    """

    def __init__(
        self, base_url: str, token: str, *, timeout_s: float = 30, retries: int = 3, backoff_s: float = 0.5
    ) -> None:
        super().__init__(base_url, token, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
        self._http = httpx.Client(**self._http_options)

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, *, json_body: Any = None, timeout: httpx.Timeout | None = None) -> Any:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, json=json_body, timeout=timeout or self._timeout())
            except httpx.TransportError as exc:
                if last:
                    raise RewardServiceError(f"{self.base_url} unreachable after {attempt + 1} tries: {exc}") from exc
                time.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(self._delay(attempt, response))
                continue
            return self._answer(response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def rewards(
        self,
        task: str,
        completions: Sequence[Completion],
        *,
        wait_s: float = 120,
        external_ids: Sequence[str | None] | None = None,
    ) -> dict[str, Any]:
        """The raw /rewards/ answer for one task: {"ids", "status", "rewards", "subscores"}, in order."""
        body = self._rewards_body(task, completions, wait_s, external_ids)
        return self._request("POST", "/api/v1/rewards/", json_body=body, timeout=self._timeout(wait_s))

    def rewards_by_task(
        self, tasks: Sequence[str], completions: Sequence[Completion], *, wait_s: float = 120
    ) -> dict[str, Any]:
        """Rewards for rows of mixed tasks: one /rewards/ call per task (run in parallel), answers in row order."""
        _check_rows(tasks, completions)
        plan = _plan(tasks)

        def call(step: tuple[str, list[int]]) -> dict[str, Any]:
            return self.rewards(step[0], [completions[row] for row in step[1]], wait_s=wait_s)

        if len(plan) <= 1:
            return _merge(len(tasks), plan, [call(step) for step in plan])
        with ThreadPoolExecutor(max_workers=min(len(plan), FETCH_CONCURRENCY)) as pool:
            return _merge(len(tasks), plan, list(pool.map(call, plan)))

    def score(
        self,
        task: str,
        diffs: Sequence[Completion],
        *,
        wait_s: float = 120,
        external_ids: Sequence[str | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Score diffs (or completions) and return their Results, in order.

        A diff that cannot be used comes back as a `rejected` Result with final_score 0.0; one not finished
        within wait_s comes back with its current status (queued or running) and final_score None.
        """
        ids: list[int] = []
        for start in range(0, len(diffs), MAX_BATCH):
            chunk_ids = external_ids[start : start + MAX_BATCH] if external_ids is not None else None
            ids += self.rewards(task, diffs[start : start + MAX_BATCH], wait_s=wait_s, external_ids=chunk_ids)["ids"]
        return _in_order(ids, [self._request("GET", path) for path in _results_paths(ids)])

    def submit(
        self, task: str, diff: str, *, external_id: str | None = None, metadata: dict | None = None
    ) -> dict[str, Any]:
        """Queue one patch without waiting: {"id", "status"}. Raises RewardServiceError on an invalid diff (400)."""
        (item,) = self._patch_items(task, [diff], [external_id] if external_id else None, metadata)
        return self._request("POST", "/api/v1/patches/", json_body=item)

    def submit_many(
        self,
        task: str,
        diffs: Sequence[str],
        *,
        external_ids: Sequence[str | None] | None = None,
        metadata: dict | None = None,
    ) -> list[dict[str, Any]]:
        """Queue many patches in batches of 1000: per-item {"id", "status", "code"[, "detail"]}, in order."""
        items = self._patch_items(task, diffs, external_ids, metadata)
        out: list[dict[str, Any]] = []
        for start in range(0, len(items), MAX_BATCH):
            out += self._request("POST", "/api/v1/patches/", json_body=items[start : start + MAX_BATCH])
        return out

    def result(self, patch_id: int) -> dict[str, Any]:
        """The Result of one patch (docs/contract.md, "Result"), whatever its status."""
        return self._request("GET", f"/api/v1/patches/{int(patch_id)}/")


# --- the asynchronous client ------------------------------------------------------------------------------


class AsyncRewardClient(_Base):
    """The asyncio twin of RewardClient: same methods, same retries, awaitable.

    Use it as `async with AsyncRewardClient(...) as client:` to keep one connection pool; used without `async
    with`, each call opens its own pool in the running event loop, which is what a trainer that calls from
    several loops (TRL runs async reward functions on a loop of its own) needs.
    """

    def __init__(
        self, base_url: str, token: str, *, timeout_s: float = 30, retries: int = 3, backoff_s: float = 0.5
    ) -> None:
        super().__init__(base_url, token, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> AsyncRewardClient:
        self._http = httpx.AsyncClient(**self._http_options)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._http is not None:
            yield self._http
            return
        async with httpx.AsyncClient(**self._http_options) as http:
            yield http

    async def _request(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await http.request(method, path, json=json_body, timeout=timeout or self._timeout())
            except httpx.TransportError as exc:
                if last:
                    raise RewardServiceError(f"{self.base_url} unreachable after {attempt + 1} tries: {exc}") from exc
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                await asyncio.sleep(self._delay(attempt, response))
                continue
            return self._answer(response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def rewards(
        self,
        task: str,
        completions: Sequence[Completion],
        *,
        wait_s: float = 120,
        external_ids: Sequence[str | None] | None = None,
    ) -> dict[str, Any]:
        """The raw /rewards/ answer for one task: {"ids", "status", "rewards", "subscores"}, in order."""
        body = self._rewards_body(task, completions, wait_s, external_ids)
        async with self._session() as http:
            return await self._request(http, "POST", "/api/v1/rewards/", json_body=body, timeout=self._timeout(wait_s))

    async def rewards_by_task(
        self, tasks: Sequence[str], completions: Sequence[Completion], *, wait_s: float = 120
    ) -> dict[str, Any]:
        """Rewards for rows of mixed tasks: one /rewards/ call per task (concurrent), answers in row order."""
        _check_rows(tasks, completions)
        plan = _plan(tasks)
        answers = await asyncio.gather(
            *(self.rewards(task, [completions[row] for row in rows], wait_s=wait_s) for task, rows in plan)
        )
        return _merge(len(tasks), plan, answers)

    async def score(
        self,
        task: str,
        diffs: Sequence[Completion],
        *,
        wait_s: float = 120,
        external_ids: Sequence[str | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Score diffs (or completions) and return their Results, in order (see RewardClient.score)."""
        ids: list[int] = []
        for start in range(0, len(diffs), MAX_BATCH):
            chunk_ids = external_ids[start : start + MAX_BATCH] if external_ids is not None else None
            answer = await self.rewards(task, diffs[start : start + MAX_BATCH], wait_s=wait_s, external_ids=chunk_ids)
            ids += answer["ids"]
        async with self._session() as http:
            pages = [await self._request(http, "GET", path) for path in _results_paths(ids)]
        return _in_order(ids, pages)

    async def submit(
        self, task: str, diff: str, *, external_id: str | None = None, metadata: dict | None = None
    ) -> dict[str, Any]:
        """Queue one patch without waiting: {"id", "status"}."""
        (item,) = self._patch_items(task, [diff], [external_id] if external_id else None, metadata)
        async with self._session() as http:
            return await self._request(http, "POST", "/api/v1/patches/", json_body=item)

    async def submit_many(
        self,
        task: str,
        diffs: Sequence[str],
        *,
        external_ids: Sequence[str | None] | None = None,
        metadata: dict | None = None,
    ) -> list[dict[str, Any]]:
        """Queue many patches in batches of 1000: per-item {"id", "status", "code"[, "detail"]}, in order."""
        items = self._patch_items(task, diffs, external_ids, metadata)
        out: list[dict[str, Any]] = []
        async with self._session() as http:
            for start in range(0, len(items), MAX_BATCH):
                out += await self._request(http, "POST", "/api/v1/patches/", json_body=items[start : start + MAX_BATCH])
        return out

    async def result(self, patch_id: int) -> dict[str, Any]:
        """The Result of one patch (docs/contract.md, "Result"), whatever its status."""
        async with self._session() as http:
            return await self._request(http, "GET", f"/api/v1/patches/{int(patch_id)}/")


AnyClient = RewardClient | AsyncRewardClient


# --- one scoring call per batch, shared by several reward functions ---------------------------------------


@dataclass
class _Batch:
    answer: Any  # the merged /rewards/ answer, or (async) the future that brings it
    readers: set[str]  # the reward functions that already read it


class BatchScorer:
    """Scores a batch once and serves it to every reward function of the same trainer step.

    A trainer calls each of its reward functions with the same rows. The first function to ask for a batch
    scores it; the others read that answer. A function asking again for rows it already read starts a new
    batch (the next step, or a repeated rollout), so an answer is never served twice to the same reader.
    Keeps the last few batches only.
    """

    KEEP = 4

    def __init__(self, client: AnyClient, *, wait_s: float = 120) -> None:
        self.client = client
        self.wait_s = wait_s
        self._batches: OrderedDict[str, _Batch] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(tasks: Sequence[str], completions: Sequence[Completion]) -> str:
        blob = json.dumps([list(tasks), list(completions)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _claim(self, key: str, reader: str) -> _Batch | None:
        """The stored batch under `key` if `reader` has not read it yet (now marked as read), else None."""
        batch = self._batches.get(key)
        if batch is None or reader in batch.readers:
            return None
        batch.readers.add(reader)
        return batch

    def _store(self, key: str, reader: str, answer: Any) -> _Batch:
        batch = self._batches[key] = _Batch(answer, {reader})
        self._batches.move_to_end(key)
        while len(self._batches) > self.KEEP:
            self._batches.popitem(last=False)
        return batch

    def get(self, tasks: Sequence[str], completions: Sequence[Completion], *, reader: str) -> dict[str, Any]:
        """The merged /rewards/ answer for these rows, scored by a RewardClient or read from the shared batch."""
        if not isinstance(self.client, RewardClient):
            raise TypeError("BatchScorer.get needs a RewardClient; use aget with an AsyncRewardClient")
        key = self._key(tasks, completions)
        with self._lock:  # a second reader of the same batch waits for the first instead of scoring again
            batch = self._claim(key, reader)
            if batch is None:
                batch = self._store(key, reader, self.client.rewards_by_task(tasks, completions, wait_s=self.wait_s))
            return batch.answer

    async def aget(self, tasks: Sequence[str], completions: Sequence[Completion], *, reader: str) -> dict[str, Any]:
        """Like get, awaitable; concurrent readers of one batch share one in-flight call."""
        key = self._key(tasks, completions)
        batch = self._claim(key, reader)
        if batch is None:
            if isinstance(self.client, AsyncRewardClient):
                call = self.client.rewards_by_task(tasks, completions, wait_s=self.wait_s)
            else:  # a blocking client must not stall the event loop for wait_s
                call = asyncio.to_thread(self.client.rewards_by_task, tasks, completions, wait_s=self.wait_s)
            batch = self._store(key, reader, asyncio.ensure_future(call))
        if isinstance(batch.answer, dict):
            return batch.answer
        future = batch.answer
        try:
            batch.answer = await asyncio.shield(future)  # a plain value: a later event loop can read it too
        except BaseException:
            if future.done() and self._batches.get(key) is batch:
                del self._batches[key]  # a failed batch is not kept: the next call tries again
            raise
        return batch.answer


def _pick(answer: dict[str, Any], name: str) -> list[float | None]:
    """The rewards ("reward") or one criterion's subscores from a merged /rewards/ answer."""
    return answer["rewards"] if name == "reward" else answer["subscores"][name]


def _named(function: Callable, name: str) -> Callable:
    """Name a reward function: trainers label their logs with __name__ (reviewapp_reward, reviewapp_style...)."""
    function.__name__ = function.__qualname__ = f"reviewapp_{name}"
    return function


# --- TRL ----------------------------------------------------------------------------------------------------


def _trl_rows(task_column: str, completions: Sequence[Completion], kwargs: dict[str, Any]) -> list[str]:
    """The task name of each row, from the dataset column TRL passes as a keyword list."""
    if task_column not in kwargs:
        columns = sorted(
            k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric", "completion_ids", "environments")
        )
        raise ValueError(f"no {task_column!r} column in the batch; the dataset has {columns}")
    tasks = [str(name) for name in kwargs[task_column]]
    _check_rows(tasks, completions)
    return tasks


def _trl_function(scorer: BatchScorer, name: str, task_column: str) -> Callable:
    """One TRL reward function reading `name` ("reward" or a criterion) from the scorer's shared answer."""
    if isinstance(scorer.client, AsyncRewardClient):

        async def async_reward(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
            tasks = _trl_rows(task_column, completions, kwargs)
            return _pick(await scorer.aget(tasks, completions, reader=name), name)

        return _named(async_reward, name)

    def reward(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        tasks = _trl_rows(task_column, completions, kwargs)
        return _pick(scorer.get(tasks, completions, reader=name), name)

    return _named(reward, name)


#: The oldest TRL whose GRPOTrainer leaves a None reward out of the group baseline (before 1.6 it counted as
#: 0.0, so a crashed worker trained as a bad patch) and awaits async reward functions (0.27).
TRL_MIN_VERSION = (1, 6)


def check_trl_version() -> None:
    """Raise RuntimeError when the installed TRL would count a None reward as 0.0; pass when TRL is absent."""
    try:
        installed = importlib.metadata.version("trl")
    except importlib.metadata.PackageNotFoundError:
        return
    parts = tuple(int(part) for part in installed.split(".")[:2] if part.isdigit())
    if parts < TRL_MIN_VERSION:
        floor = ".".join(map(str, TRL_MIN_VERSION))
        raise RuntimeError(
            f"trl {installed} counts a None reward (failed, cancelled or unfinished patch) as 0.0; "
            f"reviewapp's TRL adapter needs trl>={floor}: pip install 'trl>={floor}'"
        )


def trl_reward_func(client: AnyClient, task_column: str = "task", wait_s: float = 120) -> Callable:
    """A reward function for TRL's GRPOTrainer(reward_funcs=[...]): the service's reward, one per completion.

    Called as `f(prompts=[...], completions=[...], task=[...], **other_columns)`; completions are strings or
    chat message lists. Rows are grouped by their task column, one /rewards/ call per task; the answer is a
    list[float | None] in row order (reviewapp_client.semantics.reward_for): None for a failed, cancelled,
    withheld or unfinished patch, which TRL >= 1.6 leaves out of its group's baseline. With an
    AsyncRewardClient the function is async (TRL awaits it). Needs trl >= 1.6 when TRL is installed.
    """
    check_trl_version()
    return _trl_function(BatchScorer(client, wait_s=wait_s), "reward", task_column)


def trl_reward_funcs_per_criterion(
    client: AnyClient, task_column: str = "task", wait_s: float = 120, *, include_reward: bool = True
) -> list[Callable]:
    """TRL reward functions named reviewapp_<criterion>, one per criterion, so the trainer logs each subscore.

    They share ONE scoring call per batch. With include_reward (the default) the list starts with
    reviewapp_reward, the service's weighted reward; pass reward_weights=[1.0, 0.0, 0.0, 0.0, 0.0] to
    GRPOConfig so the subscores are logged but only the reward trains.
    """
    check_trl_version()
    scorer = BatchScorer(client, wait_s=wait_s)
    names = (("reward",) if include_reward else ()) + CRITERIA
    return [_trl_function(scorer, name, task_column) for name in names]


__all__ = [
    "CRITERIA",
    "TRL_MIN_VERSION",
    "AsyncRewardClient",
    "BatchScorer",
    "RewardClient",
    "RewardServiceError",
    "check_trl_version",
    "trl_reward_func",
    "trl_reward_funcs_per_criterion",
]
