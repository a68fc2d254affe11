"""Tasks, patches and their evaluations. The database is the source of truth for every patch's state."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from scoring.core.types import DEFAULT_AUDIT_RATE, DEFAULT_BAND_HIGH, DEFAULT_BAND_LOW


class Task(models.Model):
    """A base repository with tests, held-out tests and an optional benchmark, described by its spec."""

    name = models.SlugField(max_length=100, unique=True)
    spec = models.JSONField(help_text="The task spec without local paths (scoring.core.intake.spec.TaskSpec.to_json).")
    base_sha256 = models.CharField(max_length=64)
    hidden_sha256 = models.CharField(max_length=64, blank=True, default="")
    reference_sha256 = models.CharField(
        max_length=64, blank=True, default="", help_text="The stored reference solution (diff or archive), if any."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    shared = models.BooleanField(
        default=False, help_text="Other clients may see and score this task; otherwise only the one who registered it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    is_demo = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PatchStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SCORED = "scored"
    NEEDS_REVIEW = "needs_review"
    REVIEWED = "reviewed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


# The status sets, each defined once (the client's reviewapp_client.semantics mirrors them; a test keeps it so).
#: In the pipeline: a worker will move it on.
ACTIVE_STATUSES = frozenset({PatchStatus.QUEUED, PatchStatus.RUNNING})
#: Judged by the automatic scoring: the patch has a current evaluation with subscores.
JUDGED_STATUSES = frozenset({PatchStatus.SCORED, PatchStatus.NEEDS_REVIEW, PatchStatus.REVIEWED})
#: Finished: the pipeline will not move it again (only a reviewer's label, needs_review -> reviewed). /rewards/
#: stops waiting for it and workers publish it finished (scoring.notify).
TERMINAL_STATUSES = JUDGED_STATUSES | {PatchStatus.FAILED, PatchStatus.REJECTED, PatchStatus.CANCELLED}


class Patch(models.Model):
    """One submitted diff. Written before anything is enqueued; its status only moves by compare-and-set."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="patches")
    client = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="patches")
    diff = models.TextField()
    diff_sha256 = models.CharField(max_length=64)
    external_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 - unique only when set
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=PatchStatus.choices, default=PatchStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    run_token = models.CharField(max_length=64, blank=True, default="", help_text="Celery id of the lease holder.")
    next_stage = models.CharField(max_length=20, blank=True, default="", help_text="Stage handed over to.")
    reason = models.TextField(blank=True, default="", help_text="Why the patch failed or was rejected.")
    is_demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "task", "external_id"],
                condition=models.Q(external_id__isnull=False),
                name="patch_external_id_unique_per_client_task",
            )
        ]
        indexes = [
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["client", "status"]),
            models.Index(fields=["task", "status"]),
        ]

    def __str__(self) -> str:
        return f"patch {self.pk} ({self.task_id}, {self.status})"


class StageResult(models.Model):
    """The critic results of one pipeline stage (exec or bench) for one patch. One row per pipeline version."""

    patch = models.ForeignKey(Patch, on_delete=models.CASCADE, related_name="stages")
    stage = models.CharField(max_length=20)
    pipeline_version = models.CharField(max_length=40)
    results = models.JSONField(help_text="criterion -> CriticResult.to_json()")
    meta = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patch", "stage", "pipeline_version"], name="stage_once_per_version")
        ]


class WeightProfile(models.Model):
    """One immutable version of a named weight profile. Editing makes a new version; one row is active."""

    name = models.SlugField(max_length=50)
    version = models.PositiveIntegerField()
    weights = models.JSONField(help_text="criterion -> weight")
    band_low = models.FloatField(default=DEFAULT_BAND_LOW)
    band_high = models.FloatField(default=DEFAULT_BAND_HIGH)
    audit_rate = models.FloatField(default=DEFAULT_AUDIT_RATE)
    perf_knots = models.JSONField(help_text="[[ratio, score], ...]")
    shaping = models.CharField(max_length=20, default="sum", help_text="scoring.core.aggregate.shaping: sum or gated")
    is_active = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="weight_profile_version_unique"),
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_weight_profile"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Evaluation(models.Model):
    """The scored Result of a patch under one pipeline version. Re-aggregation updates it in place."""

    patch = models.ForeignKey(Patch, on_delete=models.CASCADE, related_name="evaluations")
    pipeline_version = models.CharField(max_length=40)
    subscores = models.JSONField(help_text="criterion -> {score, confidence, rationale, evidence, flags}")
    final_score = models.FloatField(null=True)
    weight_profile = models.ForeignKey(WeightProfile, on_delete=models.PROTECT, related_name="evaluations")
    route = models.CharField(max_length=10)
    flags = models.JSONField(default=list)
    comments = models.TextField(blank=True, default="")
    meta = models.JSONField(default=dict, help_text="tools, task sha, sandbox mode, timings")
    min_confidence = models.FloatField(default=1.0, help_text="lowest subscore confidence, for queue priority")
    doubt = models.JSONField(default=list, help_text="criteria still below the confidence threshold after healing")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patch", "pipeline_version"], name="evaluation_once_per_version")
        ]
        indexes = [
            # The review queue's order with every column it filters on, so listing, counting and filtering the
            # queue never read the wide rows (subscores with their evidence, meta): SQLite stores those inline.
            models.Index(
                fields=["pipeline_version", "min_confidence", "patch", "route", "flags", "doubt"],
                name="evaluation_queue",
            )
        ]


class WeightAudit(models.Model):
    """Who changed which weight profile, and how."""

    profile = models.ForeignKey(WeightProfile, on_delete=models.CASCADE, related_name="audit")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=20)  # created | activated
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)


class ReaggregationJob(models.Model):
    """One re-aggregation of every current Evaluation under a weight profile (tuning.services.reaggregate).

    Written by the background task as it goes, read by the /weights/ progress bar and the API.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        SUPERSEDED = "superseded"  # another profile was activated before this job finished
        FAILED = "failed"

    profile = models.ForeignKey(WeightProfile, on_delete=models.CASCADE, related_name="jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    entered = models.PositiveIntegerField(default=0, help_text="patches that entered the review queue")
    left = models.PositiveIntegerField(default=0, help_text="patches that left the review queue")
    held = models.PositiveIntegerField(default=0, help_text="patches kept in the queue: claimed or labelled")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"re-aggregation {self.pk} ({self.profile}, {self.status})"
