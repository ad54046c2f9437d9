"""Where an integration's branch can be fetched from, as git commands to copy: the workspace's
local repository, its remote once pushed, or Magic Box's own clone of it on the server."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from orchestration.models import Integration, PushState
from orchestration.plans.repositories import is_url, masked
from orchestration.plans.spec import Workspace
from orchestration.vcs.repository import clone_dir


@dataclass
class Onward:
    """commands: shell lines (quoted) to fetch and check out the branch; note: where they apply."""

    commands: list[str]
    note: str


def onward(workspace: Workspace, integration: Integration) -> Onward:
    """The git commands that bring `integration`'s branch to a person's checkout, for a
    workspace (plans.spec.Workspace) whose repository is a local path or a URL. URLs are shown
    with their credentials masked (plans.repositories.masked)."""
    repository, branch = workspace.repository, integration.branch
    q = shlex.quote
    if not is_url(repository):
        return Onward([f"git -C {q(repository)} switch {q(branch)}",
                       f"git fetch {q(repository)} {q(branch)}:{q(branch)} && git switch {q(branch)}"],
                      "The branch is in the workspace repository on this server: switch to it there, or fetch it "
                      "into another clone on this host.")
    if integration.push_state == PushState.SUCCEEDED:
        return Onward([f"git fetch {q(masked(repository))} {q(branch)}:{q(branch)} && git switch {q(branch)}"],
                      "The branch was pushed to the workspace's remote: fetch it into any clone.")
    return Onward([f"git fetch {q(str(clone_dir(repository)))} {q(branch)}:{q(branch)} && git switch {q(branch)}"],
                  "The branch is only in Magic Box's clone of the repository on this server (run the command on the "
                  "server). Add `push: true` to the plan's workspace to have Integrate push it to "
                  f"{masked(repository)}.")
