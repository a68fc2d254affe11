"""Review pages' server time with 10,000 scored patches in the database.

`run` fills a throwaway database (see common.django_env) with patches cloned from real pipeline Results
(`samples`: the JSON the throughput benchmark writes, a list of {"diff", "result"}), 40% of them waiting for
review, then times `/review/` (with a rotation of filters and pages) and `/review/<id>/` (random waiting items)
with the Django test client, as a logged-in reviewer. Server time is the time inside the client call: routing,
middleware, the view, its queries and the template, without a network or a web server.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import Goal, Section, django_ready, log, num, spread, table

GOAL_P95_MS = 150.0
CHUNK = 2000
#: The queue page as reviewers use it: the first page, later pages, and each kind of filter.
QUEUE_QUERIES = ("", "?page=2", "?page=20", "?doubt=performance", "?route=audit", "?flag=perf_inconclusive")
#: Share of patches in each status (the rest are scored and left the queue).
WAITING, REVIEWED = 0.4, 0.1


def load_samples(path: str) -> list[dict[str, Any]]:
    """Real Results with their diffs, as pipeline_bench.run_throughput wrote them."""
    samples = json.loads(Path(path).read_text())
    if not samples:
        raise ValueError(f"{path} holds no sample Results")
    return samples


def demo_tasks_by_name(names: Sequence[str]) -> dict[str, Any]:
    """The demo tasks among `names`, registered through the real service (archives stored)."""
    from benchmarks.pipeline_bench import DEMO
    from scoring.core.intake.spec import parse_spec
    from scoring.models import Task
    from scoring.services import task_create_from_dirs

    tasks = {}
    for name in sorted(set(names)):
        task = Task.objects.filter(name=name).first()
        if task is None:
            spec_path = DEMO / "tasks" / name / "spec.json"
            spec = parse_spec(spec_path.read_text(), spec_dir=spec_path.parent)
            task = task_create_from_dirs(spec=spec, shared=True)  # every benchmark client scores it
        tasks[name] = task
    return tasks


def status_of(i: int, waiting: float, reviewed: float) -> str:
    """Spread statuses evenly over ids: the first `waiting` share of every ten waits, then `reviewed`."""
    slot = (i % 10) / 10
    if slot < waiting:
        return "needs_review"
    return "reviewed" if slot < waiting + reviewed else "scored"


def bulk_scored(samples: list[dict[str, Any]], count: int, *, waiting: float, reviewed: float) -> list[int]:
    """Create `count` patches with evaluations cloned from `samples`, in chunks; return the new patch ids."""
    from scoring.core.pipeline import PIPELINE_VERSION
    from scoring.models import Evaluation, Patch
    from scoring.selectors import active_weights
    from scoring.services import evaluation_fields

    tasks = demo_tasks_by_name([s["result"]["task"] for s in samples])
    profile, _ = active_weights()
    ids: list[int] = []
    for start in range(0, count, CHUNK):
        numbers = range(start, min(start + CHUNK, count))
        patches = Patch.objects.bulk_create(
            Patch(
                task=tasks[samples[i % len(samples)]["result"]["task"]],
                diff=samples[i % len(samples)]["diff"],
                diff_sha256=f"{i:064x}",
                external_id=f"bench-{i}",
                status=status_of(i, waiting, reviewed),
            )
            for i in numbers
        )
        evaluations = []
        for i, patch in zip(numbers, patches, strict=True):
            result = samples[i % len(samples)]["result"]
            route = "auto" if patch.status == "scored" else ("audit" if i % 50 == 3 else "review")
            fields = evaluation_fields(result, profile) | {"route": route}
            evaluations.append(Evaluation(patch=patch, pipeline_version=PIPELINE_VERSION, **fields))
        Evaluation.objects.bulk_create(evaluations)
        ids.extend(p.pk for p in patches)
        log(f"database: {len(ids):,} of {count:,} patches with evaluations")
    return ids


def bulk_labels(patch_ids: Sequence[int], reviewers: Sequence[Any]) -> int:
    """One label event per reviewer per patch, shaped as labeling.services writes them; returns how many."""
    from labeling.models import LabelEvent
    from scoring.models import Evaluation
    from scoring.selectors import active_weights

    profile, _ = active_weights()
    made = 0
    for start in range(0, len(patch_ids), CHUNK):
        chunk = patch_ids[start : start + CHUNK]
        subscores = dict(Evaluation.objects.filter(patch_id__in=chunk).values_list("patch_id", "subscores"))
        events = []
        for patch_id in chunk:
            for k, reviewer in enumerate(reviewers):
                auto = {name: sub["score"] for name, sub in subscores[patch_id].items()}
                # Each reviewer nudges a criterion, so consensus and agreement have something to do.
                human = {name: None if s is None else round(min(1.0, s + 0.05 * k), 2) for name, s in auto.items()}
                events.append(
                    LabelEvent(
                        patch_id=patch_id,
                        reviewer=reviewer,
                        subscores={n: {"auto": auto[n], "human": human[n], "note": ""} for n in auto},
                        final_score=_mean([v for v in human.values() if v is not None]),
                        weight_profile_version=profile.version,
                        comment="Checked the failing test by hand." if patch_id % 7 == 0 else "",
                        time_spent_s=30.0 + patch_id % 60,
                    )
                )
        LabelEvent.objects.bulk_create(events)
        made += len(events)
    return made


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def reviewer(username: str) -> Any:
    from scoring.accounts import user_create

    return user_create(username=username, role="reviewer")[0]


def timed_gets(client: Any, paths: Sequence[str]) -> tuple[list[float], list[int]]:
    """GET each path; return server times (seconds) and the status codes."""
    times, codes = [], []
    for path in paths:
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        codes.append(response.status_code)
    return times, codes


def query_count(client: Any, path: str) -> int:
    """Database queries one GET of `path` makes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    return len(queries)


