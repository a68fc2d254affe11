"""Human labels (append-only events) and the leases reviewers hold on queue items."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from scoring.models import Patch


class LabelEvent(models.Model):
    """One save of a reviewer's label. Never updated: editing a label appends a new event that names the
    event it replaces (`supersedes`), and a stale edit (not naming the reviewer's latest) is refused."""

    patch = models.ForeignKey(Patch, on_delete=models.CASCADE, related_name="label_events")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="label_events")
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    # criterion -> {"auto": automatic score at that moment, "human": corrected score or null, "note": "..."}
    subscores = models.JSONField()
    final_score = models.FloatField(null=True, help_text="Human final score under the profile active then.")
    weight_profile_version = models.PositiveIntegerField(null=True)
    comment = models.TextField(blank=True, default="")
    task_broken = models.BooleanField(default=False)
    time_spent_s = models.FloatField(default=0.0)
    is_demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["patch", "reviewer", "-id"]), models.Index(fields=["created_at"])]


class Claim(models.Model):
    """A reviewer's seat on a queue item: one of the task's `labels_per_item` slots.

    The unique (patch, slot) pair is what caps the reviewers of an item, so two reviewers racing for the last
    seat cannot both win, on SQLite as on PostgreSQL. A seat is live while `lease_until` is in the future
    (renewed while the page is open), done once its reviewer's label is in (`done_at`), and free again for
    another reviewer when the lease expired before that.
    """

    patch = models.ForeignKey(Patch, on_delete=models.CASCADE, related_name="claims")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="claims")
    slot = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField()
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patch", "reviewer"], name="one_claim_per_reviewer"),
            models.UniqueConstraint(fields=["patch", "slot"], name="one_reviewer_per_slot"),
        ]
        indexes = [
            models.Index(fields=["patch", "lease_until"]),
            models.Index(fields=["reviewer", "done_at", "lease_until"]),
        ]
