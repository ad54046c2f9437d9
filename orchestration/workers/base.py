"""The contract between the engine and a worker adapter: how to start one task, how to read it.

An adapter turns a task into an `Invocation` (argv, environment, working directory, optional
stdin bytes) and supplies an `EventParser` that reads the process's stdout line by line and
finally says how the task ended (`Outcome`). Adapters never start processes themselves; the
engine's process runner does, so every worker gets the same process-group, timeout and
output handling.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.workers.tail import Tail


class WorkerUnavailable(Exception):
    """The worker's program is not installed (or not executable). The message says how to fix it."""


@dataclass
class TaskContext:
    """Everything an adapter may need to build the command of one task attempt.

    prompt: the full prompt text (task prompt, contracts, upstream results), already composed.
    command: the task's argv for the `shell` worker (None for agent workers).
    workdir: the directory the task works in (created, may be a git worktree).
    home: an empty private directory used as HOME / CLI config dir for this attempt.
    tmpdir: an empty private directory used as TMPDIR for this attempt.
    upstream_dir: a directory holding `<task_id>.result` files of the upstream tasks.
    base_env: the explicit environment the engine built (PATH, LANG, passthrough variables).
    """

    task_id: str
    prompt: str
    command: list[str] | None
    workdir: Path
    home: Path
    tmpdir: Path
    upstream_dir: Path
    base_env: dict[str, str]
    output_schema: dict | None = None  # a JSON Schema the result must match (asked for natively where a CLI can)
    resume_session: str = ""  # the CLI session to continue (a review loop's next round), put in place by WorkerAdapter.resume


@dataclass
class Invocation:
    """A process to start: argv list (never a shell string), env, cwd and optional stdin bytes.

    stdin None means the process gets /dev/null (agent CLIs such as codex block on an open pipe).
    stdout_dir: when set, stdout is an unnamed regular file created in this directory (one the
    process may write, such as the attempt's TMPDIR) and followed as it grows, instead of a pipe:
    a CLI that exits with a large write pending on a pipe loses its end, a file gets it whole.
    """

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    stdin: bytes | None = None
    stdout_dir: Path | None = None


@dataclass
class Outcome:
    """How an attempt ended, as read from the worker's output and exit code.

    succeeded: whether the task did its job (a CLI can exit 0 on an API error: check its events).
    result: the final result text handed to downstream tasks.
    error: a one-paragraph message for people when not succeeded ("" otherwise).
    cost_usd: the cost the CLI reported, or None. input_tokens / output_tokens: None when unknown.
    session_id: the CLI's session / thread id, when it gives one.
    cli_version: the CLI's version as its events state it ("2.1.197"), "" when they do not (the
    engine then asks `<cli> --version`, see workers.identity).
    model: the model that did the work as the events state it, "" when they do not (the engine
    then takes the worker's configured model variable, WorkerAdapter.MODEL_ENV).
    """

    succeeded: bool
    result: str = ""
    error: str = ""
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str = ""
    cli_version: str = ""
    model: str = ""


class EventParser:
    """Reads one attempt's output. Subclasses parse their CLI's JSON events.

    The base class treats stdout as plain text: every line is shown, and the result is the
    whole of stdout (its last 64 KiB).

    A parser of a CLI that streams its answer also keeps the text of the message being written
    (`partial_text`): shown to live viewers only, never stored, and cleared when the complete
    message arrives as lines (so the stored log has it once).
    """

    RESULT_LIMIT = 64 * 1024

    def __init__(self) -> None:
        self._stdout_tail = Tail(self.RESULT_LIMIT)
        self._partial: list[str] = []

    def partial_text(self, limit: int) -> str:
        """The last `limit` characters of the message being written ("" when none is)."""
        pieces, size = [], 0
        for piece in reversed(self._partial):
            pieces.append(piece)
            size += len(piece)
            if size >= limit:
                break
        return "".join(reversed(pieces))[-limit:]

    def _grow_partial(self, text: str) -> None:
        self._partial.append(text)

    def _end_partial(self) -> None:
        self._partial = []

    def feed_stdout(self, line: str) -> list[str]:
        """Take one stdout line (without its newline); return the lines to show people."""
        self._remember(line)
        return [line]

    def feed_stderr(self, line: str) -> list[str]:
        """Take one stderr line (without its newline); return the lines to show people."""
        return [line]

    def end_of_output(self) -> list[str]:
        """Once the process ended (exited or killed for its timeout), before `finish`: the lines
        still held back to show (text a CLI streamed without finishing its line)."""
        return []

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        """Say how the attempt ended, given the process's exit code and the end of its stderr."""
        result = self._stdout_tail.text()
        if exit_code == 0:
            return Outcome(succeeded=True, result=result)
        detail = stderr_tail.strip().splitlines()[-1:] or [""]
        return Outcome(
            succeeded=False,
            result=result,
            error=f"exited with code {exit_code}" + (f": {detail[0]}" if detail[0] else ""),
        )

    def _remember(self, line: str) -> None:
        self._stdout_tail.add(line)


