"""Run pages: start a run, the runs list (history) and the live run page."""
from __future__ import annotations

from urllib.parse import quote, urlencode
from wsgiref.util import FileWrapper

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from orchestration import audit
from orchestration.engine import choosing, gates
from orchestration.engine.scheduler import cancel_run, cancel_task, rerun, rerun_selection, start_run
from orchestration import terminal
from orchestration.plans.shape import dag_data
from orchestration.review import comparison, cost, export, history
from orchestration.review.output import output_pieces
from orchestration.review.grid import run_grid
from orchestration.live import choose_task, detail_context, first_line, output_window, run_context, task_list
from orchestration.roles import OPERATOR
from orchestration.engine.integration import request_integration
from orchestration.models import CapturedDiff, Integration, Plan, RoundChange, Run, TaskRun
from orchestration.plans.inputs import InputsRefused
from orchestration.plans.repositories import RepositoryRefused
from orchestration.forms import RunFilterForm
from orchestration.views.plans import start_form
from orchestration.workers.registry import UnknownWorker, worker_config
from orchestration.views.streaming import download


@require_POST
@permission_required(OPERATOR, raise_exception=True)
def run_start(request: HttpRequest, plan_id: int) -> HttpResponse:
    """POST /plans/<id>/start/: create a run of the latest revision and open its page."""
    plan = get_object_or_404(Plan, pk=plan_id)
    form = start_form(plan, request.POST)
    if not form.is_valid():
        problems = [f"{form.fields[name].label if name in form.fields else name}: {error}"
                    for name, errors in form.errors.items() for error in errors]
        messages.error(request, "The run was not started. " + "; ".join(problems))
        return redirect("plan-detail", plan_id=plan.pk)
    try:
        run = start_run(plan, request.user, form.worker_map(), inputs=form.inputs())
    except (UnknownWorker, RepositoryRefused, InputsRefused) as error:
        messages.error(request, ("The run was not started. " if isinstance(error, InputsRefused) else "") + str(error))
        return redirect("plan-detail", plan_id=plan.pk)
    return redirect("run-detail", run_id=run.pk)


def run_list(request: HttpRequest) -> HttpResponse:
    """GET /runs/[?state=&plan=&started_by=&since=&until=&q=&page=]: the runs the filters match
    (forms.RunFilterForm), newest first, 50 a page, each with its tasks' states and cost; kept
    current by the websocket /ws/runs/ (consumers.RunsConsumer) with the same parameters."""
    form = RunFilterForm(request.GET)
    page = history.runs_page(form, request.GET.get("page"))
    plan = form.filters().get("plan")
    grid = run_grid(plan, plan.latest_revision.spec) if plan is not None else None
    context = {**history.list_context(form, page), "grid": grid}
    if not context.get("query") and not Run.objects.exists():  # a new installation: where to start
        context["first_plan"] = Plan.objects.filter(name=EXAMPLE_PLAN).first() or Plan.objects.order_by("pk").first()
    return render(request, "runs/list.html", context)


EXAMPLE_PLAN = "Magic Box repository checks"  # examples/repo-checks.yaml, which ./start loads


COMPARE_CHOICES = 50  # earlier runs of the plan offered by a run page's "Compare with…"


RUN_TABS = ("tasks", "checks", "changes", "history")


def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    """GET /runs/<id>/[?task=<task id>][&tab=tasks|checks|changes|history]: the live run page
    (the websocket keeps it current). It shows one task's detail: the one ?task= names, else
    the first failed, else the first running task (live.choose_task); only that task's output is
    read. A constant number of queries whatever the run's size."""
    run = get_object_or_404(Run.objects.select_related("plan", "started_by", "revision"), pk=run_id)
    task_runs = task_list(run)
    context = run_context(run, task_runs)
    selected = choose_task(task_runs, request.GET.get("task"))
    if selected is not None:
        context.update(detail_context(run, selected, task_runs))
    states = {t.task_id: t.state for t in task_runs}
    dag = {**dag_data(run.revision.spec, states), **({"critical": context["timeline"]["critical"]} if context["timeline"]["critical"] else {})}
    # "Compare with…": the plan's other recent runs, newest first.
    others = Run.objects.filter(plan_id=run.plan_id).exclude(pk=run.pk).order_by("-pk").values("pk", "state", "created_at")[:COMPARE_CHOICES]
    tab = request.GET.get("tab") if request.GET.get("tab") in RUN_TABS else "tasks"
    return render(request, "runs/detail.html", {**context, "dag": dag, "compare_choices": list(others), "tab": tab,
                                                **audit.latest(run.audit_events.all())})


