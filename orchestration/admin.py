"""Django admin: plans and runs (read mostly; runs are created by the engine), the audit trail
(read only) and workers' settings (superusers only)."""
import re

from django import forms
from django.contrib import admin

from orchestration.models import AuditEvent, Plan, PlanRevision, Run, TaskRun, Webhook, WebhookDelivery, WorkerSetting
from orchestration.workers.registry import forget_overrides, worker_config, worker_names


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
    # The name and description come from the plan's spec: change them by editing the plan.
    readonly_fields = ("name", "description", "created_by", "created_at", "updated_at")
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


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class BoundedJSONField(forms.JSONField):
    """A JSON form field that refuses nesting Python cannot parse with a message, not a crash."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError("This JSON is nested too deeply.") from None

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)


class WorkerSettingForm(forms.ModelForm):
    """Checks an override before it reaches a worker: a configured worker, argv strings with
    known placeholders, variable names a process environment accepts, a limit of 1 or more."""

    worker = forms.ChoiceField(choices=())
    args = BoundedJSONField(required=False, help_text=WorkerSetting._meta.get_field("args").help_text)
    env = BoundedJSONField(required=False, help_text=WorkerSetting._meta.get_field("env").help_text)
    env_passthrough = BoundedJSONField(required=False, help_text=WorkerSetting._meta.get_field("env_passthrough").help_text)
    max_parallel = forms.IntegerField(required=False, min_value=1,
                                      help_text="Task runs of this worker at once, over all processes (empty: no limit of its own).")

    class Meta:
        model = WorkerSetting
        fields = ("worker", "program", "args", "env", "env_passthrough", "max_parallel")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["worker"].choices = [(name, name) for name in worker_names()]

    def clean_args(self):
        args = self.cleaned_data["args"]
        if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            raise forms.ValidationError('Give a JSON list of strings, e.g. ["-p", "{prompt}"], or leave it empty.')
        for arg in args or []:
            if "\x00" in arg:
                raise forms.ValidationError("An argument cannot contain a NUL character.")
            unknown = sorted(set(PLACEHOLDER.findall(arg)) - {"prompt", "workdir"})
            if unknown:
                raise forms.ValidationError(f"Unknown placeholder {{{unknown[0]}}}: the arguments may use {{prompt}} and {{workdir}}.")
        return args

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("worker")
        if name and worker_config(name).kind == "command" and (cleaned.get("program") or cleaned.get("args") is not None):
            raise forms.ValidationError(f"The {name} worker runs each task's own command: it has no program or arguments "
                                        "to set (set its environment or limit instead).")
        return cleaned

    def clean_env(self):
        env = self.cleaned_data["env"] or {}
        if not isinstance(env, dict):
            raise forms.ValidationError('Give a JSON object of strings, e.g. {"ANTHROPIC_MODEL": "claude-sonnet-4"}.')
        for name, value in env.items():
            if not ENV_NAME.fullmatch(name):
                raise forms.ValidationError(f"'{name}' is not a variable name (letters, digits and _, not starting with a digit).")
            if not isinstance(value, str) or "\x00" in value:
                raise forms.ValidationError(f"The value of {name} must be a string without NUL characters.")
            if len(value) > 32_768:
                raise forms.ValidationError(f"The value of {name} is longer than 32,768 characters: the system cannot pass it to a program.")
        return env

    def clean_env_passthrough(self):
        names = self.cleaned_data["env_passthrough"] or []
        if not (isinstance(names, list) and all(isinstance(n, str) and ENV_NAME.fullmatch(n) for n in names)):
            raise forms.ValidationError('Give a JSON list of variable names, e.g. ["HTTPS_PROXY"].')
        return names


@admin.register(WorkerSetting)
class WorkerSettingAdmin(admin.ModelAdmin):
    """Workers' commands and environment: superusers only (not staff, not any role group)."""

    form = WorkerSettingForm
    list_display = ("worker", "program", "max_parallel", "updated_by", "updated_at")
    readonly_fields = ("updated_by", "updated_at")

    def _superuser(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_module_permission(self, request) -> bool:
        return self._superuser(request) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._superuser(request)

    def has_add_permission(self, request) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._superuser(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._superuser(request)

    def save_model(self, request, obj, form, change) -> None:
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
        forget_overrides()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        forget_overrides()


class WebhookForm(forms.ModelForm):
    """A webhook's events as checkboxes (none ticked: every event)."""

    url = forms.URLField(max_length=2000, assume_scheme="https", help_text="http:// or https://")
    events = forms.TypedMultipleChoiceField(choices=[(e, e) for e in Webhook.EVENTS], required=False,
                                            widget=forms.CheckboxSelectMultiple,
                                            help_text="None ticked: every event.")

    class Meta:
        model = Webhook
        fields = ["name", "url", "kind", "plan", "events", "secret", "active"]


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    """Webhooks (engine.webhooks): administrators add the URLs called on run events; the secret
    that signs each delivery is made when left empty, and shown here to configure the receiver."""

    form = WebhookForm
    list_display = ("name", "url", "kind", "plan", "events", "active")
    list_filter = ("kind", "active")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Every delivery with its state, attempts and the receiver's last answer (read-only)."""

    list_display = ("event", "webhook", "run", "state", "response_code", "attempt", "created_at", "state_reason")
    list_filter = ("state", "event", "webhook")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
