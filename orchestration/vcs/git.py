"""Run git: argv lists, an explicit environment, a timeout, the process group killed on timeout.

Every command runs with a fixed identity (commits are Magic Box's), no hooks, no prompts, no
signing, no pager and no fsmonitor (a task could set core.fsmonitor to a command in the shared
.git/config), no global or system config (HOME is Magic Box's own empty directory: a task
could write a .gitconfig into its worktree), never inside a nested repository a task made (its
config could name a filter command), and never looks for a repository above its working
directory's parent (a task that deletes its worktree's .git must not make git find an
enclosing repository).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from orchestration.plans.repositories import masked

GIT_TIMEOUT = 300  # seconds, for one git command (a clone of a large repository included)
IDENTITY = ["-c", "user.name=Magic Box", "-c", "user.email=magicbox@localhost", "-c", "commit.gpgsign=false",
            "-c", "core.hooksPath=/dev/null", "-c", "safe.directory=*", "-c", "core.quotePath=false",
            "-c", "merge.conflictStyle=merge", "-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false",
            # A nested repository a task made has a config of its own (a `filter` command, say):
            # never step into one.
            "-c", "diff.ignoreSubmodules=all", "-c", "submodule.recurse=false", "-c", "status.submoduleSummary=false"]


class GitError(Exception):
    """A git command failed or git is missing; the message names the command and git's words,
    with the credentials of any URL in them masked (plans.repositories.masked)."""

    def __init__(self, message: str) -> None:
        super().__init__(masked(message))


@dataclass
class GitResult:
    """A finished git command: exit code, stdout and stderr (decoded, errors replaced)."""

    code: int
    out: str
    err: str


def _environment(cwd: Path) -> dict[str, str]:
    # No global or system config: HOME is an empty directory of Magic Box's own, never the
    # working directory (a task could write a .gitconfig there whose `filter` the server runs).
    home = Path(settings.DATA_DIR) / "git-home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "GIT_CEILING_DIRECTORIES": str(cwd.parent), "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_CONFIG_NOSYSTEM": "1",
            **({"SSH_AUTH_SOCK": os.environ["SSH_AUTH_SOCK"]} if "SSH_AUTH_SOCK" in os.environ else {})}


async def git(args: list[str], cwd: Path, ok_codes: tuple[int, ...] = (0,), timeout: float = GIT_TIMEOUT) -> GitResult:
    """Run `git <IDENTITY> <args>` in `cwd`. Raises GitError when git is not installed, the exit
    code is not in `ok_codes`, or it takes longer than `timeout` seconds (its group is killed)."""
    program = shutil.which("git")
    if program is None:
        raise GitError("the plan has a workspace repository, but git is not installed on this host")
    proc = await asyncio.create_subprocess_exec(
        program, *IDENTITY, *args, cwd=str(cwd), env=_environment(cwd), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as stop:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        if isinstance(stop, asyncio.CancelledError):
            raise
        raise GitError(f"git {' '.join(args[:3])} took longer than {timeout:g} s") from None
    result = GitResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
    if result.code not in ok_codes:
        command = " ".join([arg for arg in args if arg != "--"][:4])
        raise GitError(f"git {command} failed: {(result.err or result.out).strip()[-2000:]}")
    return result
