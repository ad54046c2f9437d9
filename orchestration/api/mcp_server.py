"""Magic Box as an MCP server (the official MCP Python SDK): an orchestrating agent validates a
plan, starts it with inputs, follows it, reads results and diffs, and cancels it.

Two transports, one set of tools:
- stdio: `manage.py mcp --user <name>` (what `claude mcp add`, `codex mcp add` and gemini's
  `mcpServers` start), acting as that user (the command line is trusted, as runplan is);
- streamable HTTP at /mcp/ (magicbox_web/asgi.py), with a personal API token
  (`Authorization: Bearer mbx_…`, orchestration.api.tokens), acting as its owner.

Each tool checks the acting user's role as the browser does (orchestration.roles).
"""
from __future__ import annotations

import contextvars
import json
from typing import Any

from asgiref.sync import sync_to_async
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from orchestration.api import tokens
from orchestration.engine.scheduler import cancel_run as cancel, start_run
from orchestration.models import Plan, Run, TaskChange
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.inputs import InputsRefused
from orchestration.plans.loader import load_plan
from orchestration.plans.repositories import RepositoryRefused
from orchestration.plans.store import import_text
from orchestration.review import export
from orchestration.roles import AUTHOR, OPERATOR, VIEWER
from orchestration.workers.registry import UnknownWorker

RESULT_SHOWN = 20_000  # characters of each task's result a tool returns
PATCH_SHOWN = 50_000  # characters of each task's diff

acting = contextvars.ContextVar("magicbox_mcp_user", default=None)  # the user the tools act as
acting_via = contextvars.ContextVar("magicbox_mcp_via", default="MCP")

server = MCPServer(name="magicbox", instructions=(
    "Magic Box runs plans: tasks given to coding agents (claude, codex, gemini) or shell commands, joined by "
    "depends_on, in parallel. Validate a plan first (validate_plan), start it (start_plan), follow it (run_status) "
    "until it ends, then read its results and diffs (run_results)."))


class Refused(Exception):
    """The acting user may not do this; the message says why."""


def _user(permission: str, what: str):
    """The acting user, read again for each call (a role removed, or the user deactivated, while
    a stdio server runs takes effect at once). Raises Refused without the permission."""
    from django.contrib.auth import get_user_model

    known = acting.get()
    user = get_user_model().objects.filter(pk=known.pk, is_active=True).first() if known is not None else None
    if user is None:
        raise Refused("no active user: start the server with `manage.py mcp --user <name>`, or call /mcp/ with a token")
    if not user.has_perm(permission):
        role = {VIEWER: "Viewer", AUTHOR: "Author", OPERATOR: "Operator"}[permission]
        raise Refused(f"{user.get_username()} may not {what}: that needs the {role} role")
    return user


def _validate(text: str) -> dict[str, Any]:
    _user(VIEWER, "use Magic Box")
    try:
        spec = load_plan(text, "plan.yaml")
    except PlanInvalid as error:
        return {"valid": False, "problems": [{"line": p.line, "column": p.column, "field": p.field, "message": p.message}
                                             for p in error.problems]}
    return {"valid": True, "name": spec.name, "tasks": spec.ids, "inputs": list(spec.inputs),
            "warnings": [n.message for n in spec.notices]}


def _start(text: str, plan: str, inputs: dict[str, str]) -> dict[str, Any]:
    user = _user(OPERATOR, "start runs")
    via = acting_via.get()
    if bool(text) == bool(plan):
        raise Refused("give either `text` (a plan to import and start) or `plan` (a stored plan's name), not both or neither")
    if text:
        _user(AUTHOR, "import plans")
        try:
            revision, _ = import_text(text, "mcp.yaml", user=user, via=via)
        except PlanInvalid as error:
            return {"started": False, "problems": [{"line": p.line, "field": p.field, "message": p.message} for p in error.problems]}
        stored = revision.plan
    else:
        stored = Plan.objects.filter(name=plan).first() or (Plan.objects.filter(pk=int(plan)).first() if plan.isdecimal() else None)
        if stored is None:
            return {"started": False, "problems": [{"field": "plan", "message": f"no plan named {plan!r}: give `text` or a stored plan's name"}]}
    try:
        run = start_run(stored, user, inputs=inputs, via=via)
    except InputsRefused as error:
        return {"started": False, "problems": [{"field": field, "message": message} for field, message in error.problems]}
    except (UnknownWorker, RepositoryRefused) as error:
        return {"started": False, "problems": [{"field": "", "message": str(error)}]}
    return {"started": True, "run_id": run.pk, "plan": stored.name, "follow": "call run_status with this run_id until its state ends"}


def _status(run_id: int) -> dict[str, Any]:
    _user(VIEWER, "read runs")
    run = Run.objects.select_related("plan", "revision", "started_by").filter(pk=run_id).first()
    if run is None:
        raise Refused(f"no run {run_id}")
    data = export.summary(run)
    return {"run": data["run"], "done": run.is_finished,
            "tasks": [{k: t[k] for k in ("id", "worker", "state", "reason", "duration_seconds", "cost_usd")} for t in data["tasks"]],
            "checks": data["checks"]}


