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
from orchestration.plans.editor import (TASK_MORE_ERRORS, TASK_MORE_FIELDS, EditorState, TaskRow, apply_action, slot_keys, state_from_post, state_from_spec,
                                        validate)
from orchestration.plans.exporter import spec_to_yaml
from orchestration.plans.shape import analyse, dag_data
from orchestration.plans.spec import PlanSpec
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
        # A stored plan or draft is valid as stored: its picture is drawn from it, not re-checked.
        if plan:
            spec = plan.latest_revision.spec
            state = state_from_spec(spec)
            state.base_revision = str(plan.latest_revision.number)
        elif "draft" in request.GET:
            ref = request.GET["draft"]
            draft = PlanDraft.objects.filter(pk=int(ref), state="succeeded").first() if re.fullmatch(r"[0-9]{1,12}", ref) else None
            if draft is None:
                messages.error(request, f"Draft {ref} has no plan to open (it failed, or does not exist).")
                return redirect("draft-new")
            spec = draft.spec
            state = state_from_spec(spec)
        else:
            spec, state = None, EditorState(tasks=[TaskRow(worker="shell")])
        return _render(request, plan, state, {}, spec=spec)
    state = state_from_post(request.POST)
    if plan is not None and plan.latest_revision.spec.workspace:  # credentials shown as *** are kept
        state.repository = repositories.unmasked(state.repository, plan.latest_revision.spec.workspace.repository)
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


def _render(request, plan, state: EditorState, errors: dict | None, part: str = "", status: int = 200,
            spec: PlanSpec | None = None) -> HttpResponse:
    """Render the editor (or one part: "editor", "error-slots").

    errors None: validate the state here (as you type). spec: the valid plan the state shows
    when the caller has it (a stored revision); otherwise the picture needs a validation.
    Work and HTML grow linearly with the tasks: a task lists only its own dependencies (the
    picker offers the others in the browser), and its folded-away fields are only sent when
    they hold something.
    """
    if errors is None:
        spec, errors = validate(state, repositories.trusted(request.user))
    elif spec is None and not errors and state.tasks:
        spec, _ = validate(state, repositories.trusted(request.user))
    state.repository = repositories.masked(state.repository)  # the form never shows credentials
    ids = [t.id.strip() or f"#{n + 1}" for n, t in enumerate(state.tasks)]
    by_row = _errors_by_row(errors)
    context = {
        "plan": plan,
        "state": state,
        "post_url": reverse("plan-edit", args=[plan.pk]) if plan else reverse("plan-new"),
        "workers": worker_names(),
        "prompt_paths": list(PromptTemplate.objects.values_list("path", flat=True)),
        # Rows as dicts (vars of the dataclass): template lookups on them are the cheap kind.
        "tasks": [
            {"n": n, "key": f"tasks-{n}", "row": vars(row), "errors": by_row.get(("tasks", n), {}),
             "more": any(getattr(row, f).strip() for f in TASK_MORE_FIELDS),
             "depends": [(m, ids[m]) for m in row.depends_on if m < len(ids)]}
            for n, row in enumerate(state.tasks)
        ],
        "contracts": [{"n": n, "key": f"contracts-{n}", "row": row, "errors": by_row.get(("contracts", n), {})}
                      for n, row in enumerate(state.contracts)],
        "inputs": [{"n": n, "key": f"inputs-{n}", "row": row, "errors": by_row.get(("inputs", n), {})}
                   for n, row in enumerate(state.inputs)],
        "points": [
            {"n": n, "key": f"points-{n}", "row": row, "errors": by_row.get(("points", n), {}),
             "members": [(m, ids[m]) for m in row.between if m < len(ids)]}
            for n, row in enumerate(state.points)
        ],
        "errors": errors,
        "more_fields": TASK_MORE_ERRORS,
        # As you type, the page drops the error lists it shows; only fields with messages get one
        # back, and the plan's own (always there, so that there is always one to drop).
        "slots": [(key, _slot_anchor(key)) for key in slot_keys(state) if not key or errors.get(key)] if part == "error-slots" else [],
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


def _slot_anchor(key: str) -> str:
    """Where a field's error list goes, as an htmx out-of-band swap ("how:selector"): where the
    editor template renders it. "" is the whole plan (the top of the form); a task's folded
    fields list theirs before its dependencies, in order; a task picker's follows its box;
    any other field's follows its label."""
    if not key:
        return "afterbegin:#editor"
    match = re.fullmatch(r"tasks-(\d+)-(\w+)", key)
    if match and match.group(2) in TASK_MORE_ERRORS:
        return f'beforebegin:#editor .depends:has([name="tasks-{match.group(1)}-depends_on"])'
    if re.fullmatch(r"tasks-\d+-depends_on|points-\d+-between", key):
        return f'afterend:#editor .depends:has([name="{key}"])'
    return f'afterend:#editor label:has(> [name="{key}"])'


def _errors_by_row(errors: dict[str, list[str]]) -> dict[tuple[str, int], dict[str, list[str]]]:
    """{"tasks-2-id": [...]} -> {("tasks", 2): {"id": [...]}} (keys of other shapes are left out)."""
    rows: dict[tuple[str, int], dict[str, list[str]]] = {}
    for key, messages_ in errors.items():
        match = re.fullmatch(r"(tasks|contracts|points|inputs)-(\d+)-(\w+)", key)
        if match:
            rows.setdefault((match.group(1), int(match.group(2))), {})[match.group(3)] = messages_
    return rows
