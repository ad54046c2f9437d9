"""The plan's workspace repository on this host: a local path as it is, a URL cloned once (bare,
under MAGICBOX_DATA_DIR/repos) and fetched when a run starts; and the run's base commit."""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import re
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings

from orchestration.plans.loader import is_url
from orchestration.vcs.git import GitError, git


def clone_dir(url: str) -> Path:
    """Where a remote repository is cloned: repos/<readable name>-<hash of the URL>.git."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))[:40] or "repo"
    return Path(settings.DATA_DIR) / "repos" / f"{name}-{hashlib.sha1(url.encode()).hexdigest()[:10]}.git"


async def _locked(path: Path, action):
    """Run `action()` holding an exclusive file lock on `path` (other worker processes wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            return await action()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def repository_dir(workspace: dict, fetch: bool = False) -> Path:
    """The git directory to make worktrees from. A URL is cloned on first use (and fetched again
    when `fetch`). Raises GitError when the path is not a git repository or the clone fails."""
    repository = workspace["repository"]
    if not is_url(repository):
        path = Path(repository)
        if not path.is_dir():
            raise GitError(f"the workspace repository {path} does not exist on this host")
        await git(["rev-parse", "--git-dir"], path)  # raises "not a git repository" clearly
        return path
    target = clone_dir(repository)

    async def clone_or_fetch() -> None:
        if not (target / "HEAD").exists():
            await git(["clone", "--bare", "--quiet", repository, str(target)], target.parent)
        elif fetch:
            await git(["fetch", "--quiet", "--prune", "origin", "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], target)

    await _locked(target.with_suffix(".lock"), clone_or_fetch)
    return target


async def base_commit(run_id: int, workspace: dict) -> str:
    """The run's base commit: resolved from workspace.base by the run's first task (fetching a
    cloned repository first) and stored on the run, so every task of the run starts alike."""
    from orchestration.models import Run

    stored = await sync_to_async(lambda: Run.objects.values_list("base_commit", flat=True).get(pk=run_id))()
    if stored:
        return stored
    directory = await repository_dir(workspace, fetch=True)
    base = workspace.get("base") or "HEAD"
    try:
        commit = (await git(["rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], directory)).out.strip()
    except GitError:
        raise GitError(f"the workspace base '{base}' is not a branch, tag or commit of {workspace['repository']}") from None

    def store() -> str:
        Run.objects.filter(pk=run_id, base_commit="").update(base_commit=commit)
        return Run.objects.values_list("base_commit", flat=True).get(pk=run_id)

    return await sync_to_async(store)()
