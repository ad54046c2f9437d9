"""A worktree on its own branch for each task of a run (magicbox/run-<run>/<task>), started from
the run's base commit or from a merge of the task's upstream tasks' branches."""
from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration.vcs import conflicts
from orchestration.vcs.git import GitError, git
from orchestration.vcs.repository import locked


class UpstreamConflict(GitError):
    """The branches of a task's upstream tasks do not merge; `files` as conflicts.conflicted_files."""

    def __init__(self, message: str, files: list[dict]) -> None:
        super().__init__(message)
        self.files = files


@dataclass
class TaskStart:
    """Where a task begins: its branch, worktree and the commit its own changes are measured from."""

    branch: str
    workdir: Path
    start_commit: str


def branch_name(prefix: str, task_id: str) -> str:
    """A task's branch: <prefix>/<task> (prefix as Run.branch_prefix, e.g. magicbox/run-12)."""
    return f"{prefix}/{task_id}"


def integration_branch(prefix: str) -> str:
    """The integration branch of a run: magicbox/integration/run-12 (beside any task's name)."""
    return "magicbox/integration/" + prefix.removeprefix("magicbox/")


async def _remove(repository: Path, workdir: Path) -> None:
    if workdir.exists():
        try:
            await git(["worktree", "remove", "--force", "--force", str(workdir)], repository)  # twice: locked ones too
        except GitError:
            shutil.rmtree(workdir, ignore_errors=True)
    await git(["worktree", "prune"], repository, ok_codes=(0, 1, 128))


async def remove(repository: Path, workdir: Path) -> None:
    """Remove a worktree (its directory and git's record of it); the branch stays."""
    await locked(repository, lambda: _remove(repository, workdir))


async def _linked_holders(repository: Path, branch: str) -> list[Path]:
    """The linked worktrees (not the repository's own) that have `branch` checked out
    (`git worktree list --porcelain`: the main worktree is listed first)."""
    listing = (await git(["worktree", "list", "--porcelain"], repository)).out
    holders, path, first = [], None, None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree "))
            first = first or path
        elif line == f"branch refs/heads/{branch}" and path is not None and path != first:
            holders.append(path)
    return holders


async def create(repository: Path, workdir: Path, branch: str, start: str,
                 still_holder: Callable[[], Awaitable[None]] | None = None) -> None:
    """A fresh worktree at `workdir` on `branch`, reset to `start`, replacing an earlier
    attempt's: the one at `workdir`, and any other that still has `branch` checked out (an
    attempt whose worker process died, with another data directory).

    Worktree records live in the shared repository: creating and pruning them is serialised
    per repository (over processes of this host), or one task's prune breaks another's add.
    still_holder: awaited once the repository is locked, before anything is removed; it raises
    (engine.leases.LeaseLost) when the attempt was taken over meanwhile, so a process that hung
    before it got the lock never removes its successor's worktree."""
    async def make() -> None:
        if still_holder is not None:
            await still_holder()
        await _remove(repository, workdir)
        for stale in await _linked_holders(repository, branch):
            # Only git removes it (never a plain delete): it is a worktree git knows as its own.
            await git(["worktree", "remove", "--force", "--force", str(stale)], repository, ok_codes=(0, 128))
            await git(["worktree", "prune"], repository, ok_codes=(0, 1, 128))
        workdir.parent.mkdir(parents=True, exist_ok=True)
        await git(["worktree", "add", "--quiet", "-B", branch, str(workdir), start], repository)

    await locked(repository, make)


async def merge(workdir: Path, commit: str, message: str) -> list[dict]:
    """Merge `commit` into the worktree's branch. Returns [] when it merged, else the conflicted
    files (the merge is then aborted, leaving the branch as it was)."""
    result = await git(["merge", "--no-ff", "--no-edit", "-m", message, commit], workdir, ok_codes=(0, 1))
    if result.code == 0:
        return []
    files = await conflicts.conflicted_files(workdir)
    await git(["merge", "--abort"], workdir, ok_codes=(0, 128))
    if not files:
        raise GitError(f"merging {commit[:10]} failed: {(result.err or result.out).strip()[-1000:]}")
    return files


async def start_task(repository: Path, prefix: str, task_id: str, workdir: Path, base: str,
                     upstream: list[tuple[str, str]], still_holder: Callable[[], Awaitable[None]] | None = None,
                     continue_from: str = "") -> TaskStart:
    """Create the task's worktree: at `base`, or at the first upstream task's head with the
    others' merged in (upstream: [(task id, head commit)], in plan order); with
    `continue_from` (a commit of the task's own branch: a review loop's next round), at that
    commit with every upstream head merged in (already merged ones change nothing). Raises
    UpstreamConflict naming the files when two upstream branches do not merge, and what
    `still_holder` raises (see `create`)."""
    branch = branch_name(prefix, task_id)
    first = continue_from or (upstream[0][1] if upstream else base)
    await create(repository, workdir, branch, first, still_holder)
    for other_id, head in (upstream if continue_from else upstream[1:]):
        files = await merge(workdir, head, f"Magic Box: merge upstream task {other_id} into {task_id}")
        if files:
            raise UpstreamConflict(
                f"the branches of upstream tasks {upstream[0][0]} and {other_id} do not merge: {conflicts.describe(files)}", files)
    start = (await git(["rev-parse", "HEAD"], workdir)).out.strip()
    return TaskStart(branch=branch, workdir=workdir, start_commit=start)
