"""Per-attempt directories: the task's working directory, a private HOME and TMPDIR.

Layout under MAGICBOX_DATA_DIR: runs/<run>/<task>/attempt-<n>/{work,home,tmp} (work: a plain
directory, or a git worktree of the plan's workspace repository, see orchestration.vcs), and
runs/<run>/<task>/upstream. Each attempt has its own: an attempt whose worker process hung and
was taken over cannot touch its successor's files.
"""
from __future__ import annotations

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
    """Create the attempt's directories: workdir (left to the vcs package when the plan has a
    workspace repository, see orchestration.vcs), a private HOME and TMPDIR, and upstream/<task>.result files.
    The task's and the attempt's directories are readable by Magic Box's user only (mode 0700)."""
    task_dir = run_dir(run_id) / task_id
    attempt_dir = task_dir / f"attempt-{attempt}"
    workdir = attempt_dir / "work"
    home, tmpdir, upstream = attempt_dir / "home", attempt_dir / "tmp", task_dir / "upstream"
    for directory in (home, tmpdir, upstream):
        directory.mkdir(parents=True, exist_ok=True)
    for directory in (task_dir, attempt_dir, home, tmpdir, upstream):
        directory.chmod(0o700)  # private: a CLI may write its key to a file others could read
    for name, result in upstream_results.items():
        (upstream / f"{name}.result").write_text(result)
    workdir.mkdir(parents=True, exist_ok=True)
    return AttemptDirs(workdir=workdir, home=home, tmpdir=tmpdir, upstream=upstream)
