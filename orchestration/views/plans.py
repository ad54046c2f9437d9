"""Plan pages: the list with the import form, and one plan with its tasks and the start form."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from orchestration import audit
from orchestration.review import cost
from orchestration.review.grid import run_grid
from orchestration.forms import PlanImportForm, RunStartForm
from orchestration.roles import AUTHOR
from orchestration.models import Plan
from orchestration.plans.compare import revision_diff
from orchestration.plans.exporter import spec_to_yaml
from orchestration.plans.phased import slug
from orchestration.plans.shape import analyse, dag_data, past_durations
from orchestration.plans.store import save_spec
from orchestration.workers.registry import availability, worker_config, worker_names


def plan_list(request: HttpRequest) -> HttpResponse:
    """GET /plans/: every plan with its latest revision and last run."""
    plans = Plan.objects.prefetch_related("revisions").order_by("name")
    return render(request, "plans/list.html", {"plans": plans, "form": PlanImportForm()})


@require_POST
@permission_required(AUTHOR, raise_exception=True)
def plan_import(request: HttpRequest) -> HttpResponse:
    """POST /plans/import/: validate an uploaded or pasted plan; store it only if valid."""
    form = PlanImportForm(request.POST, request.FILES, user=request.user)
    if not form.is_valid():
        plans = Plan.objects.order_by("name")
        return render(request, "plans/list.html", {"plans": plans, "form": form}, status=400)
    revision, created = save_spec(form.spec, form.source_text, form.source_name, request.user)
    warned = f" with {len(form.spec.notices)} warning{'s' if len(form.spec.notices) != 1 else ''}: see below" if form.spec.notices else ""
    if created:
        messages.success(request, f"Imported {revision.plan.name} (revision {revision.number}){warned}.")
    else:
        messages.info(request, f"{revision.plan.name} is unchanged since revision {revision.number}.")
    return redirect("plan-detail", plan_id=revision.plan_id)


def start_form(plan: Plan, data=None) -> RunStartForm:
    """The run start form of `plan`'s latest revision."""
    spec = plan.latest_revision.spec
    used = sorted({t.worker for t in spec.tasks})
    kinds = {name: worker_config(name).kind for name in worker_names()}
    return RunStartForm(data, plan_workers=used, kinds=kinds, unavailable=availability(), inputs=spec.inputs)


def plan_detail(request: HttpRequest, plan_id: int) -> HttpResponse:
    """GET /plans/<id>/: tasks, shape figures, recent runs and the start form."""
    plan = get_object_or_404(Plan, pk=plan_id)
    revision = plan.latest_revision
    spec = revision.spec
    shape = analyse(spec, past_durations(plan))
    context = {
        "plan": plan,
        "revision": revision,
        "spec": spec,
        "shape": shape,
        "dag": {**dag_data(spec), "critical": shape.critical_path},  # by past durations when known
        "runs": plan.runs.select_related("started_by")[:10],
        "grid": run_grid(plan, spec),
        "plan_cost": cost.plan_total(plan),
        "form": start_form(plan),
        "unavailable": availability(),
        **audit.latest(plan.audit_events.all()),
    }
    return render(request, "plans/detail.html", context)


def plan_revisions(request: HttpRequest, plan_id: int) -> HttpResponse:
    """GET /plans/<id>/revisions/[?a=N&b=M]: every revision, and the diff between two of them."""
    plan = get_object_or_404(Plan, pk=plan_id)
    revisions = list(plan.revisions.select_related("created_by").order_by("-number"))
    numbers = {r.number: r for r in revisions}
    newest = revisions[0]
    try:
        new = numbers[int(request.GET.get("b", newest.number))]
        old = numbers[int(request.GET.get("a", max(new.number - 1, 1)))]
    except (KeyError, ValueError):
        raise Http404("No such revision of this plan") from None
    context = {"plan": plan, "revisions": revisions, "old": old, "new": new, "diff": revision_diff(old, new)}
    return render(request, "plans/revisions.html", context)


def plan_export(request: HttpRequest, plan_id: int) -> HttpResponse:
    """GET /plans/<id>/export.yaml[?revision=N]: the plan as YAML that imports back to it."""
    plan = get_object_or_404(Plan, pk=plan_id)
    number = request.GET.get("revision")
    revision = plan.revisions.filter(number=number).first() if number and number.isdecimal() else plan.latest_revision
    if revision is None:
        raise Http404("No such revision of this plan")
    schema_url = request.build_absolute_uri("/schema/plan.json")
    response = HttpResponse(spec_to_yaml(revision.spec, schema_url), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slug(plan.name) or "plan"}-r{revision.number}.yaml"'
    return response
