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


class ExportJob(models.Model):
    """One label export started from /exports/ or the API (exports.services.export_labels in a Celery task).

    Written by the task as it goes; read by the progress bar and the API. The file lives under
    DATA_DIR/exports/, next to its `.manifest.json`.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    fmt = models.CharField(max_length=20)
    include_demo = models.BooleanField(default=False)
    with_execution = models.BooleanField(default=False)
    min_margin = models.FloatField(default=0.2)
    cutoff = models.DateTimeField(help_text="Only labels created at or before this moment are exported.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True, default="", help_text="The JSONL file, once written.")
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.fmt}, {self.status})"


class CriticRun(models.Model):
    """The metrics of one eval_critic run: a critic version judged against the human labels of an export."""

    version = models.CharField(max_length=200, help_text="The critic's name: its folder name unless given.")
    model_dir = models.CharField(max_length=500)
    data = models.CharField(max_length=500, help_text="The sft export it was evaluated on.")
    rows = models.PositiveIntegerField(default=0)
    valid_json_rate = models.FloatField(null=True)
    band_agreement = models.FloatField(null=True)
    correctness_agreement = models.FloatField(null=True)
    mae = models.JSONField(default=dict, help_text="criterion -> mean absolute error against the human labels")
    metrics = models.JSONField(default=dict, help_text="the whole report of scoring.core.learned.train.evaluate")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"critic {self.version} ({self.created_at:%Y-%m-%d %H:%M})"