def task_output_download(request: HttpRequest, run_id: int, task_run_id: int) -> StreamingHttpResponse:
    """GET /runs/<id>/tasks/<task run id>/output.txt: the task's whole stored output, streamed
    in pieces of about review.output.PIECE_BYTES, as fast as the client takes them."""
    task_run = get_object_or_404(TaskRun, pk=task_run_id, run_id=run_id)
    return download(output_pieces(task_run.pk), f"run{run_id}-{task_run.task_id}.txt", "text/plain; charset=utf-8")


def task_output_earlier(request: HttpRequest, run_id: int, task_run_id: int) -> HttpResponse:
    """GET /runs/<id>/tasks/<task run id>/output/earlier/?seq=N[&chars=M]: the window of output
    before that cursor (live.OutputWindow), to prepend to the page's log, and the button for the
    window before it (swapped out of band). The window carries the line number of its first line
    (data-first-line), which the log's line links count from."""
    task_run = get_object_or_404(TaskRun.objects.select_related("run"), pk=task_run_id, run_id=run_id)
    try:
        seq = int(request.GET["seq"])
        chars = int(request.GET["chars"]) if "chars" in request.GET else None
        if seq < 0 or (chars is not None and chars < 0):
            raise ValueError
    except (KeyError, ValueError):
        return HttpResponseBadRequest("seq (a chunk number) is required, and seq and chars must be numbers of 0 or more")
    window = output_window(task_run.pk, seq, chars)
    task_run.earlier_query = urlencode(window.earlier or {})
    task_run.hidden_output = 0  # the note no longer gives a size: counting it would read every earlier chunk
    html = render_to_string("runs/detail.html#earlier-note", {"run": task_run.run, "task_run": task_run, "oob": True})
    return HttpResponse(f'<span class="earlier" data-first-line="{first_line(task_run.pk, window.earlier)}">'
                        f'{terminal.render(window.text)}</span>{html}')


@require_POST
@permission_required(OPERATOR, raise_exception=True)
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    """POST /runs/<id>/cancel/: cancel every unfinished task (their processes are killed within ~1 s)."""
    run = get_object_or_404(Run, pk=run_id)
    if not cancel_run(run.pk, f"cancelled by {request.user.get_username()}", request.user):
        messages.info(request, f"Run #{run.pk} had already ended.")
    return redirect("run-detail", run_id=run.pk)


@require_POST
@permission_required(OPERATOR, raise_exception=True)
def task_cancel(request: HttpRequest, run_id: int, task_run_id: int) -> HttpResponse:
    """POST /runs/<id>/tasks/<task run id>/cancel/: cancel one task (and what waits for it)."""
    task_run = get_object_or_404(TaskRun, pk=task_run_id, run_id=run_id)
    if not cancel_task(task_run, f"cancelled by {request.user.get_username()}", request.user):
        messages.info(request, f"Task {task_run.task_id} had already ended.")
    return redirect("run-detail", run_id=run_id)


@require_POST
@permission_required(OPERATOR, raise_exception=True)
def task_gate(request: HttpRequest, run_id: int, task_run_id: int) -> HttpResponse:
    """POST /runs/<id>/tasks/<task run id>/gate/ (decision=approve|reject, comment): an
    Operator's decision on the gate the task waits at, recorded in its History and the audit
    trail. Approving lets what waits for it start; rejecting skips it, naming the gate."""
    task_run = get_object_or_404(TaskRun.objects.select_related("run"), pk=task_run_id, run_id=run_id)
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject"):
        messages.error(request, "Choose Approve or Reject.")
    elif not gates.decide_by(task_run, request.user, decision == "approve", request.POST.get("comment", "")[:2000]):
        messages.info(request, f"The gate after {task_run.task_id} was no longer waiting: it was decided or cancelled.")
    return redirect(f"{reverse('run-detail', args=[run_id])}?task={quote(task_run.task_id)}")


