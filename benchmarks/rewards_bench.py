"""`/rewards/` under a trainer's load: 200 concurrent waiting calls against one web process with 8 threads.

`run` starts one real web process (`uvicorn reviewapp.asgi:application`, REVIEWAPP_WEB_THREADS=8) on a throwaway
SQLite database with a real Redis (common.django_env, common.redis_url), sends `calls` concurrent
`POST /api/v1/rewards/` calls (one completion each, as OpenRLHF sends them, wait_s 120), and once every call is
waiting, finishes their patches one by one over `finish_over_s` seconds the way a worker ends a patch (claim,
store an Evaluation, move it to `scored`: the real status write, which publishes the notification). No worker
runs, so the time measured is the web process's: submission, the wait, the wake-up and the answer. Meanwhile it
samples the process's thread count and times other API calls (`GET /api/v1/tasks/`), which starve if the
waiting calls hold the threads.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Goal, Section, django_ready, log, num, spread, table

TASK = "slugify"
WAIT_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def finish_as_a_worker(patch_id: int) -> None:
    """End a queued patch as a worker does: claim it, store a perfect Evaluation, move it to scored."""
    from django.utils import timezone

    from scoring import services
    from scoring.conf import pipeline_settings
    from scoring.core.pipeline import PIPELINE_VERSION, build_result
    from scoring.core.types import CriticResult
    from scoring.models import Evaluation, PatchStatus
    from scoring.selectors import active_weights

    patch = services.patch_claim(patch_id=patch_id, token=f"bench-{patch_id}", lease_s=600, stage="bench")
    if patch is None:
        raise RuntimeError(f"patch {patch_id} could not be claimed")
    profile, weights = active_weights()
    results = {
        name: CriticResult(name, 1.0, 0.95, (f"Step: {name}. Score 1.0.",))
        for name in ("correctness", "style", "performance", "security")
    }
    result = build_result(
        task_name=patch.task.name,
        results=results,
        weights=weights,
        settings=pipeline_settings(),
        audit_key=patch.diff_sha256,
        meta={"pipeline_version": PIPELINE_VERSION, "sandbox": "bwrap", "timings_s": {}, "tools": {}},
    )
    Evaluation.objects.create(
        patch=patch, pipeline_version=PIPELINE_VERSION, **services.evaluation_fields(result, profile)
    )
    target = PatchStatus.SCORED if result["route"] == "auto" else PatchStatus.NEEDS_REVIEW
    services.patch_transition(
        patch_id=patch_id, source=(PatchStatus.RUNNING,), target=target, lease_until=None, finished_at=timezone.now()
    )


def _start_server(threads: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "REVIEWAPP_WEB_THREADS": str(threads)}
    argv = [sys.executable, "-m", "uvicorn", "reviewapp.asgi:application", "--host", "127.0.0.1", "--port",
            str(port), "--lifespan", "off", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(argv, cwd=ROOT, env=env), f"http://127.0.0.1:{port}"


async def _load(url: str, token: str, diffs: list[str], calls: int, waiting: threading.Event) -> dict[str, Any]:
    """Send the calls, probe the server while they wait, and collect every answer with its time."""
    import httpx

    headers = {"Authorization": f"Token {token}"}
    limits = httpx.Limits(max_connections=calls + 10, max_keepalive_connections=calls + 10)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=WAIT_S + 60) as client:

        async def call(i: int) -> dict[str, Any]:
            body = {"task": TASK, "completions": [diffs[i % len(diffs)]], "external_ids": [f"rl-{i}"]}
            started = time.monotonic()
            response = await client.post("/api/v1/rewards/", json={**body, "wait_s": WAIT_S})
            answered = time.monotonic()
            answer = response.json() if response.status_code == 200 else {}
            return {
                "code": response.status_code,
                "latency_s": answered - started,
                "id": (answer.get("ids") or [None])[0],
                "reward": (answer.get("rewards") or [None])[0],
                "answered": answered,
            }

        tasks = [asyncio.create_task(call(i)) for i in range(calls)]

        async def probe() -> list[float]:
            times = []
            while not waiting.is_set():  # the submissions themselves queue on the threads: probe after them
                await asyncio.sleep(0.05)
            while not all(task.done() for task in tasks):
                started = time.monotonic()
                response = await client.get("/api/v1/tasks/")
                if response.status_code != 200:
                    raise RuntimeError(f"a probe answered {response.status_code}")
                times.append(time.monotonic() - started)
                await asyncio.sleep(0.25)
            return times

        probes = asyncio.create_task(probe())
        answers = await asyncio.gather(*tasks)
        return {"answers": answers, "probe_s": await probes}


def run(*, calls: int = 200, threads: int = 8, finish_over_s: float = 20.0, seed: int = 11) -> dict[str, Any]:
    """200 waiting calls on one web process of `threads` threads; patches finish over `finish_over_s` seconds."""
    django_ready()
    from benchmarks.intake_bench import _diffs
    from benchmarks.pages_bench import demo_tasks_by_name
    from scoring.accounts import user_create
    from scoring.models import Patch

    demo_tasks_by_name([TASK])
    token = user_create(username="trainer", role="client")[2]
    diffs = _diffs()
    process, url = _start_server(threads)
    finished: dict[int, float] = {}
    samples: list[int] = []
    all_in_s: list[float] = []
    waiting = threading.Event()
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.2)
        idle_threads = _threads(process.pid)

        def finisher() -> None:
            started = time.monotonic()
            while Patch.objects.count() < calls:
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"only {Patch.objects.count()} of {calls} calls reached the server")
                samples.append(_threads(process.pid))
                time.sleep(0.1)
            all_in_s.append(time.monotonic() - started)
            waiting.set()
            ids = list(Patch.objects.values_list("pk", flat=True))
            random.Random(seed).shuffle(ids)  # noqa: S311 - an order of completion, not a secret
            for patch_id in ids:
                samples.append(_threads(process.pid))
                finish_as_a_worker(patch_id)
                finished[patch_id] = time.monotonic()
                time.sleep(finish_over_s / calls)

        log(f"rewards: {calls} concurrent waiting calls on one web process with {threads} threads")
        worker = threading.Thread(target=finisher, daemon=True)
        worker.start()
        loaded = asyncio.run(_load(url, token, diffs, calls, waiting))
        worker.join(timeout=120)
        threads_at_end = _threads(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    answers = loaded["answers"]
    wakeups = [a["answered"] - finished[a["id"]] for a in answers if a["id"] in finished]
    return {
        "calls": calls,
        "threads": threads,
        "finish_over_s": finish_over_s,
        "codes": {str(code): sum(a["code"] == code for a in answers) for code in sorted({a["code"] for a in answers})},
        "rewarded": sum(a["reward"] is not None for a in answers),
        "latency_s": [a["latency_s"] for a in answers],
        "wakeup_s": wakeups,
        "probe_s": loaded["probe_s"],
        "all_in_s": all_in_s[0] if all_in_s else None,
        "threads_idle": idle_threads,
        "threads_peak": max(samples, default=0),
        "threads_end": threads_at_end,
    }


def render(result: dict[str, Any]) -> Section:
    """Answers, latencies and threads of the 200-call run, and the goal."""
    calls, threads = result["calls"], result["threads"]
    five_xx = sum(n for code, n in result["codes"].items() if code.startswith("5"))
    latency, wakeup, probe = spread(result["latency_s"]), spread(result["wakeup_s"]), spread(result["probe_s"])
    rows = [
        ["call, from sending to the answer", latency["n"], num(latency["median"]), num(latency["p95"]),
         num(latency["max"])],
        ["answer after its patch finished (notification wake-up)", wakeup["n"], num(wakeup["median"] * 1000, 0)
         + " ms", num(wakeup["p95"] * 1000, 0) + " ms", num(wakeup["max"] * 1000, 0) + " ms"],
        ["`GET /api/v1/tasks/` while the calls wait", probe["n"], num(probe["median"] * 1000, 0) + " ms",
         num(probe["p95"] * 1000, 0) + " ms", num(probe["max"] * 1000, 0) + " ms"],
    ]  # fmt: skip
    codes = ", ".join(f"{n} x {code}" for code, n in result["codes"].items())
    body = "\n\n".join(
        [
            f"One web process (`uvicorn reviewapp.asgi:application`, `REVIEWAPP_WEB_THREADS={threads}`), "
            f"{calls} concurrent `POST /api/v1/rewards/` calls of one completion each (`wait_s` {WAIT_S:g}), "
            f"all waiting after {num(result['all_in_s'], 1)} s; their patches then finish one by one over "
            f"{result['finish_over_s']:g} s (written as a worker writes them; no worker runs). Answers: {codes}; "
            f"{result['rewarded']} of {calls} with a reward. Seconds unless marked:",
            table(["what", "n", "median", "p95", "max"], rows),
            f"Threads of the web process: {result['threads_idle']} idle, **{result['threads_peak']} at most** "
            f"while the {calls} calls waited, {result['threads_end']} at the end. A thread per waiting call "
            f"(gunicorn's sync threads, or stock Django under ASGI) would need {calls}.",
        ]
    )
    met = five_xx == 0 and result["codes"].get("200") == calls and result["rewarded"] == calls
    goals = [
        Goal(
            f"/rewards/: {calls} concurrent waits held by one web process",
            "all answered, no 5xx",
            f"{result['codes'].get('200', 0)} x 200, {five_xx} x 5xx, max {num(latency['max'], 1)} s",
            met,
        ),
        Goal(
            "/rewards/: no thread held by a waiting call",
            f"<= {threads} threads started by the load",
            f"{result['threads_peak'] - result['threads_idle']} started",
            result["threads_peak"] - result["threads_idle"] <= threads,
        ),
    ]
    return Section(f"/rewards/: {calls} waiting calls on one web process", body, goals)
