"""Which CLI version and model did an agent task's work, when the CLI's events do not say.

`complete` fills an attempt's Outcome: the model from the worker's model variable
(WorkerAdapter.MODEL_ENV: ANTHROPIC_MODEL, CODEX_MODEL, GEMINI_MODEL) in the attempt's
environment, the version from `<program> --version`. That is run once per worker process and
program file (cached by real path and modification time, so an upgraded CLI is asked again),
with the process runner's conventions: argv list, explicit environment (PATH only, a throw-away
HOME), its own process group and a timeout. It needs no sandbox: it runs no task.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from orchestration.workers.base import Invocation, Outcome, WorkerAdapter
from orchestration.workers.events import shorten
from orchestration.workers.process import run_process
from orchestration.workers.sandbox import Confinement

VERSION_TIMEOUT = 30.0  # seconds `<cli> --version` may take (gemini takes about 2)
VERSION_LIMIT = 100  # characters of a version kept (TaskRun.cli_version)
_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?[0-9A-Za-z.+-]*")

_versions: dict[tuple[str, int], str] = {}


def version_text(lines: list[str]) -> str:
    """The version in `<cli> --version`'s stdout lines: "2.1.197" of "2.1.197 (Claude Code)",
    "0.171.0" of "codex-cli 0.171.0"; the first non-blank line (shortened) when none looks like
    a version; "" for no output."""
    for line in lines:
        if found := _VERSION.search(line):
            return found.group(0)[:VERSION_LIMIT]
    return next((shorten(line, VERSION_LIMIT) for line in lines if line.strip()), "")


async def cli_version(program: str, path: str) -> str:
    """The version `program` (an absolute path) reports with --version, run with PATH `path`;
    "" when it cannot be started, fails or takes more than VERSION_TIMEOUT seconds (never raises
    for that; the answer, "" too, is cached for the program file)."""
    try:
        real = os.path.realpath(program)
        key = (real, os.stat(real).st_mtime_ns)
    except OSError:
        return ""
    if key in _versions:
        return _versions[key]
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="magicbox-version-") as home:
        env = {"PATH": path, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "NO_COLOR": "1"}
        try:
            result = await run_process(Invocation(argv=[program, "--version"], env=env, cwd=Path(home)),
                                       lines.append, lambda line: None, VERSION_TIMEOUT,
                                       confinement=Confinement(writable=(Path(home),)))  # like every program Magic Box starts
            ok = result.exit_code == 0
        except (OSError, ValueError):
            ok = False
    _versions[key] = version_text(lines) if ok else ""
    return _versions[key]


def forget_versions() -> None:
    """Ask every CLI for its version again (tests)."""
    _versions.clear()


async def complete(adapter: WorkerAdapter, invocation: Invocation, outcome: Outcome) -> None:
    """Fill `outcome.model` and `outcome.cli_version` where the events left them "" (agent
    workers only: a shell command has neither)."""
    if adapter.config.kind != "agent":
        return
    if not outcome.model and adapter.MODEL_ENV:
        outcome.model = invocation.env.get(adapter.MODEL_ENV, "")
    if not outcome.cli_version and invocation.argv:
        outcome.cli_version = await cli_version(invocation.argv[0], invocation.env.get("PATH", ""))
