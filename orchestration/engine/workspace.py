"""Per-attempt directories: the task's working directory, a private HOME and TMPDIR.

Layout under MAGICBOX_DATA_DIR: runs/<run>/<task>/attempt-<n>/{work,home,tmp} (work: a plain
directory, or a git worktree of the plan's workspace repository, see orchestration.vcs), and
runs/<run>/<task>/upstream. Each attempt has its own: an attempt whose worker process hung and
was taken over cannot touch its successor's files.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


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


async def prepare(run_id: int, task_id: str, attempt: int, upstream_results: dict[str, str]) -> AttemptDirs:
    """make_dirs in a thread, off the event loop (its file system calls block). Raises OSError."""
    return await asyncio.to_thread(make_dirs, run_id, task_id, attempt, upstream_results)


def _private_dir(path: Path) -> None:
    """Make `path` a directory readable by Magic Box's user only (mode 0700), its parent existing:
    created with that mode (one system call), or, when it existed, set to it."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        if not _UMASK & 0o700:
            return  # created as 0700: the umask took nothing from the owner's bits
    path.chmod(0o700)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once, at import (os.umask can only be read by setting it)


def attempt_dirs(run_id: int, task_id: str, attempt: int) -> AttemptDirs:
    """The paths of an attempt's directories (see the module docstring), made or not."""
    task_dir = run_dir(run_id) / task_id
    attempt_dir = task_dir / f"attempt-{attempt}"
    return AttemptDirs(workdir=attempt_dir / "work", home=attempt_dir / "home", tmpdir=attempt_dir / "tmp",
                       upstream=task_dir / "upstream")


def make_dirs(run_id: int, task_id: str, attempt: int, upstream_results: dict[str, str]) -> AttemptDirs:
    """Create the attempt's directories (attempt_dirs): workdir (left to the vcs package when the
    plan has a workspace repository, see orchestration.vcs), a private HOME and TMPDIR, and
    upstream/<task>.result files. The task's and the attempt's directories are readable by Magic
    Box's user only (mode 0700). Synchronous (file system calls only; any thread). Raises OSError."""
    dirs = attempt_dirs(run_id, task_id, attempt)
    workdir, home, tmpdir, upstream = dirs.workdir, dirs.home, dirs.tmpdir, dirs.upstream
    task_dir, attempt_dir = upstream.parent, workdir.parent
    task_dir.parent.mkdir(parents=True, exist_ok=True)
    for directory in (task_dir, attempt_dir, home, tmpdir, upstream):
        _private_dir(directory)
    for name, result in upstream_results.items():
        (upstream / f"{name}.result").write_text(result)
    try:
        os.mkdir(workdir)
    except FileExistsError:
        pass
    return dirs
