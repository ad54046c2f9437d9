"""Validation of each task on its own: ids, dependencies named, worker, command, something to do."""
from __future__ import annotations

from orchestration.plans.validation.findings import TASKS, Findings

MAX_TASKS = 2000


def check(f: Findings) -> bool:
    """Report faults of the tasks one by one. False when the plan is too large to look further."""
    if len(f.tasks) > MAX_TASKS:
        f.add(list(TASKS), f"the plan has {len(f.tasks)} tasks; at most {MAX_TASKS} are allowed. Split it into several plans.")
        return False
    for index, task in enumerate(f.tasks):
        first = f.first_seen[task["id"]]
        if first != index:
            line, _ = f.doc.locate(f.path(first, "id"))
            where = f" (line {line})" if line else ""
            f.add(f.path(index, "id"), f"duplicate task id '{task['id']}': task {first + 1}{where} already has it. "
                                       "Give each task its own id.")
    for index, task in enumerate(f.tasks):
        for dep_index, dep in enumerate(task.get("depends_on", [])):
            if dep == task["id"]:
                f.add(f.path(index, "depends_on", dep_index), f"task '{dep}' depends on itself. Remove this entry.")
            elif dep not in f.first_seen:
                f.add(f.path(index, "depends_on", dep_index), f.unknown(dep))
        _check_work(f, index, task)
        if task.get("prompt_file"):
            from orchestration.plans.prompt_library import BadPromptPath
            from orchestration.plans.prompt_library import check as check_prompt_file

            try:
                check_prompt_file(task["prompt_file"])
            except BadPromptPath as error:
                f.add(f.path(index, "prompt_file"), str(error))
    if "total_tasks" in f.data["parallel_execution"] and f.data["parallel_execution"]["total_tasks"] != len(f.tasks):
        f.add(["parallel_execution", "total_tasks"], f"total_tasks is {f.data['parallel_execution']['total_tasks']} but the plan "
                                                     f"lists {len(f.tasks)} tasks. Correct total_tasks or remove it.")
    return True


def _check_work(f: Findings, index: int, task: dict) -> None:
    """The task's worker exists and has something to do: a command for shell, else a description or prompt."""
    if "worker" not in task:
        return  # a task with candidates and no worker of its own: constructs checks the candidates
    worker = task["worker"]
    if f.unknown_worker(f.path(index, "worker"), worker):
        return
    if worker == "shell":
        if "command" not in task:
            f.add(f.path(index, "command"), "the shell worker needs a `command:` (an argv list, or a string split like a shell would).")
        else:
            f.check_command(f.path(index, "command"), task["command"])
    elif "command" in task:
        f.add(f.path(index, "command"), f"`command` is only for the shell worker; a {worker} task takes a `description` or `prompt`.",
              at_key=True)
    if worker != "shell" and not any(task.get(k, "").strip() for k in ("description", "prompt", "prompt_file")):
        f.add(f.path(index, "description"), f"task '{task['id']}' has nothing to do: give it a `description` or a `prompt`.")
