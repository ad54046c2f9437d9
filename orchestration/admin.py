"""Django admin for plans and runs (read mostly; runs are created by the engine)."""
from django.contrib import admin

from orchestration.models import AuditEvent, Plan, PlanRevision, Run, TaskRun


class PlanRevisionInline(admin.TabularInline):
    model = PlanRevision
    fields = ("number", "source_name", "created_by", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "updated_at", "created_by")
    search_fields = ("name", "description")
    inlines = [PlanRevisionInline]


class TaskRunInline(admin.TabularInline):
    model = TaskRun
    fields = ("task_id", "worker", "state", "attempt", "exit_code", "started_at", "finished_at", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "plan", "state", "started_by", "created_at", "finished_at")
    list_filter = ("state",)
    readonly_fields = ("plan", "revision", "state", "state_reason", "worker_map", "started_by", "created_at", "started_at", "finished_at")
    inlines = [TaskRunInline]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail, read only: events are never changed or deleted from the browser."""

    list_display = ("at", "actor_name", "action", "plan", "run", "detail")
    list_filter = ("action",)
    search_fields = ("actor_name", "detail", "plan__name")
    readonly_fields = ("at", "actor", "actor_name", "action", "plan", "run", "detail")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
