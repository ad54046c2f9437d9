"""Validation of review-and-fix loops, best-of-N candidates with their choice, and gates."""
from __future__ import annotations

from typing import Any

from orchestration.plans.validation.findings import Findings

CHOOSE_HOW = "add `choose: person`, `choose: {review: <a task that depends on this one>}` or `choose: {command: <a check>}`"


def candidate_workers(candidates: Any) -> list[str]:
    """The workers of a task's `candidates:` ([claude, codex] or {worker: claude, n: 3} -> three claudes)."""
    if isinstance(candidates, dict):
        return [candidates["worker"]] * int(candidates["n"])
    return list(candidates)


def check(f: Findings) -> None:
    """Report loops whose fixes are not upstream of their review, candidates without a way to
    choose (or a choice without candidates), reviews that cannot see the candidates, and gates
    that cannot run; warn of gates that hold nothing back."""
    fixed_by: dict[str, str] = {}
    for index, task in enumerate(f.tasks):
        if "loop" in task:
            _check_loop(f, index, task, fixed_by)
        if "candidates" in task or "choose" in task:
            _check_candidates(f, index, task)
        if "gate" in task:
            _check_gate(f, index, task)
    for index, task in enumerate(f.tasks):
        if task["id"] in fixed_by and ("candidates" in task or "loop" in task):
            what = "candidates" if "candidates" in task else "loop"
            f.add(f.path(index, what), f"{task['id']} is fixed by the loop of {fixed_by[task['id']]}, so it cannot also have "
                                       f"{'candidates' if what == 'candidates' else 'a loop of its own'}: a fix runs once per round.",
                  at_key=True)


def _check_loop(f: Findings, index: int, task: dict, fixed_by: dict[str, str]) -> None:
    review = task["id"]
    if "candidates" in task:
        f.add(f.path(index, "loop"), f"{review} has both a loop and candidates: a review that sends work back runs once per "
                                     "round. Put the candidates on another task.", at_key=True)
    for position, fix in enumerate(task["loop"]["fixes"]):
        path = f.path(index, "loop", "fixes", position)
        if fix == review:
            f.add(path, f"a review cannot fix its own findings: name the tasks upstream of {review} that do the work.")
        elif fix not in f.first_seen:
            f.add(path, f.unknown(fix))
        elif f.is_dag and fix not in f.waits_for[review]:
            f.add(path, f"{fix} is not upstream of {review}, so the review never sees its work: a loop's fixes are tasks the "
                        f"review waits for. Add {fix} to {review}'s depends_on, or remove it from fixes.")
        elif fix in fixed_by:
            f.add(path, f"{fix} is already fixed by the loop of {fixed_by[fix]}: a task belongs to one loop.")
        else:
            fixed_by[fix] = review


def _check_candidates(f: Findings, index: int, task: dict) -> None:
    tid = task["id"]
    if "candidates" not in task:
        f.add(f.path(index, "choose"), f"`choose` picks among candidates, and {tid} has none: add `candidates: [claude, codex]` "
                                       "(or {worker: claude, n: 3}), or remove `choose`.", at_key=True)
        return
    if "choose" not in task:
        f.add(f.path(index, "candidates"), f"say how the winner of {tid}'s candidates is chosen: {CHOOSE_HOW}.", at_key=True)
    candidates = task["candidates"]
    workers = candidate_workers(candidates)
    for number in range(1, len(workers) + 1):
        if (taken := f"{tid}.{number}") in f.first_seen:
            f.add(f.path(f.first_seen[taken], "id"), f"'{taken}' is the name of candidate {number} of {tid} in a run: "
                                                     "give this task another id.")
    if isinstance(candidates, dict):
        f.unknown_worker(f.path(index, "candidates", "worker"), candidates["worker"])
    else:
        for position, worker in enumerate(candidates):
            f.unknown_worker(f.path(index, "candidates", position), worker)
    if "shell" in workers and "command" not in task:
        f.add(f.path(index, "candidates"), "a shell candidate needs the task's `command:`.", at_key=True)
    agents = [w for w in workers if w != "shell" and w in f.workers]
    if agents and not any(str(task.get(k, "")).strip() for k in ("description", "prompt", "prompt_file")):
        f.add(f.path(index, "description"), f"task '{tid}' has nothing to do: give its candidates a `description` or a `prompt`.")
    choose = task.get("choose")
    if isinstance(choose, dict) and "review" in choose:
        review = choose["review"]
        path = f.path(index, "choose", "review")
        if review == tid:
            f.add(path, f"{tid} cannot choose among its own candidates: name a review task that depends on {tid}.")
        elif review not in f.first_seen:
            f.add(path, f.unknown(review))
        elif f.is_dag and tid not in f.waits_for[review]:
            f.add(path, f"{review} does not wait for {tid}, so it cannot see the candidates: add {tid} to {review}'s depends_on.")
        elif "candidates" in f.tasks[f.first_seen[review]]:
            f.add(path, f"{review} has candidates of its own: the review that chooses runs once.")
        elif "loop" in f.tasks[f.first_seen[review]]:
            f.add(path, f"{review} has a review loop: the review that chooses answers once, with the winner's number.")
    if "gate" in task:
        f.add(f.path(index, "gate"), f"{tid} has candidates, so its gate would hold a choice not yet made: put the gate on a "
                                     f"task that depends on {tid}.", at_key=True)
    elif isinstance(choose, dict) and "command" in choose:
        f.check_command(f.path(index, "choose", "command"), choose["command"])


def _check_gate(f: Findings, index: int, task: dict) -> None:
    gate = task["gate"]
    if "command" in gate:
        f.check_command(f.path(index, "gate", "command"), gate["command"])
    if f.unique_ids and not f.downstream.get(task["id"]):
        f.warn(f.path(index, "gate"), f"nothing waits for {task['id']}, so its gate holds nothing back: make the tasks that "
                                      f"must wait depend on {task['id']}, or remove the gate.", at_key=True)
