"""The HTTP API under /api/ (django-ninja): plans, runs, outputs and diffs, for scripts, CI jobs
and agents. Its OpenAPI schema is served at /api/openapi.json and browsable at /api/docs.

Every request authenticates with a personal token (`Authorization: Bearer mbx_…`, made on
/account/tokens/, orchestration.api.tokens) and may do what the token's owner may do in the
browser (orchestration.roles: Viewers read, Authors import plans, Operators start, cancel and
re-run). What a token does is audited as "<user> via token '<name>'". Errors are JSON:
{"message": what is wrong and how to fix it, "field": the field, or "" when none, and for a
refused plan "problems": [{"field", "line", "column", "message"}]}.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Max
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from orchestration.api import tokens
from orchestration.engine.scheduler import cancel_run, rerun, start_run
from orchestration.models import Plan, Run, RunState, TaskChange, TaskRun
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.exporter import spec_to_yaml
from orchestration.plans.inputs import InputsRefused
from orchestration.plans.loader import MAX_PLAN_BYTES
from orchestration.plans.repositories import RepositoryRefused
from orchestration.plans.store import NameTaken, import_text
from orchestration.review import export
from orchestration.roles import AUTHOR, OPERATOR, VIEWER
from orchestration.workers.registry import UnknownWorker

OUTPUT_PAGE = 256 * 1024  # characters of a task's output one request returns at most


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>`: the request acts as the token's owner (request.user),
    and request.api_token is the token (for the audit trail)."""

    def authenticate(self, request: HttpRequest, token: str):
        found = tokens.authenticate(token)
        if found is None:
            return None
        request.user, request.api_token = found.user, found
        return found


api = NinjaAPI(title="Magic Box API", version="1", auth=TokenAuth(), urls_namespace="api",
               description="Plans, runs, outputs and diffs. Authenticate with a personal token from /account/tokens/ "
                           "(Authorize, then paste the token itself, `mbx_…`: the page adds `Bearer`). Every operation "
                           "answers 401 without a valid token, with a JSON `{\"message\", \"field\"}` like every error.")


class Problem(Schema):
    field: str
    line: int
    column: int
    message: str


class Error(Schema):
    message: str
    field: str = ""
    problems: list[Problem] = []


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return api.create_response(request, {"message": tokens.UNAUTHENTICATED, "field": ""}, status=401)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return api.create_response(request, {"message": str(exc), "field": getattr(exc, "field", "")}, status=exc.status_code)


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    loc = [str(part) for part in first.get("loc", [])]
    while loc and loc[0] in ("body", "query", "path", "header"):  # where it was sent, not the field
        loc.pop(0)
    if len(loc) > 2 and loc[0] in ("inputs", "worker_map"):
        loc = loc[:2]  # inputs.<name>, not the name of one branch of its type (inputs.who.str)
    field = ".".join(loc)
    return api.create_response(request, {"message": f"{field or 'the request'}: {first.get('msg', 'invalid')}", "field": field},
                               status=422)


def _refuse(status: int, message: str, field: str = "") -> HttpError:
    error = HttpError(status, message)
    error.field = field
    return error


def _require(request: HttpRequest, permission: str, what: str) -> None:
    if not request.user.has_perm(permission):
        role = {VIEWER: "Viewer", AUTHOR: "Author", OPERATOR: "Operator"}[permission]
        raise _refuse(403, f"{request.user.get_username()} may not {what}: that needs the {role} role (ask an administrator).")


def _via(request: HttpRequest) -> str:
    return f"token '{request.api_token.name}'"


# -- plans ------------------------------------------------------------------------------------

class PlanOut(Schema):
    id: int
    name: str
    description: str
    revision: int
    tasks: int
    updated_at: str


class PlanDetail(PlanOut):
    spec: dict[str, Any]


class PlanIn(Schema):
    text: str
    source: str = "api.yaml"


def _plan_out(plan: Plan) -> dict:
    revision = plan.latest_revision
    return {"id": plan.pk, "name": plan.name, "description": plan.description, "revision": revision.number,
            "tasks": len(revision.spec.tasks), "updated_at": plan.updated_at.isoformat()}


