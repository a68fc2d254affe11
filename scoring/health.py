"""/healthz and /metrics, and the worker heartbeat they read."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from scoring.models import ACTIVE_STATUSES, Evaluation, Patch, PatchStatus
from scoring.roles import has_role

log = logging.getLogger(__name__)
HEARTBEAT_KEY = "reviewapp:heartbeat:"
HEARTBEAT_EVERY_S = 10


def redis_client() -> redis.Redis:
    """A Redis client for REDIS_URL, understanding Celery's `redis+socket://` form too."""
    url = settings.REDIS_URL
    if url.startswith("redis+socket://"):
        url = "unix://" + url.removeprefix("redis+socket://")
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def start_heartbeat(hostname: str) -> threading.Thread:
    """Write `reviewapp:heartbeat:<host>` every few seconds from a daemon thread of the worker's main process."""

    def beat() -> None:
        client = redis_client()
        while True:
            try:
                client.set(HEARTBEAT_KEY + hostname, str(time.time()), ex=settings.REVIEWAPP["HEARTBEAT_MAX_AGE_S"])
            except redis.RedisError:
                log.warning("heartbeat: Redis unreachable", exc_info=True)
            time.sleep(HEARTBEAT_EVERY_S)

    thread = threading.Thread(target=beat, name="reviewapp-heartbeat", daemon=True)
    thread.start()
    return thread


def queue_depth() -> int:
    """Patches queued or running."""
    return Patch.objects.filter(status__in=ACTIVE_STATUSES).count()


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker and at least one worker answer; 503 otherwise.

    Anyone (a load balancer, a stranger) gets `status` and `queue_depth` only; admins get each check, the worker
    names and the check's timing, which tell an attacker which hosts to aim at.
    """
    started = time.monotonic()
    checks = _checks()
    healthy = all(checks.get(k) == "ok" for k in ("database", "broker", "worker_heartbeat"))
    status = 200 if healthy else 503
    summary = {"status": "ok" if healthy else "error", "queue_depth": checks.get("queue_depth")}
    if not has_role(request.user, "admin"):
        return JsonResponse(summary, status=status)
    return JsonResponse({**checks, **summary, "took_s": round(time.monotonic() - started, 4)}, status=status)


def _checks() -> dict[str, object]:
    """Each dependency's state, the worker names and the queue depth (None when the database is down)."""
    checks: dict[str, object] = {"queue_depth": None}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
        checks["queue_depth"] = queue_depth()
    except Exception as exc:  # any driver error means "down"
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        client = redis_client()
        client.ping()
        checks["broker"] = "ok"
        workers = sorted(k.decode().removeprefix(HEARTBEAT_KEY) for k in client.scan_iter(HEARTBEAT_KEY + "*"))
        checks["workers"] = workers
        checks["worker_heartbeat"] = "ok" if workers else "error: no worker heartbeat in the last minute"
    except (redis.RedisError, OSError) as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
        checks["worker_heartbeat"] = "unknown: broker down"
    return checks


def metrics_allowed(request: HttpRequest) -> bool:
    """True for `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time) or a REMOTE_ADDR inside one of
    METRICS_ALLOW's addresses or networks. Nothing configured: nobody."""
    token = settings.METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if (
        token
        and sent.startswith("Bearer ")
        and hmac.compare_digest(sent.removeprefix("Bearer ").encode(), token.encode())
    ):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(allowed, strict=False) for allowed in settings.METRICS_ALLOW)


class _DatabaseCollector:
    """Reads the numbers Prometheus asks for from the database, which every process shares."""

    def collect(self):
        by_status = GaugeMetricFamily("reviewapp_patches", "Patches by status", labels=["status"])
        counts = dict(Patch.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
        for status in PatchStatus.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        yield GaugeMetricFamily(
            "reviewapp_queue_depth",
            "Patches queued or running",
            value=sum(counts.get(status, 0) for status in ACTIVE_STATUSES),
        )
        stage = GaugeMetricFamily(
            "reviewapp_stage_seconds",
            "Mean seconds per pipeline stage over the last 500 evaluations",
            labels=["stage"],
        )
        totals: dict[str, list[float]] = {}
        for meta in Evaluation.objects.order_by("-id").values_list("meta", flat=True)[:500]:
            for name, seconds in (meta or {}).get("timings_s", {}).items():
                totals.setdefault(name, []).append(float(seconds))
        for name, values in sorted(totals.items()):
            stage.add_metric([name], sum(values) / len(values))
        yield stage


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics for a scraper with the metrics token or from an allowed address; 403 for anyone else."""
    if not metrics_allowed(request):
        return HttpResponse(
            "metrics need REVIEWAPP_METRICS_TOKEN as a Bearer token, or an address in REVIEWAPP_METRICS_ALLOW\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    registry = CollectorRegistry()
    registry.register(_DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4")
