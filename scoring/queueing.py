"""Work sent to Celery by task name, so a service never imports the tasks module that imports it.

Each app's tasks.py is the top of that app (a task fetches, then calls a service); a service that must start
work names the task here instead. reviewapp.celery routes the same names to their queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import current_app

if TYPE_CHECKING:
    from kombu import Queue

RUN_STAGE = "scoring.tasks.run_stage"
ENQUEUE_PATCHES = "scoring.tasks.enqueue_patches"
RECONCILE = "scoring.tasks.reconcile"
PRUNE_EVIDENCE = "scoring.tasks.prune_evidence"
REAGGREGATE = "tuning.tasks.reaggregate"
EXPORT_RUN = "exports.tasks.export_run"
CRITIC_REVIEW = "critic.tasks.critic_review"


def send(name: str, *args: Any, queue: str | Queue | None = None) -> None:
    """Send one message for task `name`; raises what the broker raises (callers decide what an outage means)."""
    current_app.send_task(name, args=args, queue=queue)
