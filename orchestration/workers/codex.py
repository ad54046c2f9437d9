"""The `codex` worker: OpenAI's Codex CLI (`@openai/codex` 0.171.0).

Command (prompt on stdin, "-")::

    codex exec --json --skip-git-repo-check --ephemeral --sandbox workspace-write -C WORKDIR -

`--sandbox workspace-write` lets it write in WORKDIR (the default sandbox is read-only: writes
are refused and it still exits 0). Inside Magic Box's task sandbox (workers.sandbox) it is
`--sandbox danger-full-access` instead: codex's own bubblewrap cannot nest in ours, and ours
already keeps its writes to the attempt's directories. codex blocks forever on an open stdin pipe, so stdin always
carries the prompt and is then closed (or is /dev/null when configured args put the prompt in
argv).

Configuration lives in `$CODEX_HOME/config.toml` (CODEX_HOME = `<attempt home>/.codex`), so it
holds whatever `args` a worker is configured with: CODEX_MODEL sets `model`; CODEX_PROVIDER_BASE_URL
(codex 0.171 ignores OPENAI_BASE_URL) defines a custom Responses-API provider
`magicbox` with that base URL, OPENAI_API_KEY as its key variable, and retries off
(`request_max_retries = 0`, `stream_max_retries = 0`: the plan's `retries` retry the task).

Event format (codex 0.171.0, `exec --json`): one JSON object per stdout line, by `type`:
`thread.started` {thread_id = the session id}, `turn.started`, `item.started` /
`item.updated` / `item.completed` {item: {id, type, ...}} where item.type is `agent_message`
{text}, `reasoning` {text}, `command_execution` {command, aggregated_output, exit_code, status},
`file_change` {changes: [{path, kind: add|update|delete}], status}, `mcp_tool_call`
{server, tool}, `web_search` {query}, `todo_list` {items}, `error` {message} (a warning);
`turn.completed` {usage: {input_tokens, cached_input_tokens, output_tokens,
reasoning_output_tokens}} (no cost), `turn.failed` {error: {message}} (fatal), `error` {message}.
No event names codex's version or model (the engine asks `codex --version` and reads CODEX_MODEL).
Exit code 0 on success, 1 on API errors.
"""
from __future__ import annotations

import json
import re
from typing import Any

from orchestration.workers import sandbox
from orchestration.workers.base import Invocation, Outcome, TaskContext, WorkerAdapter
from orchestration.workers.events import (
    JsonEventParser,
    agent_argv,
    agent_env,
    api_error_detail,
    format_tokens,
    int_or_none,
    shorten,
    summarize_tool_call,
    summarize_tool_result,
    text_lines,
)

PROVIDER = "magicbox"


def default_args(ctx: TaskContext) -> list[str]:
    """codex's default arguments for one attempt (the prompt follows on stdin).

    With an output schema, codex is asked natively with `--output-schema FILE` (the file is
    written into the attempt's TMPDIR).
    """
    schema_args = []
    if ctx.output_schema:
        schema_file = ctx.tmpdir / "output-schema.json"
        schema_file.write_text(json.dumps(ctx.output_schema), encoding="utf-8")
        schema_args = ["--output-schema", str(schema_file)]
    # Inside Magic Box's task sandbox, codex's own (bubblewrap too) cannot nest: user namespaces
    # within ours may not map ids. Ours confines it already (writes only to the attempt's own
    # directories, see workers.sandbox); with MAGICBOX_SANDBOX=off, codex sandboxes itself.
    own_sandbox = "danger-full-access" if sandbox.enabled() else "workspace-write"
    return ["exec", "--json", "--skip-git-repo-check", "--ephemeral", "--sandbox", own_sandbox,
            "-C", str(ctx.workdir), *schema_args, "-"]


