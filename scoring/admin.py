from django.contrib import admin

from scoring.admin_site import ReadOnlyAdmin
from scoring.models import Evaluation, Patch, StageResult, Task, WeightAudit, WeightProfile


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    """Tasks are registered through the API or the CLI, which check the spec and the archives."""

    list_display = ("name", "base_sha256", "shared", "is_demo", "created_by", "created_at")
    list_filter = ("shared", "is_demo")
    search_fields = ("name",)


@admin.register(Patch)
class PatchAdmin(ReadOnlyAdmin):
    """A patch's status moves only through the status machine (scoring.services)."""

    list_display = ("id", "task", "status", "external_id", "client", "attempts", "created_at", "finished_at")
    list_filter = ("status", "is_demo", "task")
    search_fields = ("id", "external_id", "client__username")
    list_select_related = ("task", "client")
    date_hierarchy = "created_at"


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdmin):
    list_display = ("id", "patch_id", "final_score", "route", "min_confidence", "weight_profile", "pipeline_version")
    list_filter = ("route", "pipeline_version")
    search_fields = ("patch__id",)
    list_select_related = ("weight_profile",)


@admin.register(StageResult)
class StageResultAdmin(ReadOnlyAdmin):
    list_display = ("id", "patch_id", "stage", "pipeline_version", "created_at")
    list_filter = ("stage", "pipeline_version")


@admin.register(WeightProfile)
class WeightProfileAdmin(ReadOnlyAdmin):
    """Profiles are immutable versions; the /weights/ page creates and activates them."""

    list_display = ("name", "version", "is_active", "band_low", "band_high", "audit_rate", "created_by", "created_at")
    list_filter = ("is_active", "name")


@admin.register(WeightAudit)
class WeightAuditAdmin(ReadOnlyAdmin):
    list_display = ("profile", "action", "actor", "created_at")
    list_select_related = ("profile", "actor")
