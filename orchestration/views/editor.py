"""The plan editor: create and edit plans in web forms, validated as you type, never saved broken."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse

from orchestration.models import Plan, PlanDraft, PromptTemplate
from orchestration.plans.editor import EditorState, TaskRow, apply_action, slot_keys, state_from_post, state_from_spec, validate
from orchestration.plans.exporter import spec_to_yaml
from orchestration.plans.shape import analyse, dag_data
from orchestration.plans.store import NameTaken, save_spec
from orchestration.workers.registry import worker_names

TEMPLATE = "plans/edit.html"


def plan_new(request: HttpRequest) -> HttpResponse:
    """GET/POST /plans/new/: a new plan in the editor."""
    return _editor(request, None)


def plan_edit(request: HttpRequest, plan_id: int) -> HttpResponse:
    """GET/POST /plans/<id>/edit/: edit a plan; saving adds a revision."""
    return _editor(request, get_object_or_404(Plan, pk=plan_id))


def _editor(request: HttpRequest, plan: Plan | None) -> HttpResponse:
    if request.method != "POST":
        draft = PlanDraft.objects.filter(pk=request.GET.get("draft"), state="succeeded").first() \
            if plan is None and str(request.GET.get("draft", "")).isdigit() else None
        if draft:
            state = state_from_spec(draft.spec)
        elif plan:
            state = state_from_spec(plan.latest_revision.spec)
        else:
            state = EditorState(tasks=[TaskRow(worker="shell")])
        return _render(request, plan, state, {}, full=True)
    state = state_from_post(request.POST)
    action = request.POST.get("action", "")
    if action == "validate":
        _, errors = validate(state)
        return _render(request, plan, state, errors, part="error-slots")
    if action != "save":
        apply_action(state, action)
        return _render(request, plan, state, {}, part="editor")
    spec, errors = validate(state)
    if spec is not None and plan is None and Plan.objects.filter(name=spec["name"]).exists():
        spec, errors = None, {"name": [f"A plan named '{spec['name']}' already exists: choose another name, or edit that plan."]}
    if spec is not None:
        try:
            revision, created = save_spec(spec, spec_to_yaml(spec), "editor", request.user, plan=plan)
        except NameTaken as error:
            errors = {"name": [str(error)]}
        else:
            verb = f"Saved revision {revision.number}" if created else "Nothing changed"
            messages.success(request, f"{verb} of {revision.plan.name}.")
            return redirect("plan-detail", plan_id=revision.plan_id)
    return _render(request, plan, state, errors, full=True, status=400)


def _render(request, plan, state: EditorState, errors: dict, full: bool = False, part: str = "", status: int = 200):
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
    spec, _ = validate(state) if state.tasks else (None, None)
    context["dag"] = dag_data(spec) if spec else None
    context["shape"] = analyse(spec) if spec else None
    if part == "editor":  # the re-rendered form, and the picture beside it (out of band)
        html = render_to_string(f"{TEMPLATE}#editor", context, request) + render_to_string(f"{TEMPLATE}#shape-panel", context, request)
        return HttpResponse(html, status=status)
    name = f"{TEMPLATE}#{part}" if part else TEMPLATE
    return render(request, name, context, status=status)