@require_POST
@permission_required(OPERATOR, raise_exception=True)
def task_choose(request: HttpRequest, run_id: int, task_run_id: int) -> HttpResponse:
    """POST /runs/<id>/tasks/<task run id>/choose/ (winner=<candidate task id>, comment): an
    Operator's pick among the candidates of a task whose `choose:` is person, recorded in its
    History and the audit trail; the task then succeeds as the winner."""
    task_run = get_object_or_404(TaskRun.objects.select_related("run"), pk=task_run_id, run_id=run_id)
    winner = request.POST.get("winner", "")
    if not choosing.choose_by(task_run, request.user, winner, request.POST.get("comment", "")[:2000]):
        messages.error(request, f"{winner or 'That'} cannot be chosen: {task_run.task_id} is not waiting for a choice, "
                                "or it is not one of its succeeded candidates.")
    return redirect(f"{reverse('run-detail', args=[run_id])}?task={quote(task_run.task_id)}")


@require_http_methods(["GET", "POST"])
@permission_required(OPERATOR, raise_exception=True)
def run_rerun(request: HttpRequest, run_id: int) -> HttpResponse:
    """GET /runs/<id>/rerun/[?task=<id>]: what a re-run would run again (the failed and skipped
    tasks and what waits for them, or one task and what waits for it), with each agent task's
    estimated cost from its earlier runs, and a button that POSTs here (task in the form) to start
    it: a new run redoing exactly those tasks and keeping every other one as it ended."""
    run = get_object_or_404(Run.objects.select_related("plan", "revision"), pk=run_id)
    task_id = (request.POST if request.method == "POST" else request.GET).get("task") or None
    try:
        if request.method == "POST":
            return redirect("run-detail", run_id=rerun(run, request.user, task_id).pk)
        if not run.is_finished:
            raise ValueError(f"run #{run.pk} is still {run.state}: cancel it or wait for it to end before re-running it")
        redo = rerun_selection(run, task_id)
    except ValueError as error:
        messages.error(request, str(error))
        return redirect("run-detail", run_id=run.pk)
    rows = {t.task_id: t for t in run.task_runs.filter(task_id__in=redo)}
    estimates = cost.estimates(run.plan, [t for t in redo if _is_agent(rows[t].worker)])
    tasks = [{"task_run": rows[t], "estimate": estimates.get(t)} for t in redo]
    known = [e for e in estimates.values() if e.usd is not None]
    return render(request, "runs/rerun_confirm.html", {
        "run": run, "task_id": task_id, "tasks": tasks, "kept": run.task_runs.exclude(task_id__in=redo).count(),
        "total": sum(e.usd for e in known) if known else None, "unestimated": len(estimates) - len(known)})


def _is_agent(worker: str) -> bool:
    """Whether the worker takes prompts (costs money); a worker no longer configured counts as one."""
    try:
        return worker_config(worker).kind == "agent"
    except UnknownWorker:
        return True


LARGE_FILE_LINES = 800  # a file's diff longer than this waits for a click


def task_diff(request: HttpRequest, run_id: int, task_run_id: int) -> HttpResponse:
    """GET /runs/<id>/tasks/<task run id>/diff/[?file=<path>]: the task's captured diff, file by
    file (each file's longer than LARGE_FILE_LINES loads on demand), or the one file asked for."""
    task_run = get_object_or_404(TaskRun.objects.select_related("run"), pk=task_run_id, run_id=run_id)
    change = getattr(task_run, "change", None)
    if change is None:
        return HttpResponse('<p class="muted">This task has no captured changes.</p>')
    return _diff_page(request, change, f"task {task_run.task_id}",
                      {"run": task_run.run, "task_run": task_run, "branch": change.branch, "start_commit": change.start_commit,
                       "diff_url": reverse("task-diff", args=(run_id, task_run.pk))})


def round_diff(request: HttpRequest, run_id: int, change_id: int) -> HttpResponse:
    """GET /runs/<id>/rounds/<round change id>/diff/[?file=<path>]: what one task of a review
    loop's round changed, against the round before (models.RoundChange), shown like a task's diff."""
    change = get_object_or_404(RoundChange.objects.select_related("round__run"), pk=change_id, round__run_id=run_id)
    return _diff_page(request, change, f"task {change.task_id} in round {change.round.number}",
                      {"run": change.round.run, "branch": f"round {change.round.number} of {change.round.review}",
                       "start_commit": change.start_commit, "diff_url": reverse("round-diff", args=(run_id, change.pk))})


