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
