"""Validation of review-and-fix loops, best-of-N candidates with their choice, and gates."""
from __future__ import annotations

from typing import Any

from orchestration.plans import graph
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
    _check_loops_together(f)
    for index, task in enumerate(f.tasks):
        if task["id"] in fixed_by and ("candidates" in task or "loop" in task):
            what = "candidates" if "candidates" in task else "loop"
            f.add(f.path(index, what), f"{task['id']} is fixed by the loop of {fixed_by[task['id']]}, so it cannot also have "
                                       f"{'candidates' if what == 'candidates' else 'a loop of its own'}: a fix runs once per round.",
                  at_key=True)


def _check_loops_together(f: Findings) -> None:
    """Refuse what a run could not carry through: tasks with candidates, or a review choosing
    among them, inside a loop's rounds (a round runs each task again once), a review choosing
    for several tasks, and loops whose reviews wait for each other (a task downstream of a fix
    waits for the review, plans.spec.PlanSpec.dependencies)."""
    if not f.is_dag:
        return
    reviews = [t for t in f.tasks if "loop" in t]
    chooses: dict[str, list[str]] = {}
    for task in f.tasks:
        choose = task.get("choose")
        if "candidates" in task and isinstance(choose, dict) and "review" in choose:
            chooses.setdefault(choose["review"], []).append(task["id"])
    for review, tasks in chooses.items():
        if len(tasks) > 1 and review in f.first_seen:
            f.add(f.path(f.first_seen[tasks[1]], "choose", "review"), f"{review} already chooses among the candidates of "
                  f"{tasks[0]}: a review names one winner. Give {tasks[1]} a review of its own.")
    effective = {t: list(ups) for t, ups in f.upstream.items()}
    for task in reviews:
        fixes = {x for x in task["loop"]["fixes"] if x in f.first_seen}
        members = {t for t in f.waits_for[task["id"]] if t in fixes or fixes & f.waits_for[t]}
        for member in sorted(members):
            row = f.tasks[f.first_seen[member]]
            if "candidates" in row or member in chooses:
                what = "has candidates" if "candidates" in row else "chooses among candidates"
                f.add(f.path(f.first_seen[member], "candidates" if "candidates" in row else "id"),
                      f"{member} {what}, and the loop of {task['id']} runs it again each round: a choice is made once. "
                      f"Move it out of the loop (downstream of {task['id']}).", at_key="candidates" in row)
        for other, ups in effective.items():
            if (other != task["id"] and fixes & f.waits_for[other] and other not in f.waits_for[task["id"]]
                    and task["id"] not in f.waits_for[other]):
                ups.append(task["id"])
    if reviews and (cycle := graph.find_cycle(effective)):
        f.add(f.path(f.first_seen[reviews[0]["id"]], "loop"), f"these loops wait for each other and would never end: "
              f"{' → '.join(cycle)} (a task downstream of a loop's fix waits for its review). Make one review wait for "
              "the other, or join them into one loop.", at_key=True)


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
    if len(tid) + 2 > 100:
        f.add(f.path(index, "id"), f"with candidates, a task id may have at most 98 characters (its candidates are "
                                   f"{tid[:20]}….1, ….2, …); this one has {len(tid)}.")
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
