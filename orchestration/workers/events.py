"""Helpers shared by the agent-CLI event parsers (claude, codex, gemini).

The CLIs write one JSON object per stdout line, mixed at times with plain-text lines (warnings,
banners) that are not JSON. `decode_json_line` reads such a line without ever raising;
`summarize_tool_call` renders a tool call as one short line for the live log ("→ Write
src/app.py", "→ $ pytest -q"); `shorten` makes any text fit on one line of the log.
`JsonEventParser` is the parsers' common base; `agent_argv` and `agent_env` build the adapters'
command line and environment.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any

from orchestration.workers.base import EventParser, Outcome, TaskContext
from orchestration.workers.environment import NESTED_SESSION_NAMES

SHOWN_LINE_LIMIT = 2000  # characters of one line shown in the live log
SUMMARY_LIMIT = 200  # characters of a tool call / tool result summary


def decode_json_line(line: str) -> dict[str, Any] | None:
    """Return the JSON object on `line`, or None when the line is not a JSON object.

    Tolerates surrounding whitespace, a carriage return, blank lines, plain-text noise and
    truncated JSON; never raises. Lines of many megabytes are fine (one `json.loads`).
    """
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def shorten(text: Any, limit: int = SUMMARY_LIMIT) -> str:
    """`text` on one line: whitespace runs collapsed, cut to `limit` characters with an ellipsis."""
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False) if text is not None else ""
    # Collapse before cutting, but never scan more than needed of a megabyte-long text.
    one_line = re.sub(r"\s+", " ", text[: limit * 4]).strip()
    if len(one_line) > limit or len(text) > limit * 4:
        return one_line[: max(limit - 1, 0)].rstrip() + "…"
    return one_line


def text_lines(text: str, limit: int = SHOWN_LINE_LIMIT) -> list[str]:
    """Split a block of text (an assistant message) into the lines to show, each cut to `limit`.

    Blank lines at the start and end are dropped; inner blank lines are kept.
    """
    if not text.strip():
        return []
    lines = text.strip("\n").split("\n")
    return [line if len(line) <= limit else line[: limit - 1] + "…" for line in lines]


def relative_path(path: str, cwd: str | None) -> str:
    """`path` relative to `cwd` when it lies inside it (CLIs report absolute paths), else unchanged."""
    if cwd and os.path.isabs(path):
        try:
            rel = os.path.relpath(path, cwd)
        except ValueError:
            return path
        if not rel.startswith(".."):
            return rel
    return path


# Parameters that best say what a tool call does, in order of preference.
_PATH_KEYS = ("file_path", "path", "notebook_path", "absolute_path", "dir_path", "directory")
_OTHER_KEYS = ("command", "cmd", "pattern", "url", "query", "description", "prompt", "skill")
_SHELL_TOOLS = {"bash", "shell", "exec_command", "run_shell_command", "local_shell", "container.exec"}


def summarize_tool_call(name: str, params: Any, cwd: str | None = None) -> str:
    """One line for a tool call: "→ Write out/app.py", "→ $ pytest -q", "→ WebFetch https://…".

    name: the tool's name as the CLI reports it. params: its input (a dict, a JSON string or
    anything else). cwd: the agent's working directory, used to show paths relative to it.
    """
    if isinstance(params, str):
        decoded = decode_json_line(params)
        params = decoded if decoded is not None else params
    if not isinstance(params, dict):
        detail = shorten(params) if params not in (None, "", {}) else ""
        return f"→ {name}" + (f" {detail}" if detail else "")
    if name.lower() in _SHELL_TOOLS:
        command = params.get("command", params.get("cmd", ""))
        if isinstance(command, list):
            command = " ".join(str(part) for part in command)
        return f"→ $ {shorten(command)}"
    for key in _PATH_KEYS:
        value = params.get(key)
        if isinstance(value, str) and value:
            return f"→ {name} {shorten(relative_path(value, cwd))}"
    for key in _OTHER_KEYS:
        value = params.get(key)
        if isinstance(value, str) and value:
            return f"→ {name} {shorten(value)}"
    if not params:
        return f"→ {name}"
    return f"→ {name} {shorten(params)}"


def summarize_tool_result(content: Any, is_error: bool = False) -> str:
    """One short line for a tool's result: "  ← File created…" or "  ← error: …"."""
    if isinstance(content, list):  # Anthropic content blocks
        content = " ".join(
            str(block.get("text", "")) if isinstance(block, dict) else str(block) for block in content
        )
    text = shorten(content if content is not None else "")
    prefix = "  ← error: " if is_error else "  ← "
    return (prefix + text).rstrip() if text or is_error else "  ← (no output)"


def filter_noise(lines: Iterable[str], noise: Iterable[re.Pattern[str]]) -> list[str]:
    """The lines that match none of the `noise` patterns (and are not blank)."""
    patterns = list(noise)
    return [line for line in lines if line.strip() and not any(p.search(line) for p in patterns)]


def stderr_excerpt(stderr_tail: str, noise: Iterable[re.Pattern[str]], max_lines: int = 6, limit: int = 1500) -> str:
    """The last meaningful lines of stderr (noise dropped), joined with " | ", at most `limit` characters."""
    lines = filter_noise(stderr_tail.splitlines(), noise)[-max_lines:]
    text = " | ".join(line.strip() for line in lines)
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def format_tokens(input_tokens: int | None, output_tokens: int | None) -> str:
    """"1,200 in / 30 out tokens", or "" when unknown."""
    if input_tokens is None and output_tokens is None:
        return ""
    return f"{input_tokens or 0:,} in / {output_tokens or 0:,} out tokens"


