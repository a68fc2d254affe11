"""The Celery app. Queues: `exec` (test runs and static analysis), `bench` (benchmarks, alone on their host),
`score` (aggregation, routing, the reconciler), `critic` (the learned critic, off the reward path).

One worker can consume all four (`make run`); in production each queue gets its own workers, and the `bench`
workers run on hosts that run nothing else (docs/deployment.md).
"""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutting_down
from kombu import Queue

from scoring import queueing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")

app = Celery("reviewapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
QUEUES = ("score", "exec", "bench", "critic")
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.conf.task_routes = {
    queueing.RUN_STAGE: {"queue": "exec"},  # overridden per call for the bench stage
    queueing.ENQUEUE_PATCHES: {"queue": "score"},
    queueing.RECONCILE: {"queue": "score"},
    queueing.PRUNE_EVIDENCE: {"queue": "score"},
    queueing.REAGGREGATE: {"queue": "score"},
    queueing.EXPORT_RUN: {"queue": "critic"},
    queueing.CRITIC_REVIEW: {"queue": "critic"},
}
app.autodiscover_tasks()


@worker_ready.connect
def _start_heartbeat(sender, **_kwargs):
    """Tell /healthz this worker is alive."""
    from scoring.health import start_heartbeat

    start_heartbeat(sender.hostname)
    if "exec" in sender.app.amqp.queues.consume_from:
        from scoring.affinity import advertise

        advertise(sender.hostname)  # the exec stages of the tasks it owns come to its own queue


@worker_shutting_down.connect
def _withdraw_exec_worker(sender, **_kwargs):
    """No new task for a worker that is stopping (scoring.affinity)."""
    from scoring.affinity import withdraw

    withdraw(sender)
