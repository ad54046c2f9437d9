"""Validation of completion criteria: commands that can run, review tasks that exist."""
from __future__ import annotations

from orchestration.plans.validation.findings import Findings


def check(f: Findings) -> None:
    """Report criteria whose command cannot run or whose review task is not in the plan."""
    for index, criterion in enumerate(f.data["parallel_execution"].get("completion_criteria", [])):
        if not isinstance(criterion, dict):
            continue
        path = ["parallel_execution", "completion_criteria", index]
        if "command" in criterion:
            f.check_command([*path, "command"], criterion["command"])
        if criterion.get("review") and criterion["review"] not in f.first_seen:
            f.add([*path, "review"], f.unknown(criterion["review"]))
