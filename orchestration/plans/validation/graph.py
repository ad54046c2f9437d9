"""Validation of the plan as a DAG: no cycle, and `{{ tasks.<id>.… }}` references only to upstream tasks."""
from __future__ import annotations

from orchestration.plans import references
from orchestration.plans.validation.findings import Findings


def check(f: Findings) -> None:
    """Report a dependency cycle, else references to tasks that are unknown or not upstream."""
    if f.cycle:
        index = f.first_seen[f.cycle[0]]
        f.add(f.path(index, "depends_on"), f"dependency cycle: {' → '.join(f.cycle)}. A task cannot wait for itself; "
                                           "remove one of these depends_on entries.")
    if not f.is_dag:
        return
    for index, path, text in f.texts():
        task = f.tasks[index]
        found, unknown_refs = references.find(text, f.first_seen)
        for message in [*unknown_refs, *references.find_inputs(text, f.data.get("inputs") or {})[1]]:
            f.add(path, message)
        for reference in found:
            if reference.task not in f.waits_for[task["id"]]:
                f.add(path, f"{reference.text} refers to {reference.task}, which is not upstream of {task['id']}: "
                            f"add {reference.task} to depends_on, or remove the reference.")