@api.get("/plans", response=list[PlanOut], tags=["plans"])
def list_plans(request):
    """Every plan, by name, with its latest revision number and task count."""
    _require(request, VIEWER, "read plans")
    return [_plan_out(plan) for plan in Plan.objects.annotate(latest=Max("revisions__number")).filter(latest__isnull=False)]


@api.get("/plans/{plan_id}", response={200: PlanDetail, 404: Error}, tags=["plans"])
def get_plan(request, plan_id: int):
    """A plan and its latest revision's validated spec (the typed plan's stored form)."""
    _require(request, VIEWER, "read plans")
    plan = Plan.objects.filter(pk=plan_id).first()
    if plan is None:
        raise _refuse(404, f"no plan {plan_id}: GET /api/plans lists them", "plan_id")
    return {**_plan_out(plan), "spec": plan.latest_revision.spec.to_dict()}


@api.post("/plans", response={201: PlanDetail, 200: PlanDetail, 400: Error, 409: Error}, tags=["plans"])
def import_plan(request, body: PlanIn):
    """Import a plan (YAML or JSON text, in any form the importer accepts); 201 with the new
    revision, 200 when it is unchanged, 400 listing every problem with its line and field."""
    _require(request, AUTHOR, "import plans")
    if len(body.text.encode("utf-8", "replace")) > MAX_PLAN_BYTES:
        raise _refuse(400, f"the plan is larger than {MAX_PLAN_BYTES // 1024} KiB", "text")
    try:
        revision, created = import_text(body.text, body.source, user=request.user, via=_via(request))
    except PlanInvalid as error:
        return Status(400, {"message": f"the plan is not valid: {len(error.problems)} problem(s), each with its line and field",
                     "field": "text", "problems": [{"field": p.field, "line": p.line, "column": p.column, "message": p.message}
                                                   for p in error.problems]})
    except NameTaken as error:
        raise _refuse(409, str(error), "text") from None
    return Status(201 if created else 200, {**_plan_out(revision.plan), "spec": revision.spec.to_dict()})


@api.get("/plans/{plan_id}/export", tags=["plans"], response={200: str, 404: Error})
def export_plan(request, plan_id: int):
    """The plan's latest revision as YAML that imports back to it."""
    _require(request, VIEWER, "read plans")
    plan = Plan.objects.filter(pk=plan_id).first()
    if plan is None:
        raise _refuse(404, f"no plan {plan_id}", "plan_id")
    schema_url = request.build_absolute_uri("/schema/plan.json")  # as the browser's export: editors can fetch it
    return HttpResponse(spec_to_yaml(plan.latest_revision.spec, schema_url), content_type="application/yaml; charset=utf-8")


# -- runs -------------------------------------------------------------------------------------

class StartIn(Schema):
    worker_map: dict[str, str] = {}
    inputs: dict[str, str | int | float | bool] = {}


class RerunIn(Schema):
    task: str | None = None


@api.post("/plans/{plan_id}/runs", response={201: dict, 400: Error, 404: Error}, tags=["runs"])
def start(request, plan_id: int, body: StartIn | None = None):
    """Start a run of the plan's latest revision with its `inputs` ({name: value}; a required
    one missing is refused, naming it) and a worker_map ({"gemini": "claude"} runs its gemini
    tasks with claude); no body at all is {}. 201 with the run as GET /api/runs/{id} shows it."""
    _require(request, OPERATOR, "start runs")
    body = body or StartIn()
    plan = Plan.objects.filter(pk=plan_id).first()
    if plan is None:
        raise _refuse(404, f"no plan {plan_id}", "plan_id")
    try:
        run = start_run(plan, request.user, body.worker_map, via=_via(request), inputs=body.inputs)
    except UnknownWorker as error:
        raise _refuse(400, str(error), "worker_map") from None
    except InputsRefused as error:
        raise _refuse(400, str(error), error.problems[0][0]) from None
    except RepositoryRefused as error:
        raise _refuse(400, str(error), "") from None
    return Status(201, export.summary(Run.objects.select_related("plan", "revision", "started_by").get(pk=run.pk)))


