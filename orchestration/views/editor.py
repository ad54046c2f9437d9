"""The plan editor: create and edit plans in web forms, validated as you type, never saved broken."""
from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse

from orchestration.roles import AUTHOR
from orchestration.models import Plan, PlanDraft, PromptTemplate
from orchestration.plans import repositories
from orchestration.plans.editor import EditorState, TaskRow, apply_action, slot_keys, state_from_post, state_from_spec, validate
from orchestration.plans.exporter import spec_to_yaml
from orchestration.plans.shape import analyse, dag_data
from orchestration.plans.store import NameTaken, save_spec
from orchestration.workers.registry import worker_names

TEMPLATE = "plans/edit.html"


@permission_required(AUTHOR, raise_exception=True)
def plan_new(request: HttpRequest) -> HttpResponse:
    """GET/POST /plans/new/: a new plan in the editor."""
    return _editor(request, None)


@permission_required(AUTHOR, raise_exception=True)
def plan_edit(request: HttpRequest, plan_id: int) -> HttpResponse:
    """GET/POST /plans/<id>/edit/: edit a plan; saving adds a revision."""
    return _editor(request, get_object_or_404(Plan, pk=plan_id))


def _editor(request: HttpRequest, plan: Plan | None) -> HttpResponse:
    if request.method != "POST":
        if plan:
            state = state_from_spec(plan.latest_revision.spec)
            state.base_revision = str(plan.latest_revision.number)
        elif "draft" in request.GET:
            ref = request.GET["draft"]
            draft = PlanDraft.objects.filter(pk=int(ref), state="succeeded").first() if re.fullmatch(r"[0-9]{1,12}", ref) else None
            if draft is None:
                messages.error(request, f"Draft {ref} has no plan to open (it failed, or does not exist).")
                return redirect("draft-new")
            state = state_from_spec(draft.spec)
        else:
            state = EditorState(tasks=[TaskRow(worker="shell")])
        return _render(request, plan, state, {})
    state = state_from_post(request.POST)
    if plan is not None and plan.latest_revision.spec.get("workspace"):  # credentials shown as *** are kept
        state.repository = repositories.unmasked(state.repository, plan.latest_revision.spec["workspace"]["repository"])
    action = request.POST.get("action", "")
    if action == "validate":
        return _render(request, plan, state, None, part="error-slots")
    if action != "save":
        apply_action(state, action)
        return _render(request, plan, state, {}, part="editor")
    spec, errors = validate(state, repositories.trusted(request.user))
    if spec is not None and plan is not None and state.base_revision != str(plan.latest_revision.number):
        latest = plan.latest_revision
        spec, errors = None, {"": [
            f"{plan.name} was changed since you opened it (revision {latest.number}, by "
            f"{latest.created_by.get_username() if latest.created_by else 'an import'}). Your edits are below, not saved: "
            f"compare with the revisions page, then open the editor again."]}
    if spec is not None:
        try:
            revision, created = save_spec(spec, spec_to_yaml(spec), "editor", request.user, plan=plan, new=plan is None)
        except NameTaken as error:
            errors = {"name": [str(error)]}
        else:
            verb = f"Saved revision {revision.number}" if created else "Nothing changed"
            messages.success(request, f"{verb} of {revision.plan.name}.")
            return redirect("plan-detail", plan_id=revision.plan_id)
    return _render(request, plan, state, errors, status=400)


def _render(request, plan, state: EditorState, errors: dict | None, part: str = "", status: int = 200):
    """Render the editor (or one part). errors None: validate the state here (as you type)."""
    spec = None
    if errors is None:
        spec, errors = validate(state, repositories.trusted(request.user))
    elif not errors and state.tasks:
        spec, _ = validate(state, repositories.trusted(request.user))
    state.repository = repositories.masked(state.repository)  # the form never shows credentials
    ids = [t.id.strip() or f"#{n + 1}" for n, t in enumerate(state.tasks)]
    context = {
        "plan": plan,
        "state": state,
        "post_url": reverse("plan-edit", args=[plan.pk]) if plan else reverse("plan-new"),
        "workers": worker_names(),
        "prompt_paths": list(PromptTemplate.objects.values_list("path", flat=True)),
        "tasks": [
            {"n": n, "row": row, "errors": {k.split("-", 2)[2]: v for k, v in errors.items() if k.startswith(f"tasks-{n}-")},
             "others": [(m, ids[m], m in row.depends_on) for m in range(len(ids)) if m != n]}
            for n, row in enumerate(state.tasks)
        ],
        "contracts": [
            {"n": n, "row": row, "errors": {k.split("-", 2)[2]: v for k, v in errors.items() if k.startswith(f"contracts-{n}-")}}
            for n, row in enumerate(state.contracts)
        ],
        "points": [
            {"n": n, "row": row, "errors": {k.split("-", 2)[2]: v for k, v in errors.items() if k.startswith(f"points-{n}-")},
             "members": [(m, ids[m], m in row.between) for m in range(len(ids))]}
            for n, row in enumerate(state.points)
        ],
        "errors": errors,
        "plan_errors": errors.get("", []),
        "slots": [(key or "plan", errors.get(key, [])) for key in slot_keys(state)],
        "error_count": sum(len(v) for v in errors.values()),
    }
    # The picture follows the form: it is redrawn whenever what was typed is a valid plan.
    context["dag"] = dag_data(spec) if spec else None
    context["shape"] = analyse(spec) if spec else None
    if part == "editor":  # the re-rendered form, and the picture beside it (out of band)
        html = render_to_string(f"{TEMPLATE}#editor", context, request) + render_to_string(f"{TEMPLATE}#shape-panel", context, request)
        return HttpResponse(html, status=status)
    name = f"{TEMPLATE}#{part}" if part else TEMPLATE
    return render(request, name, context, status=status)
