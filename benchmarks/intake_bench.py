"""Intake: patches per second accepted by `POST /api/v1/patches/`, one at a time and in batches of 1000.

Runs in a child process on a throwaway SQLite database with a real Redis (see common.django_env and
common.redis_url): each accepted patch is validated (parsed, then checked against the base in-process by
libgit2, with `git apply --check` deciding every refusal: workspace.check_applies), written, and its scoring
published to Redis on commit, exactly as in production; the benchmark checks that every accepted patch's
id is in a message in the broker. Requests go through DRF's test client with a client token, so the time is
the server's (routing, authentication, validation, database, broker), without a network or a web server.
When the batched rate misses the goal, one more batch runs under cProfile and its top entries are returned.
With REDIS_URL set, point it at a Redis that no worker consumes: the messages stay there, for patches that exist
only in the throwaway database.
"""

from __future__ import annotations

import base64
import cProfile
import json
import pstats
import statistics
import sysconfig
import time
from typing import Any

from benchmarks.common import ROOT, Goal, Section, django_ready, log, num, spread, table, with_range

GOAL_PER_S = 1000.0
TASK = "slugify"
PROFILE_LINES = 20


def _diffs() -> list[str]:
    """The slugify task's manifest patches: real diffs that apply to its base."""
    from benchmarks.pipeline_bench import DEMO

    manifest = json.loads((DEMO / "manifest.json").read_text())
    entry = next(t for t in manifest["tasks"] if t["name"] == TASK)
    return [(DEMO / p["file"]).read_text() for p in entry["patches"]]


def broker_patch_ids() -> tuple[int, set[int]]:
    """Messages waiting in the broker's queues, and the patch ids their scoring tasks carry.

    Reads Celery's messages as kombu stores them in Redis lists (a JSON envelope with a base64 JSON body whose
    first element is the task's arguments); the first argument is a patch id or, for a fan-out, a list of them.
    Nothing consumes the queues during the benchmark.
    """
    from reviewapp.celery import QUEUES
    from scoring.health import redis_client

    client, messages, ids = redis_client(), 0, set()
    for queue in QUEUES:
        for raw in client.lrange(queue, 0, -1):
            envelope = json.loads(raw)
            body = envelope["body"]
            if envelope.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]
            if args:
                ids.update(args[0] if isinstance(args[0], list) else [args[0]])
            messages += 1
    return messages, ids


