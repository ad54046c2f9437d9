"""Validation of the workspace: a repository the author may use, a base git accepts, task ids
that can name branches."""
from __future__ import annotations

from orchestration.plans import repositories
from orchestration.plans.validation.findings import Findings


def check(f: Findings) -> None:
    """Report a workspace repository the author may not use, a base read as an option, and task
    ids that cannot name the tasks' git branches."""
    workspace = f.data.get("workspace")
    if not workspace:
        return
    for index, task in enumerate(f.tasks):
        tid = task["id"]
        if ".." in tid or tid.endswith((".", ".lock")):
            f.add(f.path(index, "id"), f"'{tid}' cannot name the task's git branch (magicbox/run-N/{tid}): with a workspace, "
                                       "a task id may not contain '..' or end with '.' or '.lock'.")
    if reason := repositories.problem(workspace["repository"], f.any_repository, f.base_dir):
        f.add(["workspace", "repository"], reason)
    if str(workspace.get("base", "")).strip().startswith("-"):
        f.add(["workspace", "base"], f"{workspace['base']!r} starts with '-', which git would read as an option: "
                                     "name a branch, tag or commit (e.g. main).")
