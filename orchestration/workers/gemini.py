"""The `gemini` worker: Google's Gemini CLI (`@google/gemini-cli` 0.61.0).

Command (prompt on stdin; with stdin not a terminal gemini runs non-interactively)::

    gemini --output-format stream-json --approval-mode auto_edit

`--approval-mode auto_edit` offers and auto-approves the file-writing tools (in the default
mode the write tool is not offered at all and gemini still exits 0).

Settings: `$HOME/.gemini/settings.json` (HOME = the attempt's private home) selects API-key auth
(without it a custom GOOGLE_GEMINI_BASE_URL exits 41), turns retries off (`maxAttempts: 1`;
otherwise a 500 is retried for minutes; the plan's `retries` retry the task) and usage
statistics off. GEMINI_CLI_TRUST_WORKSPACE=true trusts the workdir (otherwise exit 55).
GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL and GEMINI_MODEL are read by gemini itself.

Event format (gemini 0.61.0, `--output-format stream-json`): one JSON object per stdout line,
by `type`: `init` {session_id, model} (the configured model: "auto" lets gemini's router choose); `message` {role: user|assistant, content, delta}
(assistant text arrives in chunks with `delta: true`: concatenate them); `tool_use`
{tool_name, tool_id, parameters}; `tool_result` {tool_id, status: success|error, output,
error: {type, message}}; `error` {severity, message} (a warning); `result` {status:
success|error, error: {type, message}, stats: {input_tokens, output_tokens, total_tokens,
duration_ms, tool_calls, models: {model name: {total_tokens, ...}}} (no cost; `models` names
every model called, the main one and the flash-lite model gemini uses for routing and other
chores). No event names gemini's version (the engine asks `gemini --version`).
Exit codes: 0 success; on API errors the HTTP status mod 256 (500 -> 244, 400 -> 144);
41 auth; 55 untrusted folder. stderr always carries harmless noise.
"""
from __future__ import annotations

import json
import re
from typing import Any

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

DEFAULT_ARGS = ["--output-format", "stream-json", "--approval-mode", "auto_edit"]

SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "general": {"maxAttempts": 1},
    "privacy": {"usageStatisticsEnabled": False},
}

# What some exit codes mean when gemini ends without a result event.
EXIT_CODES = {
    41: "authentication failed or no usable auth method is selected (exit 41)",
    55: "the working folder is not trusted (exit 55)",
}


class GeminiAdapter(WorkerAdapter):
    """Runs `gemini` in the task's workdir with the prompt on stdin (see the module docstring).

    Environment: the engine's base env (GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL, GEMINI_MODEL when
    passed through), GEMINI_CLI_TRUST_WORKSPACE=true, the worker's configured env, then HOME and
    TMPDIR inside the attempt's private directories. build() writes `$HOME/.gemini/settings.json`.
    stdout is a file in TMPDIR, not a pipe: gemini 0.61, like claude, cuts a large event
    written to a pipe at 64 KiB when it exits (a 3 MB answer was lost 3 times out of 3).
    """

    MODEL_ENV = "GEMINI_MODEL"
    # A Google login's tokens; transcripts: ~/.gemini/tmp/<project>/chats/session-*.jsonl.
    HOME_DISCARD = (".gemini/oauth_creds.json", ".gemini/google_accounts.json")
    HOME_TRANSCRIPTS = (".gemini/tmp/*/chats",)

    def build(self, ctx: TaskContext) -> Invocation:
        program = self.find_program(self.config.program or "gemini")
        argv, stdin = agent_argv(program, DEFAULT_ARGS, self.config.args, ctx)
        env = agent_env(ctx, defaults={"GEMINI_CLI_TRUST_WORKSPACE": "true"}, config_env=self.config.env, forced={})
        settings_dir = ctx.home / ".gemini"
        settings_dir.mkdir(parents=True, exist_ok=True)
        (settings_dir / "settings.json").write_text(json.dumps(SETTINGS, indent=2) + "\n", encoding="utf-8")
        return Invocation(argv=argv, env=env, cwd=ctx.workdir, stdin=stdin, stdout_dir=ctx.tmpdir)

    def parser(self) -> GeminiEventParser:
        return GeminiEventParser()