def _post(api: Any, body: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    response = api.post("/api/v1/patches/", body, format="json")
    return time.perf_counter() - started, response


def run(*, singles: int = 200, batches: int = 3, batch_size: int = 1000) -> dict[str, Any]:
    """Time `singles` one-patch requests and `batches` requests of `batch_size` patches; check the broker."""
    django_ready()
    from rest_framework.test import APIClient

    from benchmarks.pages_bench import demo_tasks_by_name
    from scoring.accounts import user_create
    from scoring.health import redis_client

    demo_tasks_by_name([TASK])
    token = user_create(username="trainer", role="client")[2]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    before = broker_patch_ids()[0]  # a shared REDIS_URL may hold messages already: count ours, delete nothing
    diffs = _diffs()
    sent = 0
    accepted: set[int] = set()

    def item(key: str) -> dict[str, Any]:
        nonlocal sent
        sent += 1
        return {"task": TASK, "diff": diffs[sent % len(diffs)], "external_id": key}

    for i in range(5):  # warm-up: first connection, first token check, first git run
        accepted.add(_post(api, item(f"warm-{i}"))[1].json()["id"])
    log(f"intake: {singles} single requests")
    single_s = []
    for i in range(singles):
        seconds, response = _post(api, item(f"single-{i}"))
        if response.status_code != 202:
            raise RuntimeError(f"single request answered {response.status_code}: {response.content[:300]!r}")
        single_s.append(seconds)
        accepted.add(response.json()["id"])
    batch_s = []
    for b in range(batches):
        log(f"intake: batch {b + 1}/{batches} of {batch_size}")
        seconds, response = _post(api, [item(f"batch-{b}-{i}") for i in range(batch_size)])
        codes = {row["code"] for row in response.json()}
        if response.status_code != 202 or codes != {202}:
            raise RuntimeError(f"batch answered {response.status_code} with item codes {sorted(codes)}")
        batch_s.append(seconds)
        accepted.update(row["id"] for row in response.json())
    messages, in_broker = broker_patch_ids()
    result = {
        "single_s": single_s,
        "batch_s": batch_s,
        "batch_size": batch_size,
        "accepted": len(accepted),
        "broker_messages": messages - before,
        "redis_version": redis_client().info()["redis_version"],
    }
    if len(accepted) != sent or not accepted <= in_broker:
        raise RuntimeError(
            f"{sent} patches sent, {len(accepted)} accepted, {len(accepted - in_broker)} of them missing from the "
            "broker's messages (does a worker consume this Redis?)"
        )
    if batch_size / statistics.median(batch_s) < GOAL_PER_S:
        log("intake: batched goal missed; profiling one more batch")
        profiler = cProfile.Profile()
        profiler.enable()
        _post(api, [item(f"profiled-{i}") for i in range(batch_size)])
        profiler.disable()
        result["profile"] = profile_rows(profiler, PROFILE_LINES)
    return result


def profile_rows(profiler: cProfile.Profile, limit: int) -> list[list[Any]]:
    """The functions with the most cumulative time, below the request's own call chain (which holds ~all of it).

    Rows: function, calls, own seconds, cumulative seconds, share of the request.
    """
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]  # pstats keeps its table in an undocumented attribute
    total = max(entry[3] for entry in stats.values())
    below = [(cum, own, calls, key) for key, (_, calls, own, cum, _) in stats.items() if cum < 0.98 * total]
    prefixes = (sysconfig.get_paths()["purelib"] + "/", str(ROOT) + "/", sysconfig.get_paths()["stdlib"] + "/")
    rows = []
    for cum, own, calls, (path, line, function) in sorted(below, reverse=True)[:limit]:
        for prefix in prefixes:
            path = path.removeprefix(prefix)
        rows.append([f"{path}:{line}({function})", calls, round(own, 3), round(cum, 3), round(cum / total, 3)])
    return rows


def render(result: dict[str, Any]) -> Section:
    """Rates for single and batched requests, with spreads, and the profile when the goal is missed."""
    single = spread(result["single_s"])
    batch_rates = [result["batch_size"] / s for s in result["batch_s"]]
    batched = spread(batch_rates)["median"]
    rows = [
        [
            "single (1 patch per request)",
            len(result["single_s"]),
            num(len(result["single_s"]) / sum(result["single_s"]), 0),
            f"{num(single['median'] * 1000, 1)} ms (IQR {num(single['q1'] * 1000, 1)}-{num(single['q3'] * 1000, 1)})",
        ],
        [
            f"batch of {result['batch_size']}",
            len(result["batch_s"]),
            f"**{with_range(batch_rates, 0)}**",
            with_range([s * 1000 for s in result["batch_s"]], 0, " ms"),
        ],
    ]
    parts = [
        f"`POST /api/v1/patches/` through DRF's test client with a client token, SQLite, Redis "
        f"{result['redis_version']}. Every patch is checked against the task's base in-process by libgit2 (a "
        f"diff libgit2 refuses, or cannot vouch for, goes to `git apply --check`, which decides every refusal; "
        f"these patches all apply), written, and its scoring published to Redis on commit (a message per patch, "
        f"or one fan-out message per batch); every one of the {result['accepted']:,} accepted patches (warm-up "
        f"included) was found in the broker's {result['broker_messages']:,} messages.",
        table(["requests", "n", "patches/s", "time per request"], rows),
    ]
    if "profile" in result:
        parts.append(
            "The batched goal is missed. Where one batch's time goes (cProfile of one more batch, functions by "
            "cumulative time, below the request's own call chain; profiling slows the batch down; cProfile sees "
            "the request's thread only, so work handed to other threads shows as waiting for them):\n\n"
            + table(
                ["function", "calls", "own s", "cumulative s", "share"],
                [[f"`{f}`", n, own, cum, f"{share:.0%}"] for f, n, own, cum, share in result["profile"]],
            )
        )
    goal = Goal("intake, batched", f">= {GOAL_PER_S:,.0f} patches/s", f"{batched:,.0f} patches/s", batched >= 1000)
    return Section("Intake through the HTTP API", "\n\n".join(parts), [goal])