def config_toml(env: dict[str, str]) -> str:
    """The `$CODEX_HOME/config.toml` for an attempt's environment (model and custom provider)."""
    lines = []
    if env.get("CODEX_MODEL"):
        lines.append(f"model = {json.dumps(env['CODEX_MODEL'])}")
    base_url = env.get("CODEX_PROVIDER_BASE_URL", "").rstrip("/")
    if base_url:
        lines.append(f"model_provider = {json.dumps(PROVIDER)}")
        lines.append("")
        lines.append(f"[model_providers.{PROVIDER}]")
        lines.append(f"name = {json.dumps(PROVIDER)}")
        lines.append(f"base_url = {json.dumps(base_url)}")
        if env.get("OPENAI_API_KEY"):
            lines.append('env_key = "OPENAI_API_KEY"')
        lines.append('wire_api = "responses"')
        lines.append("supports_websockets = false")
        lines.append("request_max_retries = 0")
        lines.append("stream_max_retries = 0")
    return "\n".join(lines) + "\n"


class CodexAdapter(WorkerAdapter):
    """Runs `codex exec` in the task's workdir (see the module docstring for the command and config).

    Environment: the engine's base env (OPENAI_API_KEY, CODEX_PROVIDER_BASE_URL, CODEX_MODEL when
    passed through), the worker's configured env, then HOME, TMPDIR and CODEX_HOME inside the
    attempt's private directories. build() writes `$CODEX_HOME/config.toml`. stdout is a file
    in TMPDIR, as for every agent CLI (codex 0.171 passed a 3 MB event through a pipe whole,
    but claude and gemini cut one at 64 KiB when they exit).
    """

    MODEL_ENV = "CODEX_MODEL"
    # auth.json: a login's keys; shell_snapshots: its shell's environment, OPENAI_API_KEY included;
    # tmp: copies of its own 300 MB binary. Sessions (without --ephemeral): ~/.codex/sessions.
    HOME_DISCARD = (".codex/auth.json", ".codex/shell_snapshots", ".codex/tmp")
    HOME_TRANSCRIPTS = (".codex/sessions",)

    def build(self, ctx: TaskContext) -> Invocation:
        program = self.find_program(self.config.program or "codex")
        argv, stdin = agent_argv(program, default_args(ctx), self.config.args, ctx)
        codex_home = ctx.home / ".codex"
        env = agent_env(ctx, defaults={}, config_env=self.config.env, forced={"CODEX_HOME": str(codex_home)})
        codex_home.mkdir(parents=True, exist_ok=True)  # codex refuses a CODEX_HOME that does not exist
        (codex_home / "config.toml").write_text(config_toml(env), encoding="utf-8")
        return Invocation(argv=argv, env=env, cwd=ctx.workdir, stdin=stdin, stdout_dir=ctx.tmpdir)

    def parser(self) -> CodexEventParser:
        return CodexEventParser()


_CHANGE_VERBS = {"add": "Write", "update": "Edit", "delete": "Delete"}