@dataclass
class WorkerConfig:
    """One entry of settings.MAGICBOX_WORKERS, resolved. See the settings module for the keys."""

    name: str
    adapter: str
    program: str | None
    kind: str = "agent"
    install_hint: str = ""
    env_passthrough: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    requires_any_env: list[str] = field(default_factory=list)
    args: list[str] | None = None
    max_parallel: int | None = None


class WorkerAdapter:
    """Base adapter. Subclasses set nothing but `build` and `parser` when they need to, and:

    MODEL_ENV: the environment variable that chooses the CLI's model ("" for no model: shell).
    HOME_DISCARD / HOME_TRANSCRIPTS: paths (glob patterns relative to the attempt's HOME) that
    engine.homes treats specially: removed when the attempt ends (the CLI's credential files
    and scratch), and the CLI's session transcripts, kept (moved aside) when the HOME is removed.
    """

    MODEL_ENV = ""
    HOME_DISCARD: tuple[str, ...] = ()
    HOME_TRANSCRIPTS: tuple[str, ...] = ()

    def __init__(self, config: WorkerConfig, search_path: list[str]) -> None:
        self.config = config
        self.search_path = search_path

    def resume(self, sessions: Path, session_id: str, ctx: TaskContext) -> bool:
        """Put what the CLI needs to continue session `session_id` into the attempt's HOME
        (ctx.home), from `sessions`: an earlier attempt's transcripts as engine.homes.seal moved
        them aside (same paths relative to HOME). True when this attempt can resume it (then
        build gets ctx.resume_session); False (the default: a CLI that cannot) starts afresh."""
        return False

    def find_program(self, program: str) -> str:
        """Return the absolute path of `program`.

        Raises WorkerUnavailable naming the program and the install hint when it is not found.
        """
        if os.sep in program:
            if os.access(program, os.X_OK):
                return program
        else:
            for directory in self.search_path:
                candidate = os.path.join(directory, program)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    return candidate
        hint = f" Install it with: {self.config.install_hint}." if self.config.install_hint else ""
        raise WorkerUnavailable(
            f"The {self.config.name} worker needs the program '{program}', which is not installed "
            f"on this host.{hint} (Searched: {', '.join(self.search_path) or 'nothing'}.)"
        )

    def require_environment(self, env: dict[str, str]) -> None:
        """Raise WorkerUnavailable unless `env` sets one of the config's requires_any_env
        variables (an API key: each attempt gets a private HOME, so a CLI's own login is not
        seen, and without a key a CLI may wait for the network for an hour)."""
        needed = self.config.requires_any_env
        if needed and not any(env.get(name) for name in needed):
            either = " or ".join(needed)
            raise WorkerUnavailable(
                f"The {self.config.name} worker needs {either} in the environment of the Magic Box worker "
                f"processes: export it before starting Magic Box (e.g. `export {needed[0]}=…; ./start`)."
            )

    def unavailable_reason(self, env: dict[str, str]) -> str:
        """Why this worker cannot run tasks on this host ("" when it can): every missing thing,
        the program and the key, so fixing one does not reveal the other only later."""
        reasons = []
        env = {**env, **self.config.env}  # variables the worker's configuration sets count too
        for check in (lambda: self.find_program(self.config.program) if self.config.program else None,
                      lambda: self.require_environment(env)):
            try:
                check()
            except WorkerUnavailable as error:
                reasons.append(str(error))
        return " Also: ".join(reasons)

    def build(self, ctx: TaskContext) -> Invocation:
        """Return the process to start for this attempt. Raises WorkerUnavailable."""
        raise NotImplementedError

    def parser(self) -> EventParser:
        """Return a fresh parser for one attempt's output."""
        return EventParser()
