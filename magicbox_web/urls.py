"""URL routes (HTTP). Websocket routes are in magicbox_web/asgi.py."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from django.contrib.auth.decorators import login_not_required

from orchestration.api.main import not_found as api_not_found
from orchestration.api.main import urls as api_urls
from orchestration.views import account, drafts, editor, plans, prompts, runs, schema

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="run-list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("account/tokens/", account.token_list, name="token-list"),
    path("api/", api_urls()),
    path("api/<path:rest>", login_not_required(api_not_found)),
    path("plans/", plans.plan_list, name="plan-list"),
    path("plans/import/", plans.plan_import, name="plan-import"),
    path("plans/new/", editor.plan_new, name="plan-new"),
    path("plans/draft/", drafts.draft_new, name="draft-new"),
    path("plans/drafts/<int:draft_id>/", drafts.draft_detail, name="draft-detail"),
    path("plans/drafts/<int:draft_id>/cancel/", drafts.draft_cancel, name="draft-cancel"),
    path("plans/<int:plan_id>/edit/", editor.plan_edit, name="plan-edit"),
    path("plans/<int:plan_id>/", plans.plan_detail, name="plan-detail"),
    path("plans/<int:plan_id>/revisions/", plans.plan_revisions, name="plan-revisions"),
    path("plans/<int:plan_id>/export.yaml", plans.plan_export, name="plan-export"),
    path("plans/<int:plan_id>/start/", runs.run_start, name="run-start"),
    path("prompts/", prompts.prompt_list, name="prompt-list"),
    path("prompts/new/", prompts.prompt_edit, name="prompt-new"),
    path("prompts/<int:prompt_id>/", prompts.prompt_edit, name="prompt-edit"),
    path("runs/", runs.run_list, name="run-list"),
    path("runs/compare/", runs.run_compare, name="run-compare"),
    path("runs/<int:run_id>/", runs.run_detail, name="run-detail"),
    path("runs/<int:run_id>/cancel/", runs.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/rerun/", runs.run_rerun, name="run-rerun"),
    path("runs/<int:run_id>/tasks/<int:task_run_id>/cancel/", runs.task_cancel, name="task-cancel"),
    path("runs/<int:run_id>/tasks/<int:task_run_id>/gate/", runs.task_gate, name="task-gate"),
    path("runs/<int:run_id>/tasks/<int:task_run_id>/choose/", runs.task_choose, name="task-choose"),
    path("runs/<int:run_id>/tasks/<int:task_run_id>/output.txt", runs.task_output_download, name="task-output"),
    path("runs/<int:run_id>/tasks/<int:task_run_id>/output/earlier/", runs.task_output_earlier, name="task-output-earlier"),
    path("runs/<int:run_id>/tasks/<int:task_run_id>/diff/", runs.task_diff, name="task-diff"),
    path("runs/<int:run_id>/rounds/<int:change_id>/diff/", runs.round_diff, name="round-diff"),
    path("runs/<int:run_id>/integrate/", runs.run_integrate, name="run-integrate"),
    path("runs/<int:run_id>/integrations/<int:integration_id>/diff/", runs.integration_diff, name="integration-diff"),
    path("runs/<int:run_id>/export.zip", runs.run_export, name="run-export"),
    path("runs/<int:run_id>/summary.md", runs.run_summary, name="run-summary"),
    path("runs/<int:run_id>/summary.json", runs.run_summary, name="run-summary-json"),
    path("schema/plan.json", schema.plan_schema_view, name="plan-schema"),
]
