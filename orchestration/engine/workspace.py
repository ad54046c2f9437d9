"""Per-attempt directories: the task's working directory, a private HOME and TMPDIR.

Layout under MAGICBOX_DATA_DIR: runs/<run>/<task>/work (or a git worktree of the plan's
workspace repository), runs/<run>/<task>/attempt-<n>/{home,tmp}, runs/<run>/<task>/upstream.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


class WorkspaceError(Exception):
    """The task's working directory could not be prepared; the message says why."""


@dataclass
class AttemptDirs:
    """Absolute paths prepared for one attempt."""

    workdir: Path
    home: Path
    tmpdir: Path
    upstream: Path


def run_dir(run_id: int) -> Path:
    """The directory holding every task directory of a run."""
    return Path(settings.DATA_DIR) / "runs" / str(run_id)


async def prepare(run_id: int, task_id: str, attempt: int, workspace: dict | None,
                  upstream_results: dict[str, str]) -> AttemptDirs:
    """Create the attempt's directories (and the worktree, on the first attempt).

    workspace: the plan's {"repository", "base"} or None (then workdir is an empty directory).
    Raises WorkspaceError when the repository is not a git repository or git fails.
    """
    task_dir = run_dir(run_id) / task_id
    workdir = task_dir / "work"
    attempt_dir = task_dir / f"attempt-{attempt}"
    home, tmpdir, upstream = attempt_dir / "home", attempt_dir / "tmp", task_dir / "upstream"
    for directory in (home, tmpdir, upstream):
        directory.mkdir(parents=True, exist_ok=True)
    for name, result in upstream_results.items():
        (upstream / f"{name}.result").write_text(result)
    if not workdir.exists():
        if workspace:
            await _add_worktree(Path(workspace["repository"]), workspace.get("base") or "HEAD", workdir)
        else:
            workdir.mkdir(parents=True)
    return AttemptDirs(workdir=workdir, home=home, tmpdir=tmpdir, upstream=upstream)


async def _git(args: list[str], cwd: Path) -> str:
    git = shutil.which("git")
    if git is None:
        raise WorkspaceError("the plan has a workspace repository but git is not installed on this host")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "GIT_TERMINAL_PROMPT": "0", "LANG": "C.UTF-8"}
    proc = await asyncio.create_subprocess_exec(
        git, *args, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise WorkspaceError(f"git {' '.join(args)} took longer than 120 s") from None
    if proc.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def _add_worktree(repository: Path, base: str, target: Path) -> None:
    if not (repository / ".git").exists():
        raise WorkspaceError(f"the workspace repository {repository} is not a git repository (no .git in it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    await _git(["-c", "safe.directory=*", "worktree", "add", "--detach", str(target), base], repository)


async def remove_worktree(workspace: dict | None, workdir: Path) -> None:
    """Remove a task's worktree (its directory and git's record of it); ignore failures."""
    if not workspace or not workdir.exists():
        return
    try:
        await _git(["-c", "safe.directory=*", "worktree", "remove", "--force", str(workdir)], Path(workspace["repository"]))
    except WorkspaceError:
        shutil.rmtree(workdir, ignore_errors=True)
