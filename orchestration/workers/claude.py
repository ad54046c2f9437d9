"""The `claude` worker: Anthropic's Claude Code CLI (`@anthropic-ai/claude-code` 2.1.197).

Command (prompt on stdin)::

    claude -p --output-format stream-json --verbose --include-partial-messages --permission-mode acceptEdits

Event format (claude 2.1.197, `--output-format stream-json --verbose`): one JSON object per
stdout line, by `type`:

- `system`, subtype `init`: `session_id`, `model` (as configured, e.g. "claude-opus-4-8[1m]"),
  `claude_code_version`, `cwd`, `tools`; subtype `api_retry`:
  `attempt`, `max_retries`, `retry_delay_ms`, `error_status`, `error`.
- `assistant`: `message.model` (the model the API answered with; "<synthetic>" for a message
  claude made up itself), `message.content[]` blocks: `text` {text}, `tool_use` {name, input},
  `thinking`; an API failure arrives as a synthetic assistant message ("API Error: 500 ...").
- `user`: `message.content[]` `tool_result` blocks {content, is_error}.
- `stream_event` (with `--include-partial-messages`): `event` is the API's streaming event;
  `content_block_delta` with `delta.type == "text_delta"` carries the next piece of text of the
  message being written (the whole message follows as an `assistant` event).
- `result`: `subtype` ("success", "error_max_turns", "error_during_execution", ...),
  `is_error`, `result` (final text), `api_error_status`, `total_cost_usd`, `usage`
  {input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens},
  `num_turns`, `duration_ms`, `session_id`. An API error still has `subtype: "success"` with
  `is_error: true`, so `is_error` decides.

Exit code 0 on success, 1 on API errors. Lines can be megabytes long.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from orchestration.workers.base import Invocation, Outcome, TaskContext, WorkerAdapter
from orchestration.workers.events import (
    JsonEventParser,
    agent_argv,
    agent_env,
    format_tokens,
    int_or_none,
    shorten,
    summarize_tool_call,
    summarize_tool_result,
    text_lines,
)

DEFAULT_ARGS = ["-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
                "--permission-mode", "acceptEdits"]


class ClaudeAdapter(WorkerAdapter):
    """Runs `claude -p` in the task's workdir with the prompt on stdin.

    Environment: the engine's base env (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, ANTHROPIC_MODEL
    ... when passed through), CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1,
    CLAUDE_CODE_MAX_RETRIES=0 (claude would otherwise retry an API error for about 3 minutes
    whenever the provider invites it; the plan's `retries` retry the task, visibly), the
    worker's configured env, then HOME and TMPDIR set to the attempt's private directories
    (claude keeps its config and session transcript under HOME). CLAUDECODE /
    CLAUDE_CODE_ENTRYPOINT are removed. `--permission-mode acceptEdits` lets it write files
    without asking. stdout is a file in TMPDIR, not a pipe: claude cuts a large event written
    to a pipe at 64 KiB when it exits (anthropics/claude-code#77112).
    """

    MODEL_ENV = "ANTHROPIC_MODEL"
    # An OAuth login's tokens; transcripts: ~/.claude/projects/<workdir as a name>/<session>.jsonl.
    HOME_DISCARD = (".claude/.credentials.json",)
    HOME_TRANSCRIPTS = (".claude/projects",)

    def build(self, ctx: TaskContext) -> Invocation:
        program = self.find_program(self.config.program or "claude")
        defaults = DEFAULT_ARGS + (["--json-schema", json.dumps(ctx.output_schema)] if ctx.output_schema else [])
        if ctx.resume_session:
            defaults = [*defaults, "--resume", ctx.resume_session]
        argv, stdin = agent_argv(program, defaults, self.config.args, ctx)
        env = agent_env(
            ctx,
            defaults={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"},
            config_env=self.config.env,
            forced={},
        )
        return Invocation(argv=argv, env=env, cwd=ctx.workdir, stdin=stdin, stdout_dir=ctx.tmpdir)

    def resume(self, sessions: Path, session_id: str, ctx: TaskContext) -> bool:
        """claude finds a session in ~/.claude/projects/<its working directory with every
        character but letters and digits made '-'>/<session>.jsonl (claude 2.1.197): the earlier
        attempt's transcript is copied there under this attempt's working directory's name."""
        if not re.fullmatch(r"[0-9a-fA-F-]{8,64}", session_id or ""):
            return False
        found = next(iter(sorted((sessions / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))), None)
        if found is None:
            return False
        target = ctx.home / ".claude" / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(ctx.workdir)) / found.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found, target)
        return True

    def parser(self) -> ClaudeEventParser:
        return ClaudeEventParser()