def int_or_none(value: Any) -> int | None:
    """`value` as an int when it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def api_error_detail(message: str) -> tuple[int | None, str]:
    """Pull (HTTP status, message) out of an error text that embeds a provider's JSON error body.

    Understands `{"error": {"code": 500, "message": "...", "status": "INTERNAL"}}` (Google),
    `{"error": {"message": "...", "type": "..."}}` (OpenAI) and
    `{"type": "error", "error": {"type": "...", "message": "..."}}` (Anthropic), bare or inside
    other text such as "[API Error: {...}]". Returns (None, message) when there is no such body.
    """
    start = message.find("{")
    end = message.rfind("}")
    if start < 0 or end <= start:
        return None, message
    try:
        body = json.loads(message[start : end + 1])
    except ValueError:
        return None, message
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return None, error
    if not isinstance(error, dict):
        return None, message
    status = int_or_none(error.get("code"))
    text = str(error.get("message") or message)
    kind = error.get("status") or error.get("type")
    if kind and str(kind) not in text:
        text = f"{text} ({kind})"
    return status, text


# --- the parsers' and adapters' common parts ----------------------------------------------------


class JsonEventParser(EventParser):
    """Base of the agent-CLI parsers: one JSON event per stdout line, dispatched to `on_event`.

    Subclasses implement `on_event(event) -> list[str]` (the lines to show) and `finish`, and
    list their CLI's harmless stderr lines in `STDERR_NOISE`. stdout lines that are not JSON
    objects are shown as they are (cut to one log line); stderr lines are shown unless noise.
    """

    CLI = "agent"
    STDERR_NOISE: tuple[re.Pattern[str], ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.events_seen = 0

    def feed_stdout(self, line: str) -> list[str]:
        event = decode_json_line(line)
        if event is None:
            return [shorten(line, SHOWN_LINE_LIMIT)] if line.strip() else []
        self.events_seen += 1
        return self.on_event(event)

    def feed_stderr(self, line: str) -> list[str]:
        if not line.strip() or any(p.search(line) for p in self.STDERR_NOISE):
            return []
        return [shorten(line, SHOWN_LINE_LIMIT)]

    def on_event(self, event: dict[str, Any]) -> list[str]:
        """Take one decoded event; return the lines to show."""
        raise NotImplementedError

    def no_result(self, exit_code: int, stderr_tail: str, what: str = "a result") -> Outcome:
        """The Outcome when the CLI ended without reporting `what`: failed, with the stderr excerpt."""
        excerpt = stderr_excerpt(stderr_tail, self.STDERR_NOISE)
        message = f"{self.CLI} exited with code {exit_code} without reporting {what}"
        if self.events_seen == 0:
            message += " (it printed no events at all)"
        message += f". stderr: {excerpt}" if excerpt else ". It wrote nothing to stderr."
        return Outcome(succeeded=False, error=message)


PROMPT_ARGV_LIMIT = 100_000  # bytes; a longer prompt must go on stdin (one argv element is capped at 128 KiB)


def agent_argv(
    program: str, default_args: list[str], config_args: list[str] | None, ctx: TaskContext
) -> tuple[list[str], bytes | None]:
    """The argv and stdin bytes of an agent CLI run.

    With `config_args` None the argv is `[program, *default_args]` and the prompt goes on stdin.
    Otherwise `config_args` replaces the default arguments, with "{workdir}" and "{prompt}"
    substituted in each element; when "{prompt}" appears the prompt is in that argv element
    (stdin is /dev/null), else it goes on stdin. Raises ValueError for a prompt of more than
    PROMPT_ARGV_LIMIT bytes placed in argv.
    """
    if config_args is None:
        return [program, *default_args], ctx.prompt.encode()
    uses_prompt = any("{prompt}" in arg for arg in config_args)
    if uses_prompt and len(ctx.prompt.encode()) > PROMPT_ARGV_LIMIT:
        raise ValueError(
            f"task {ctx.task_id}: the prompt is {len(ctx.prompt.encode()):,} bytes, too long for a "
            f"command-line argument; remove {{prompt}} from the worker's args so it goes on stdin"
        )
    args = [arg.replace("{workdir}", str(ctx.workdir)).replace("{prompt}", ctx.prompt) for arg in config_args]
    return [program, *args], None if uses_prompt else ctx.prompt.encode()


def agent_env(
    ctx: TaskContext, defaults: dict[str, str], config_env: dict[str, str], forced: dict[str, str]
) -> dict[str, str]:
    """The environment of an agent CLI run.

    Layers, later wins: ctx.base_env, the adapter's `defaults`, the worker's configured env,
    then `forced` (HOME, TMPDIR and other per-attempt directories). CLAUDECODE and
    CLAUDE_CODE_ENTRYPOINT are always removed (claude refuses to start inside another session).
    """
    env = {**ctx.base_env, **defaults, **config_env, "HOME": str(ctx.home), "TMPDIR": str(ctx.tmpdir), **forced}
    for name in NESTED_SESSION_NAMES:
        env.pop(name, None)
    return env