def integration_diff(request: HttpRequest, run_id: int, integration_id: int) -> HttpResponse:
    """GET /runs/<id>/integrations/<integration id>/diff/[?file=<path>]: the integration
    branch's combined diff against the run's base commit, shown like a task's (task_diff)."""
    integration = get_object_or_404(Integration.objects.select_related("run"), pk=integration_id, run_id=run_id)
    if not integration.head_commit:
        return HttpResponse('<p class="muted">This integration did not merge every branch: it has no combined diff.</p>')
    return _diff_page(request, integration, f"integration #{integration.pk}",
                      {"run": integration.run, "integration": integration, "branch": integration.branch,
                       "start_commit": integration.run.base_commit,
                       "diff_url": reverse("integration-diff", args=(run_id, integration.pk))})


def _diff_page(request: HttpRequest, change: CapturedDiff, name: str, context: dict) -> HttpResponse:
    """A captured diff file by file, or the one file ?file= asks for (a 400 naming `name` when
    it changed no such file). context: run, branch, start_commit, diff_url (this page's URL)."""
    wanted = request.GET.get("file")
    files = []
    for entry in change.files:
        if wanted is not None and entry["path"] != wanted:
            continue
        patch = change.file_patch(entry["path"]) if entry.get("start") is not None else None
        lines = patch.count("\n") if patch else 0
        files.append({**entry, "patch": patch, "lines": lines, "large": lines > LARGE_FILE_LINES})
    if wanted is not None and not files:
        return HttpResponseBadRequest(format_html("{} changed no file named {}", name, wanted))
    context = {**context, "change": change, "files": files, "single": wanted is not None, "limit": change.PATCH_LIMIT}
    if wanted is not None:  # replaces the file's placeholder: just that file's block
        return render(request, "runs/diff.html#diff-file", {**context, "f": files[0]})
    return render(request, "runs/diff.html", context)


@require_POST
@permission_required(OPERATOR, raise_exception=True)
def run_integrate(request: HttpRequest, run_id: int) -> HttpResponse:
    """POST /runs/<id>/integrate/: queue an integration of the run's successful task branches
    (a worker process merges them and runs the workspace's check)."""
    run = get_object_or_404(Run, pk=run_id)
    try:
        request_integration(run, request.user)
    except ValueError as error:
        messages.error(request, str(error))
    return redirect("run-detail", run_id=run.pk)


def run_compare(request: HttpRequest) -> HttpResponse:
    """GET /runs/compare/?a=<run>&b=<run>: two runs side by side, task by task (review.comparison)."""
    try:
        a, b = (get_object_or_404(Run.objects.select_related("plan", "revision"), pk=int(request.GET[k])) for k in ("a", "b"))
    except (KeyError, ValueError):
        return HttpResponseBadRequest("Give two run numbers: /runs/compare/?a=<run>&b=<run>")
    return render(request, "runs/compare.html", comparison.compare(a, b))


EXPORT_BLOCK = 256 * 1024  # bytes of the export zip read at once


def run_export(request: HttpRequest, run_id: int) -> StreamingHttpResponse:
    """GET /runs/<id>/export.zip: summary.json, summary.md, every output and every diff (the zip
    is built in a temporary file, then streamed from it)."""
    run = get_object_or_404(Run.objects.select_related("plan", "revision", "started_by"), pk=run_id)
    archive = export.archive(run)
    return download(FileWrapper(archive, EXPORT_BLOCK), f"magicbox-run{run.pk}.zip", "application/zip")


def run_summary(request: HttpRequest, run_id: int) -> HttpResponse:
    """GET /runs/<id>/summary.md (or summary.json): the run's summary for a pull request or a ticket."""
    run = get_object_or_404(Run.objects.select_related("plan", "revision", "started_by"), pk=run_id)
    data = export.summary(run)
    if request.path.endswith(".json"):
        return JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    return HttpResponse(export.markdown(data), content_type="text/markdown; charset=utf-8")