class ClaudeEventParser(JsonEventParser):
    """Reads claude 2.1.197 `stream-json` events (see the module docstring) into log lines and an Outcome.

    Outcome: decided by the `result` event (`is_error` first, then `subtype`), whatever the
    exit code; without a `result` event the attempt failed. input_tokens counts fresh, cache-write
    and cache-read input tokens together; cost_usd is claude's `total_cost_usd`. cli_version is
    the init event's `claude_code_version`; model is the one the API answered with (the init
    event's configured model until an answer came).
    """

    CLI = "claude"

    def __init__(self) -> None:
        super().__init__()
        self.cwd: str | None = None
        self.session_id = ""
        self.model = ""
        self.cli_version = ""
        self.answered_by = ""  # the model of the API's last real answer
        self.result_event: dict[str, Any] | None = None
        self.last_text = ""

    def on_event(self, event: dict[str, Any]) -> list[str]:
        kind = event.get("type")
        if isinstance(event.get("session_id"), str) and event["session_id"]:
            self.session_id = event["session_id"]
        if kind == "system":
            return self._system(event)
        if kind == "stream_event":
            self._stream(event.get("event"))
            return []
        if kind == "assistant":
            self._end_partial()  # the whole message: shown as lines
            return self._assistant(event)
        if kind == "user":
            return self._user(event)
        if kind == "result":
            self.result_event = event
            return [self._result_line(event)]
        return []

    def _system(self, event: dict[str, Any]) -> list[str]:
        subtype = event.get("subtype")
        if subtype == "init":
            self.cwd = event.get("cwd") or None
            self.model = str(event.get("model") or "")
            self.cli_version = str(event.get("claude_code_version") or "")
            return [f"claude started (model {self.model or 'default'}, session {self.session_id})"]
        if subtype == "api_retry":
            status = event.get("error_status")
            delay = (int_or_none(event.get("retry_delay_ms")) or 0) / 1000
            return [
                f"API error{f' {status}' if status else ''}: {shorten(event.get('error'))}; retrying "
                f"({event.get('attempt')}/{event.get('max_retries')}) in {delay:.0f} s"
            ]
        return []

    def _assistant(self, event: dict[str, Any]) -> list[str]:
        message = event.get("message") or {}
        model = message.get("model")
        if isinstance(model, str) and model and not model.startswith("<"):  # not claude's own "<synthetic>"
            self.answered_by = model
        lines: list[str] = []
        texts: list[str] = []
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and block.get("text"):
                texts.append(block["text"])
                lines += text_lines(block["text"])
            elif block.get("type") == "tool_use":
                lines.append(summarize_tool_call(str(block.get("name", "tool")), block.get("input"), self.cwd))
        if texts:
            self.last_text = "\n".join(texts)
        return lines

    def _stream(self, event: Any) -> None:
        """A piece of the message being written (partial_text), from a `stream_event`."""
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start":
            self._end_partial()
        delta = event.get("delta") if event.get("type") == "content_block_delta" else None
        if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            self._grow_partial(delta["text"])

    def _user(self, event: dict[str, Any]) -> list[str]:
        content = (event.get("message") or {}).get("content")
        if not isinstance(content, list):
            return []
        return [
            summarize_tool_result(block.get("content"), bool(block.get("is_error")))
            for block in content
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]

    def _result_line(self, event: dict[str, Any]) -> str:
        outcome = self._outcome(event)
        turns = int_or_none(event.get("num_turns"))
        facts = [f"{turns} turn{'s' if turns != 1 else ''}" if turns else ""]
        if outcome.cost_usd:
            facts.append(f"${outcome.cost_usd:.4f}")
        if outcome.input_tokens or outcome.output_tokens:
            facts.append(format_tokens(outcome.input_tokens, outcome.output_tokens))
        facts_text = ", ".join(f for f in facts if f)
        head = "claude finished" if outcome.succeeded else shorten(outcome.error)
        return head + (f" ({facts_text})" if facts_text else "")

    def _outcome(self, event: dict[str, Any]) -> Outcome:
        usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
        input_keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        input_parts = [int_or_none(usage.get(k)) for k in input_keys]
        input_tokens = sum(p for p in input_parts if p is not None) if any(p is not None for p in input_parts) else None
        cost = event.get("total_cost_usd")
        result_text = event.get("result") if isinstance(event.get("result"), str) else ""
        if event.get("structured_output") is not None:  # with --json-schema: the StructuredOutput tool's input
            result_text = json.dumps(event["structured_output"])
        outcome = Outcome(
            succeeded=not event.get("is_error") and event.get("subtype") == "success",
            result=result_text or "",
            cost_usd=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
            input_tokens=input_tokens,
            output_tokens=int_or_none(usage.get("output_tokens")),
            session_id=str(event.get("session_id") or self.session_id),
            cli_version=self.cli_version,
            model=self.answered_by or self.model,
        )
        if not outcome.succeeded:
            outcome.error = self._error_message(event, result_text)
        return outcome

    @staticmethod
    def _error_message(event: dict[str, Any], result_text: str) -> str:
        status = event.get("api_error_status")
        subtype = event.get("subtype")
        errors = event.get("errors") if isinstance(event.get("errors"), list) else []
        detail = "; ".join(shorten(e, 500) for e in errors) or shorten(result_text, 1000)
        if status:
            text = detail
            if text.startswith("API Error:"):
                text = text[len("API Error:"):].strip()
            if text.startswith(str(status)):
                text = text[len(str(status)):].strip()
            return f"claude API error {status}: {text}" if text else f"claude API error {status}"
        if subtype == "error_max_turns":
            return "claude stopped after reaching its maximum number of turns" + (f": {detail}" if detail else "")
        if subtype == "error_during_execution":
            return "claude failed while running" + (f": {detail}" if detail else "")
        if subtype and subtype != "success":
            return f"claude ended with {subtype}" + (f": {detail}" if detail else "")
        return f"claude reported an error: {detail}" if detail else "claude reported an error without a message"

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        if self.result_event is None:
            outcome = self.no_result(exit_code, stderr_tail, "a result event")
            outcome.session_id = self.session_id
            outcome.result = self.last_text
            outcome.cli_version, outcome.model = self.cli_version, self.answered_by or self.model
            return outcome
        return self._outcome(self.result_event)
