"""Celery tasks of the `critic` queue (reviewapp.celery routes `critic.tasks.*` there), off the reward path.

Thin: fetch, call a service. Both tasks are idempotent, so a redelivered message does no harm.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction

from critic import services as critic

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def critic_review(patch_id: int) -> str:
    """Give the learned critic's view on a review-bound patch; "critic off" when no model is configured."""
    model = critic.worker_critic()
    if model is None:
        return "critic off"
    try:
        return critic.critic_review_patch(patch_id=patch_id, critic=model)
    except SoftTimeLimitExceeded:
        return "timed out"


def critic_enqueue(patch_id: int) -> bool:
    """Ask the critic about a finalised patch once the current transaction commits; False when the critic is off.

    Safe inside or outside a transaction, and never raises: a missed critic view must not fail scoring, and
    rewards never wait for it (it only sends a message to the `critic` queue).
    """
    if not critic.critic_configured():
        return False
    transaction.on_commit(lambda: _send_review(patch_id), robust=True)
    return True


def _send_review(patch_id: int) -> None:
    try:
        if critic.wants_review(patch_id):  # most patches are confidently auto-accepted: no message for them
            critic_review.delay(patch_id)
    except Exception:  # kombu raises many types for a dead broker; a database hiccup is no reason to fail either
        log.warning("could not enqueue the critic for patch %s", patch_id, exc_info=True)


def on_patch_finalized(sender: object, *, patch_id: int, **_kwargs: object) -> None:
    """Receiver of scoring.signals.patch_finalized (connected in CriticConfig.ready): off the reward path."""
    critic_enqueue(patch_id)