class RunOut(Schema):
    id: int
    plan: str
    plan_id: int
    state: str
    reason: str
    started_by: str | None
    created_at: str
    finished_at: str | None
    rerun_of: int | None


RUNS_PAGE = 100  # runs listed at most in one answer


@api.get("/runs", response={200: list[RunOut], 422: Error}, tags=["runs"])
def list_runs(request, plan: int | None = None, state: str = "", before: int | None = None, limit: int = 50):
    """Runs, newest first: of one plan (`plan`, its id) and/or in one state, `limit` at most
    (1 to 100); the next page is the runs `before` the last id listed."""
    _require(request, VIEWER, "read runs")
    if state and state not in RunState.values:
        raise _refuse(422, f"no run state {state!r}: the states are {', '.join(RunState.values)}", "state")
    if not 1 <= limit <= RUNS_PAGE:
        raise _refuse(422, f"limit must be from 1 to {RUNS_PAGE}", "limit")
    runs = Run.objects.select_related("plan", "started_by").order_by("-pk")
    if plan is not None:
        runs = runs.filter(plan_id=plan) if 0 < plan < 2**63 else runs.none()
    if state:
        runs = runs.filter(state=state)
    if before is not None:
        runs = runs.filter(pk__lt=min(max(before, 0), 2**63 - 1))
    return [{"id": r.pk, "plan": r.plan.name, "plan_id": r.plan_id, "state": r.state, "reason": r.state_reason,
             "started_by": r.started_by.get_username() if r.started_by else None, "created_at": r.created_at.isoformat(),
             "finished_at": r.finished_at.isoformat() if r.finished_at else None, "rerun_of": r.rerun_of_id} for r in runs[:limit]]


def _run(run_id: int) -> Run:
    run = Run.objects.select_related("plan", "revision", "started_by").filter(pk=run_id).first()
    if run is None:
        raise _refuse(404, f"no run {run_id}", "run_id")
    return run


@api.get("/runs/{run_id}", response={200: dict, 404: Error}, tags=["runs"])
def get_run(request, run_id: int):
    """The run: its state and reason, each task's state, result, error, cost, CLI version and
    model, its checks, collisions and integration (the same data as the run's summary.json)."""
    _require(request, VIEWER, "read runs")
    return export.summary(_run(run_id))


@api.post("/runs/{run_id}/cancel", response={200: dict, 404: Error, 409: Error}, tags=["runs"])
def cancel(request, run_id: int):
    """Cancel every unfinished task of the run, then the run. 409 when it had ended."""
    _require(request, OPERATOR, "cancel runs")
    run = _run(run_id)
    if not cancel_run(run.pk, f"cancelled by {request.user.get_username()} via {_via(request)}", request.user, via=_via(request)):
        raise _refuse(409, f"run {run.pk} had already ended ({run.state})")
    return export.summary(_run(run_id))


@api.post("/runs/{run_id}/rerun", response={201: dict, 400: Error, 404: Error}, tags=["runs"])
def rerun_run(request, run_id: int, body: RerunIn | None = None):
    """A new run redoing the failed and skipped tasks and what waits for them (or, with `task`,
    that task and what waits for it), keeping the rest. 400 while the run has not ended."""
    _require(request, OPERATOR, "re-run runs")
    body = body or RerunIn()
    try:
        new = rerun(_run(run_id), request.user, body.task, via=_via(request))
    except ValueError as error:
        raise _refuse(400, str(error), "task" if body.task else "") from None
    return Status(201, export.summary(_run(new.pk)))


def _task_run(run_id: int, task_id: str) -> TaskRun:
    task_run = _run(run_id).task_runs.filter(task_id=task_id).first()  # an id no run can have is "no run", as elsewhere
    if task_run is None:
        raise _refuse(404, f"run {run_id} has no task {task_id!r}", "task_id")
    return task_run


class OutputOut(Schema):
    task: str
    text: str
    after: int
    next: int
    more: bool
    bytes: int