class GeminiEventParser(JsonEventParser):
    """Reads gemini 0.61.0 `stream-json` events (see the module docstring) into log lines and an Outcome.

    Assistant text chunks are joined and shown line by line once complete. Outcome: the `result`
    event's status decides, whatever the exit code; without it the attempt failed. The result
    text is the assistant's text after its last tool call (all of its text when that is empty).
    cost_usd stays None (gemini reports none). model: see `used_model`.
    """

    CLI = "gemini"
    STDERR_NOISE = (
        re.compile(r"^Warning: 256-color support not detected"),
        re.compile(r"^Ripgrep is not available"),
        re.compile(r"^\[STARTUP\]"),
        re.compile(r"^Loaded cached credentials"),
        re.compile(r"^Data collection is disabled"),
        # The stack and trailing fields of an API error already reported in the result event.
        re.compile(r"^\s+at .+"),
        re.compile(r"^\s*status: \d+\s*$"),
        re.compile(r"^\s*[{}]\s*$"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.session_id = ""
        self.model = ""
        self.pending = ""  # assistant text not yet shown (an unfinished line)
        self.all_text: list[str] = []
        self.final_text: list[str] = []
        self.result_event: dict[str, Any] | None = None
        self.last_warning = ""
        self.stderr_status: int | None = None  # the HTTP status of the API error gemini dumped on stderr

    def on_event(self, event: dict[str, Any]) -> list[str]:
        kind = event.get("type")
        if kind == "message":
            if event.get("role") != "assistant":
                return []  # the user message is the prompt, shown elsewhere
            content = event.get("content")
            text = content if isinstance(content, str) else ""
            self.all_text.append(text)
            self.final_text.append(text)
            self.pending += text
            *done, self.pending = self.pending.split("\n")
            return text_lines("\n".join(done)) if done else []
        lines = self._flush()
        if kind == "init":
            self.session_id = str(event.get("session_id") or "")
            self.model = str(event.get("model") or "")
            lines.append(f"gemini started (model {self.model or 'default'}, session {self.session_id})")
        elif kind == "tool_use":
            self.final_text = []
            lines.append(summarize_tool_call(str(event.get("tool_name", "tool")), event.get("parameters")))
        elif kind == "tool_result":
            self.final_text = []
            error = event.get("error")
            if event.get("status") == "error" or error:
                message = error.get("message") if isinstance(error, dict) else error
                lines.append(summarize_tool_result(message or event.get("output"), is_error=True))
            else:
                lines.append(summarize_tool_result(event.get("output") or "ok"))
        elif kind == "error":
            self.last_warning = str(event.get("message") or "")
            lines.append(f"{event.get('severity', 'error')}: {shorten(self.last_warning)}")
        elif kind == "result":
            self.result_event = event
            outcome = self._outcome(event)
            tokens = format_tokens(outcome.input_tokens, outcome.output_tokens)
            if outcome.succeeded:
                facts = ", ".join(f for f in (f"model {outcome.model}" if outcome.model else "", tokens) if f)
                lines.append("gemini finished" + (f" ({facts})" if facts else ""))
            else:
                lines.append(shorten(outcome.error))
        return lines

    def feed_stderr(self, line: str) -> list[str]:
        status = _STDERR_STATUS.match(line)
        if status:
            self.stderr_status = int(status[1])
        return super().feed_stderr(line)

    def end_of_output(self) -> list[str]:
        return self._flush()

    def partial_text(self, limit: int) -> str:
        """The unfinished last line of the answer being written (its complete lines are shown)."""
        return self.pending[-limit:]

    def _flush(self) -> list[str]:
        lines = text_lines(self.pending) if self.pending.strip() else []
        self.pending = ""
        return lines

    def _outcome(self, event: dict[str, Any]) -> Outcome:
        stats = event.get("stats") if isinstance(event.get("stats"), dict) else {}
        result = "".join(self.final_text).strip() or "".join(self.all_text).strip()
        outcome = Outcome(
            succeeded=event.get("status") == "success",
            result=result,
            input_tokens=int_or_none(stats.get("input_tokens")),
            output_tokens=int_or_none(stats.get("output_tokens")),
            session_id=self.session_id,
            model=used_model(self.model, stats.get("models")),
        )
        if not outcome.succeeded:
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            outcome.error = _readable_error(str(message or self.last_warning or f"status {event.get('status')!r}"))
        return outcome

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        self._flush()
        if self.result_event is not None:
            outcome = self._outcome(self.result_event)
            status = self.stderr_status
            # Some errors (a 429 that invites a retry) lose their status in the result event; the
            # error's dump on stderr has it, and the exit code (the status mod 256) confirms it.
            if not outcome.succeeded and status and status % 256 == exit_code and str(status) not in outcome.error:
                outcome.error = f"gemini API error {status}: " + outcome.error.removeprefix("gemini: ").removeprefix(
                    "gemini API error: ")
            return outcome
        outcome = self.no_result(exit_code, stderr_tail, "a result event")
        if exit_code in EXIT_CODES:
            outcome.error = f"gemini: {EXIT_CODES[exit_code]}. {outcome.error}"
        outcome.session_id = self.session_id
        outcome.result = "".join(self.all_text).strip()
        outcome.model = used_model(self.model, None)
        return outcome


UTILITY_MODEL_MARK = "flash-lite"  # gemini 0.61 routes and does its chores with a flash-lite model


def used_model(configured: str, models: Any) -> str:
    """The model that did the work, from the init event's `configured` model and the result
    stats' `models` ({name: {total_tokens, ...}}, or None when there were no stats).

    The configured model when the stats name it; else the stats' models that are not flash-lite
    utility models (all of them when every one is), most tokens first, joined with ", "; without
    stats the configured model ("auto" stays "auto": nobody knows which model would have worked).
    """
    if not isinstance(models, dict) or not models:
        return configured
    if configured in models:
        return configured
    names = [n for n in models if UTILITY_MODEL_MARK not in n] or list(models)

    def tokens(name: str) -> int:
        entry = models.get(name)
        return (int_or_none(entry.get("total_tokens")) or 0) if isinstance(entry, dict) else 0

    return ", ".join(sorted(names, key=lambda n: (-tokens(n), n)))


_STDERR_STATUS = re.compile(r"^\s*(?:code|status): (\d{3}),?\s*$")


def _readable_error(message: str) -> str:
    """'[API Error: {"error":{"code":500,...}}]' -> 'gemini API error 500: message (INTERNAL)'."""
    status, text = api_error_detail(message)
    if status:
        return f"gemini API error {status}: {text}"
    text = message.strip()
    if text.startswith("[API Error:") and text.endswith("]"):
        return "gemini API error: " + text[len("[API Error:"):-1].strip()
    return f"gemini: {text}"
