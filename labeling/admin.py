from django.contrib import admin

from labeling.models import Claim, CriticRun, ExportJob, LabelEvent
from scoring.admin_site import ReadOnlyAdmin


@admin.register(LabelEvent)
class LabelEventAdmin(ReadOnlyAdmin):
    """Labels are append-only: the admin shows the history and never edits it."""

    list_display = (
        "id",
        "patch_id",
        "reviewer",
        "final_score",
        "task_broken",
        "time_spent_s",
        "supersedes_id",
        "created_at",
    )
    list_filter = ("task_broken", "is_demo")
    search_fields = ("reviewer__username", "comment", "patch__id")
    list_select_related = ("reviewer",)
    date_hierarchy = "created_at"


@admin.register(Claim)
class ClaimAdmin(ReadOnlyAdmin):
    list_display = ("id", "patch_id", "reviewer", "slot", "lease_until", "done_at", "created_at")
    list_filter = ("done_at",)
    search_fields = ("reviewer__username", "patch__id")
    list_select_related = ("reviewer",)


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "fmt", "status", "processed", "total", "requested_by", "created_at")
    list_filter = ("fmt", "status")


@admin.register(CriticRun)
class CriticRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "version", "rows", "valid_json_rate", "band_agreement", "correctness_agreement", "created_at")