def run(*, samples: str, patches: int = 10_000, requests: int = 200, seed: int = 7) -> dict[str, Any]:
    """Fill the database with `patches` scored patches and time both review pages, `requests` GETs each."""
    django_ready()
    from django.test import Client

    ids = bulk_scored(load_samples(samples), patches, waiting=WAITING, reviewed=REVIEWED)
    done = [pid for i, pid in enumerate(ids) if status_of(i, WAITING, REVIEWED) == "reviewed"]
    labels = bulk_labels(done, [reviewer("alice")])
    waiting = [pid for i, pid in enumerate(ids) if status_of(i, WAITING, REVIEWED) == "needs_review"]
    client = Client()
    client.force_login(reviewer("bench-reviewer"))
    rng = random.Random(seed)  # noqa: S311 - picks pages to open, not a secret
    pages = {
        "queue": [f"/review/{QUEUE_QUERIES[i % len(QUEUE_QUERIES)]}" for i in range(requests)],
        "item": [f"/review/{rng.choice(waiting)}/" for _ in range(requests)],
    }
    out: dict[str, Any] = {"patches": len(ids), "waiting": len(waiting), "labels": labels, "pages": {}}
    for name, paths in pages.items():
        timed_gets(client, paths[:5])  # warm-up: template compilation, first connection
        log(f"pages: {requests} GETs of the {name} page")
        times, codes = timed_gets(client, paths)
        bad = sorted({c for c in codes if c != 200})
        if bad:
            raise RuntimeError(f"the {name} page answered {bad} (expected 200)")
        out["pages"][name] = {"times_s": times, "paths": paths, "queries": query_count(client, paths[0])}
    return out


def _by_path(page: dict[str, Any]) -> list[list[Any]]:
    """Median, p95 and max server time of each distinct path of a page, in the order first requested."""
    rows = []
    for path in dict.fromkeys(page["paths"]):
        stats = spread([t * 1000 for t, p in zip(page["times_s"], page["paths"], strict=True) if p == path])
        rows.append([f"`{path}`", stats["n"], num(stats["median"], 1), num(stats["p95"], 1), num(stats["max"], 1)])
    return rows


def render(result: dict[str, Any]) -> Section:
    """p50 / p95 / max per page, query counts, and the goal on p95."""
    rows, goals = [], []
    for name, page in result["pages"].items():
        stats = spread([t * 1000 for t in page["times_s"]])
        label = "/review/ (queue)" if name == "queue" else "/review/<id>/ (item)"
        rows.append(
            [
                label,
                stats["n"],
                num(stats["median"], 1),
                f"{num(stats['q1'], 1)}-{num(stats['q3'], 1)}",
                f"**{num(stats['p95'], 1)}**",
                num(stats["max"], 1),
                page["queries"],
            ]
        )
        goals.append(
            Goal(f"{label} p95 server time", f"< {GOAL_P95_MS:g} ms", f"{stats['p95']:.1f} ms", stats["p95"] < 150)
        )
    body = "\n\n".join(
        [
            f"{result['patches']:,} patches with evaluations cloned from real pipeline Results "
            f"({result['waiting']:,} waiting for review, {result['labels']:,} label events), SQLite. Django test "
            "client as a logged-in reviewer; server time is the time inside the client call (middleware, view, "
            "queries, template). The queue requests rotate through "
            + ", ".join(f"`/review/{q}`" for q in QUEUE_QUERIES)
            + "; the item requests open random waiting patches. Milliseconds:",
            table(["page", "requests", "median", "IQR", "p95", "max", "queries"], rows),
            "The queue page by request (milliseconds):",
            table(["request", "n", "median", "p95", "max"], _by_path(result["pages"]["queue"])),
        ]
    )
    return Section(f"Review pages with {result['patches']:,} patches", body, goals)
