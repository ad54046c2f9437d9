"""The plan's workspace repository on this host: a local path as it is, a URL cloned once (bare,
under MAGICBOX_DATA_DIR/repos) and fetched when a run starts; and the run's base commit.

The clone's recorded origin is the URL with its credentials masked (plans.repositories.masked):
a task reading its worktree's git configuration finds no token. Git gets the real URL on its
command line, after `--`, for the clone and each fetch."""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import re
from pathlib import Path

from django.conf import settings

from orchestration.engine.db import db
from orchestration.plans.repositories import is_url, masked
from orchestration.plans.spec import Workspace
from orchestration.vcs.git import GitError, git


def clone_dir(url: str) -> Path:
    """Where a remote repository is cloned: repos/<readable name>-<hash of the URL>.git (the
    name never holds the URL's credentials)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", masked(url).rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))[:40] or "repo"
    return Path(settings.DATA_DIR) / "repos" / f"{name}-{hashlib.sha1(url.encode()).hexdigest()[:10]}.git"


LOCK_NAME = "magicbox-worktrees.lock"


def lock_path(repository: Path | str) -> Path:
    """The lock file serialising worktree changes of one repository: every process of this host
    that changes them must take the same one, whatever its MAGICBOX_DATA_DIR (worker processes
    with data directories of their own share a local repository). So a local repository's lock
    is a file in its git directory (`.git/`, or the bare repository itself), where git keeps its
    own lock files; a clone of Magic Box's own (under MAGICBOX_DATA_DIR, made by one process
    for itself), or a path that is no repository yet, is locked under MAGICBOX_DATA_DIR/locks."""
    path = Path(repository)
    data_dir = Path(settings.DATA_DIR)
    if data_dir not in path.parents:
        if (path / ".git").is_dir():
            return path / ".git" / LOCK_NAME
        if (path / "HEAD").is_file() and (path / "objects").is_dir():
            return path / LOCK_NAME
    return data_dir / "locks" / f"{hashlib.sha1(str(repository).encode()).hexdigest()[:16]}.lock"


async def locked(repository: Path, action):
    """Run `action()` while holding the repository's lock."""
    return await _locked(lock_path(repository), action)


async def _locked(path: Path, action):
    """Run `action()` holding an exclusive file lock on `path` (other worker processes wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            return await action()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def repository_dir(workspace: Workspace, fetch: bool = False) -> Path:
    """The git directory to make worktrees from. A URL is cloned on first use (and fetched again
    when `fetch`). Raises GitError when the path is not a git repository or the clone fails."""
    repository = workspace.repository
    if not is_url(repository):
        path = Path(repository)
        if not path.is_dir():
            raise GitError(f"the workspace repository {path} does not exist on this host")
        await git(["rev-parse", "--git-dir"], path)  # raises "not a git repository" clearly
        return path
    target = clone_dir(repository)

    async def clone_or_fetch() -> None:
        if not (target / "HEAD").exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            await git(["clone", "--bare", "--quiet", "--", repository, str(target)], target.parent)
        elif fetch:
            # No --prune: the magicbox/* branches of earlier runs live only in this clone.
            await git(["fetch", "--quiet", "--", repository, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], target)
        else:
            return
        await git(["config", "remote.origin.url", masked(repository)], target)

    # The lock of worktree changes too: `git worktree add` writes a placeholder HEAD (the null
    # object) before the real one, and a fetch beside it fails with "bad object worktrees/…/HEAD".
    await locked(target, clone_or_fetch)
    return target


async def run_start(run_id: int, workspace: Workspace) -> tuple[str, str]:
    """The run's (base commit, branch prefix): resolved by the run's first task (fetching a
    cloned repository first) and stored on the run, so every task of the run starts alike.

    The base commit comes from workspace.base (a re-run keeps its original run's). The prefix is
    magicbox/run-<id>, or magicbox/run-<id>-2, -3, … when branches of that name already exist
    (a run of another Magic Box database): an existing branch is never reset.
    """
    from orchestration.models import Run

    def stored() -> tuple[str, str]:
        return Run.objects.values_list("base_commit", "branch_prefix").get(pk=run_id)

    commit, prefix = await db(stored)
    if commit and prefix:
        return commit, prefix
    directory = await repository_dir(workspace, fetch=not commit)
    if not commit:
        base = workspace.base or "HEAD"
        try:
            commit = (await git(["rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], directory)).out.strip()
        except GitError:
            raise GitError(f"the workspace base '{base}' is not a branch, tag or commit of {workspace.repository}") from None
    prefix, n = f"magicbox/run-{run_id}", 1
    while (await git(["for-each-ref", "--count=1", f"refs/heads/{prefix}/", f"refs/heads/{prefix}"], directory)).out.strip():
        n += 1
        prefix = f"magicbox/run-{run_id}-{n}"

    def store() -> tuple[str, str]:
        Run.objects.filter(pk=run_id, base_commit="").update(base_commit=commit)
        Run.objects.filter(pk=run_id, branch_prefix="").update(branch_prefix=prefix)
        return stored()

    return await db(store)