def _results(run_id: int) -> dict[str, Any]:
    _user(VIEWER, "read runs")
    run = Run.objects.select_related("plan", "revision", "started_by").filter(pk=run_id).first()
    if run is None:
        raise Refused(f"no run {run_id}")
    patches = {c.task_run.task_id: c.patch for c in TaskChange.objects.filter(task_run__run=run).select_related("task_run")}
    data = export.summary(run)
    return {"run": data["run"], "tasks": [
        {"id": t["id"], "state": t["state"], "result": (t["result"] or "")[-RESULT_SHOWN:], "error": t["error"][-2000:],
         "diff": patches.get(t["id"], "")[:PATCH_SHOWN]} for t in data["tasks"]]}


def _cancel(run_id: int) -> dict[str, Any]:
    user = _user(OPERATOR, "cancel runs")
    if not Run.objects.filter(pk=run_id).exists():
        raise Refused(f"no run {run_id}")
    ended = cancel(run_id, f"cancelled by {user.get_username()} via {acting_via.get()}", user, via=acting_via.get())
    return {"cancelled": ended, "run_id": run_id}


def _call(function, *args):
    """Run a tool's database work in a thread (Django's ORM is synchronous), carrying the acting
    user; a refusal becomes a tool error saying why."""
    def work():
        try:
            return function(*args)
        except Refused as error:  # an MCP tool error (isError), which the agent reads as a failure
            raise ToolError(str(error)) from None

    return sync_to_async(work, thread_sensitive=False)()


@server.tool(description="Check a plan (YAML or JSON text in any form Magic Box imports) without storing it: every problem "
                         "with its line and field, or its tasks and inputs.")
async def validate_plan(text: str) -> dict[str, Any]:
    return await _call(_validate, text)


@server.tool(description="Start a run: of `text` (a plan, imported first) or of the stored plan named `plan`, with `inputs` "
                         "for its declared inputs. Returns the run_id to follow.")
async def start_plan(text: str = "", plan: str = "", inputs: dict[str, str] | None = None) -> dict[str, Any]:
    return await _call(_start, text, plan, dict(inputs or {}))


@server.tool(description="A run's progress: its state, each task's state, duration and cost, its checks; done once it ended.")
async def run_status(run_id: int) -> dict[str, Any]:
    return await _call(_status, run_id)


@server.tool(description="A run's results: each task's result (its end), error and code diff.")
async def run_results(run_id: int) -> dict[str, Any]:
    return await _call(_results, run_id)


@server.tool(description="Cancel a run: every unfinished task, then the run.")
async def cancel_run(run_id: int) -> dict[str, Any]:
    return await _call(_cancel, run_id)


class TokenGate:
    """ASGI wrapper of the streamable-HTTP app: refuses (401, JSON) a request without a valid
    personal token, else runs it acting as the token's owner."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        secret = header[7:].strip() if header.lower().startswith("bearer ") else ""
        token = await sync_to_async(tokens.authenticate)(secret) if secret else None
        if token is None:
            body = json.dumps({"message": tokens.UNAUTHENTICATED, "field": ""}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
            return await send({"type": "http.response.body", "body": body})
        user_token, via_token = acting.set(token.user), acting_via.set(f"token '{token.name}'")
        try:
            return await self.app(scope, receive, send)
        finally:
            acting.reset(user_token)
            acting_via.reset(via_token)


class StreamableHttp:
    """The streamable-HTTP transport at /mcp/ as a plain ASGI app (magicbox_web/asgi.py routes it
    here, behind TokenGate). The SDK's session manager runs for the life of the process: it is
    started by the first request (the ASGI server sends no lifespan events), in stateless JSON
    mode, checking the Host header against ALLOWED_HOSTS (DNS rebinding)."""

    PATH = "/mcp/"

    def __init__(self) -> None:
        self.app = None
        self._lock = None
        self._keeper = None

    async def _start(self) -> None:
        import asyncio

        from django.conf import settings
        from mcp.server.transport_security import TransportSecuritySettings

        hosts = [h for h in settings.ALLOWED_HOSTS if h != "*"]
        origins = [f"{scheme}://{h}{port}" for h in hosts for scheme in ("http", "https") for port in ("", ":*")]
        security = TransportSecuritySettings(enable_dns_rebinding_protection="*" not in settings.ALLOWED_HOSTS,
                                             allowed_hosts=[*hosts, *(f"{h}:*" for h in hosts)], allowed_origins=origins)
        app = server.streamable_http_app(streamable_http_path=self.PATH, stateless_http=True, json_response=True,
                                         transport_security=security)
        running = asyncio.Event()

        async def keep() -> None:
            async with server.session_manager.run():
                running.set()
                await asyncio.Event().wait()  # as long as the process serves

        self._keeper = asyncio.get_running_loop().create_task(keep())
        await running.wait()
        self.app = app

    async def __call__(self, scope, receive, send):
        import asyncio

        if self.app is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self.app is None:
                    await self._start()
        await self.app(scope, receive, send)


http_app = TokenGate(StreamableHttp())
