"""A task's worktree is made with its repository locked, and only while its attempt still holds
the task: a worker process that hung before it made the worktree, and was taken over meanwhile,
must not remove its successor's worktree (which holds the same branch) when it wakes."""
from __future__ import annotations

import asyncio

import pytest

from orchestration.engine.leases import LeaseLost
from orchestration.vcs import worktrees
from tests.conftest import git


def test_an_attempt_taken_over_before_it_made_its_worktree_leaves_its_successors_alone(repo, tmp_path):
    successor = tmp_path / "worker-b" / "attempt-2" / "work"
    stale = tmp_path / "worker-a" / "attempt-1" / "work"
    asyncio.run(worktrees.create(repo, successor, "magicbox/run-1/a", "main"))
    (successor / "work.txt").write_text("the successor's work\n")

    async def taken_over() -> None:
        raise LeaseLost()

    with pytest.raises(LeaseLost):
        asyncio.run(worktrees.create(repo, stale, "magicbox/run-1/a", "main", still_holder=taken_over))
    assert (successor / ".git").is_file() and (successor / "work.txt").read_text() == "the successor's work\n"
    assert not stale.exists()
    assert str(successor) in git(repo, "worktree", "list")

    async def holds() -> None:
        return None

    asyncio.run(worktrees.create(repo, stale, "magicbox/run-1/a", "main", still_holder=holds))  # the holder replaces a stale one
    assert (stale / ".git").is_file() and not successor.exists()


def test_worker_processes_with_data_directories_of_their_own_share_a_local_repositorys_lock(repo, settings, tmp_path):
    # Two runworker processes each have a MAGICBOX_DATA_DIR, but one local repository: a lock
    # under the data directory let one process remove the other's worktree (seen in CI, a
    # successor's worktree gone: "bwrap: Can't find source path …/attempt-2/work/.git").
    from orchestration.vcs.repository import clone_dir, lock_path

    settings.DATA_DIR = tmp_path / "worker0-data"
    first = lock_path(repo)
    settings.DATA_DIR = tmp_path / "worker1-data"
    assert lock_path(repo) == first == repo / ".git" / "magicbox-worktrees.lock"
    clone = clone_dir("https://example.com/team/app.git")
    assert tmp_path / "worker1-data" in lock_path(clone).parents, "a clone of its own is locked in its data directory"