class CodexEventParser(JsonEventParser):
    """Reads codex 0.171.0 `exec --json` events (see the module docstring) into log lines and an Outcome.

    Outcome: `turn.failed` means failed (its message, with the API error body decoded);
    `turn.completed` means succeeded, with the last `agent_message` as the result, whatever the
    exit code; neither means failed. Tokens are summed over turns; cost_usd stays None (codex
    reports none, and there is no price table for its models here).
    """

    CLI = "codex"
    STDERR_NOISE = (re.compile(r"^Reading (additional )?(input|prompt) from stdin"),)

    def __init__(self) -> None:
        super().__init__()
        self.session_id = ""
        self.last_message = ""
        self.completed = False
        self.failure = ""
        self.last_error = ""
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None

    def on_event(self, event: dict[str, Any]) -> list[str]:
        kind = event.get("type")
        if kind == "thread.started":
            self.session_id = str(event.get("thread_id") or "")
            return [f"codex started (thread {self.session_id})"]
        if kind in ("item.started", "item.completed"):
            item = event.get("item")
            return self._item(item, kind == "item.completed") if isinstance(item, dict) else []
        if kind == "turn.completed":
            self.completed = True
            usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
            for attr, key in (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens")):
                value = int_or_none(usage.get(key))
                if value is not None:
                    setattr(self, attr, (getattr(self, attr) or 0) + value)
            tokens = format_tokens(self.input_tokens, self.output_tokens)
            return ["codex finished the turn" + (f" ({tokens})" if tokens else "")]
        if kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            self.failure = str(message or self.last_error or "the turn failed")
            return [shorten(_readable_error(self.failure))]
        if kind == "error":
            self.last_error = str(event.get("message") or "")
            return [shorten(_readable_error(self.last_error, prefix="error: "))]
        return []

    def _item(self, item: dict[str, Any], completed: bool) -> list[str]:
        kind = item.get("type")
        if kind == "agent_message":
            if completed and isinstance(item.get("text"), str):
                self.last_message = item["text"]
                return text_lines(item["text"])
            return []
        if kind == "command_execution":
            if not completed:
                return [summarize_tool_call("shell", {"command": item.get("command", "")})]
            exit_code = item.get("exit_code")
            output = item.get("aggregated_output") or ""
            failed = exit_code not in (0, None) or item.get("status") == "failed"
            head = f"exit {exit_code}" if exit_code is not None else str(item.get("status", ""))
            return [summarize_tool_result(f"{head}: {output}" if output.strip() else head, failed)]
        if kind == "file_change":
            if not completed:
                return []
            lines = [
                f"→ {_CHANGE_VERBS.get(str(c.get('kind')), str(c.get('kind', 'Change')).title())} "
                f"{shorten(str(c.get('path', '')))}"
                for c in item.get("changes") or []
                if isinstance(c, dict)
            ]
            if item.get("status") == "failed":
                lines.append("  ← error: the patch was not applied")
            return lines
        if kind == "mcp_tool_call" and not completed:
            name = f"{item.get('server', 'mcp')}.{item.get('tool', 'tool')}"
            return [summarize_tool_call(name, item.get("arguments"))]
        if kind == "web_search" and completed:
            return [summarize_tool_call("WebSearch", {"query": item.get("query", "")})]
        if kind == "reasoning" and completed and item.get("text"):
            return [f"(thinking) {shorten(item['text'])}"]
        if kind == "todo_list" and completed:
            items = item.get("items") or []
            return [f"plan: {len(items)} steps"]
        if kind == "error" and completed:
            return [f"warning: {shorten(item.get('message'))}"]
        return []

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        common = {"session_id": self.session_id, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        if self.failure:
            return Outcome(succeeded=False, result=self.last_message, error=_readable_error(self.failure), **common)
        if self.completed:
            return Outcome(succeeded=True, result=self.last_message, **common)
        outcome = self.no_result(exit_code, stderr_tail, "a completed turn")
        if self.last_error:
            outcome.error += f" Its last error: {_readable_error(self.last_error, prefix='')}"
        outcome.result = self.last_message
        outcome.session_id = self.session_id
        return outcome


def _readable_error(message: str, prefix: str = "codex failed: ") -> str:
    """A person's version of a codex error message.

    codex passes some API error bodies through as JSON text ('{"error": {"message": ...}}'):
    those become "codex API error: <message> (<type>)"; other messages keep their text after
    `prefix`.
    """
    status, text = api_error_detail(message)
    if text != message:
        return f"codex API error{f' {status}' if status else ''}: {text}"
    # Errors codex 0.171 reports without the provider's message: a 429 (as its retry limit, even
    # with retries off) and a 500 (its fixed InternalServerError text).
    last_status = re.search(r"last status: (\d{3})\b\s*(.*)", message)
    if last_status:
        return f"codex API error {last_status[1]}: {last_status[2].strip() or 'no message'} (codex gives no more)"
    if message.strip().startswith("We’re currently experiencing high demand"):
        return f"codex API error 500: {message.strip()} (codex's words for any 500; it gives no more)"
    return prefix + message.strip()
