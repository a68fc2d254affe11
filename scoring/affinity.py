"""Task affinity: every patch of one task runs its exec stage on the same live exec worker.

A rollout group is many patches of one task. The worker that ran one of them has that task's base tree
extracted, its base facts cached and its analyser warm; sending the next patch of the task anywhere else pays
for all of that again. So each exec worker advertises itself in Redis (a key refreshed every few seconds), and a
task's exec stages go to the worker with the highest rendezvous hash of (task, worker) among the live ones,
through its own queue (Celery's worker_direct), until that queue holds REVIEWAPP_AFFINITY_BACKLOG stages; the
rest spill over to the shared `exec` queue. When a worker joins or leaves, only the tasks it wins or held move.
With no live exec worker known (or Redis unreachable) every stage goes to the shared queue, as before. A message
left in the queue of a worker that died is not lost: the patch stays queued, and the reconciler sends it again
after REVIEWAPP_STUCK_AFTER_S, by then to a live worker (an advertisement lapses ADVERT_TTL_S after its worker
stops refreshing it; a worker that stops cleanly withdraws it at once).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import redis
from celery.utils import worker_direct
from django.conf import settings
from kombu import Queue

from scoring import notify

log = logging.getLogger(__name__)

ADVERT_KEY = "reviewapp:exec-worker:"
REFRESH_S = 5.0
#: A worker that died stops receiving new tasks this long after its last refresh.
ADVERT_TTL_S = 15
#: How long a process trusts its list of live exec workers before asking Redis again.
CACHE_S = 5.0

_client: redis.Redis | None = None
_live: tuple[float, list[str]] = (0.0, [])


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(notify.redis_url(), socket_timeout=2, socket_connect_timeout=2)
    return _client


def advertise(hostname: str) -> threading.Thread:
    """Announce `hostname` as a live exec worker from a daemon thread, for as long as the process lives."""

    def refresh() -> None:
        while True:
            try:
                _redis().set(ADVERT_KEY + hostname, "1", ex=ADVERT_TTL_S)
            except (redis.RedisError, OSError):
                log.warning("could not advertise exec worker %s; its tasks go to the shared queue", hostname)
            time.sleep(REFRESH_S)

    thread = threading.Thread(target=refresh, name="exec-advert", daemon=True)
    thread.start()
    return thread


def withdraw(hostname: str) -> None:
    """Stop announcing `hostname` (a clean shutdown), so no new task is routed to its queue."""
    try:
        _redis().delete(ADVERT_KEY + hostname)
    except (redis.RedisError, OSError):
        log.warning("could not withdraw exec worker %s; its advertisement lapses in %s s", hostname, ADVERT_TTL_S)


def live_exec_workers() -> list[str]:
    """The host names of the exec workers alive now, sorted; [] when Redis cannot say."""
    global _live
    read_at, hosts = _live
    if time.monotonic() - read_at < CACHE_S:
        return hosts
    try:
        hosts = sorted(key.decode().removeprefix(ADVERT_KEY) for key in _redis().scan_iter(f"{ADVERT_KEY}*"))
    except (redis.RedisError, OSError):
        hosts = []
    _live = (time.monotonic(), hosts)
    return hosts


def owner(task_id: int, hosts: list[str]) -> str:
    """The worker among `hosts` that owns task `task_id`: the highest rendezvous hash (stable as hosts change)."""
    return max(hosts, key=lambda host: hashlib.sha256(f"{task_id}\0{host}".encode()).digest())


def exec_queue(task_id: int) -> str | Queue:
    """Where the exec stage of a patch of task `task_id` goes: its owner's own queue, else the shared one.

    The shared queue also takes the overflow: once REVIEWAPP_AFFINITY_BACKLOG stages wait in the owner's queue,
    a group larger than one worker can run at once spreads over every worker instead of queueing behind it.
    """
    hosts = live_exec_workers()
    if not hosts:
        return "exec"
    queue = worker_direct(owner(task_id, hosts))
    try:
        backlog = _redis().llen(queue.name)
    except (redis.RedisError, OSError):
        return "exec"
    return queue if backlog < settings.REVIEWAPP["AFFINITY_BACKLOG"] else "exec"