@api.get("/runs/{run_id}/tasks/{task_id}/output", response={200: OutputOut, 404: Error}, tags=["runs"])
def task_output(request, run_id: int, task_id: str, after: int = 0, tail: int = 0):
    """A task's stored output, in pages: the chunks after seq `after` (0: from the start) up to
    OUTPUT_PAGE characters, with `next` (the seq to ask after) and `more`; or, with `tail`, its
    last `tail` characters (at most OUTPUT_PAGE), the end of what follows chunk `after`. 422 for
    a negative `after` or `tail`, or both given."""
    _require(request, VIEWER, "read runs")
    for name, value in (("after", after), ("tail", tail)):
        if value < 0:
            raise _refuse(422, f"{name} must be 0 or more", name)
    if tail and after:
        raise _refuse(422, "give either after (a page after that chunk) or tail (the last characters), not both", "tail")
    task_run = _task_run(run_id, task_id)
    chunks = task_run.output_chunks.order_by("seq")
    if tail > 0:
        tail = min(tail, OUTPUT_PAGE)
        pieces, size, first = [], 0, 1
        for seq, text in chunks.order_by("-seq").values_list("seq", "text").iterator(chunk_size=100):
            pieces.append(text)
            size += len(text)
            first = seq
            if size >= tail:
                break
        text = "".join(reversed(pieces))[-tail:]
        return {"task": task_id, "text": text, "after": first - 1 if pieces else task_run.output_seq, "next": task_run.output_seq,
                "more": False, "bytes": task_run.output_bytes}
    pieces, size, last = [], 0, after
    rows = chunks.filter(seq__gt=after).values_list("seq", "text").iterator(chunk_size=100)
    more = False
    for seq, text in rows:
        if pieces and size + len(text) > OUTPUT_PAGE:
            more = True
            break
        pieces.append(text)
        size += len(text)
        last = seq
    return {"task": task_id, "text": "".join(pieces), "after": after, "next": last, "more": more, "bytes": task_run.output_bytes}


@api.get("/runs/{run_id}/tasks/{task_id}/diff", response={200: str, 404: Error}, tags=["runs"])
def task_diff(request, run_id: int, task_id: str):
    """The code the task changed, as `git diff` text (404 when it changed no repository)."""
    _require(request, VIEWER, "read runs")
    change = TaskChange.objects.filter(task_run=_task_run(run_id, task_id)).first()
    if change is None:
        raise _refuse(404, f"task {task_id!r} of run {run_id} has no captured change (the plan has no workspace, or it changed nothing)")
    return HttpResponse(change.patch, content_type="text/x-diff; charset=utf-8")


@api.get("/runs/{run_id}/export.zip", tags=["runs"], response={200: bytes, 404: Error})
def run_zip(request, run_id: int):
    """The run's zip: summary.json, summary.md, every task's output and diff."""
    _require(request, VIEWER, "read runs")
    from wsgiref.util import FileWrapper

    run = _run(run_id)
    response = StreamingHttpResponse(FileWrapper(export.archive(run), 64 * 1024), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="magicbox-run{run.pk}.zip"'
    return response


def urls():
    """The API's URL patterns for `path("api/", …)`. Marked login_not_required: a request
    authenticates with its token (TokenAuth), not with a browser session, so the site's login
    redirect (LoginRequiredMiddleware) and role page (roles.RoleRequiredMiddleware) stay out of
    its way; the OpenAPI schema and its browsable docs hold no data."""
    from django.contrib.auth.decorators import login_not_required

    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        pattern.callback = login_not_required(_json_405(pattern.callback))
    return patterns, app_name, namespace


def _json_405(view):
    """`view`, whose "method not allowed" answer (django-ninja's, plain text) is JSON like every
    other error of the API, naming the methods it takes."""
    import functools

    from django.http import JsonResponse

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith("application/json"):
            allowed = response.get("Allow", "")
            json_response = JsonResponse({"message": f"{request.method} is not allowed here; use {allowed or 'another method'}",
                                          "field": ""}, status=405)
            if allowed:
                json_response["Allow"] = allowed
            return json_response
        return response

    return wrapped


def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /api/: a JSON 404 naming the schema (errors are JSON here too)."""
    from django.http import JsonResponse

    return JsonResponse({"message": f"no API endpoint /api/{rest}: see /api/docs (or /api/openapi.json)", "field": ""}, status=404)

