"""Best-of-N candidates: a task with `candidates:` runs once per candidate, and one is chosen.

A run of such a task T has a task run per candidate, `T.1`, `T.2`, … (candidate_of = T), each
with its worker, the task's prompt or command, its own worktree and branch, run in parallel like
any task; and the task run T itself, which runs nothing: it waits for its candidates, then is
`waiting` while the winner is chosen (`choose:`):

- review: the review task that depends on T runs now (T waiting counts as done for it), with
  every candidate's result and diff in its prompt; the number on its answer's first line names
  the winner (`chosen_by_review`).
- command: a check (a Verdict of kind "choice") runs the command in each candidate's work
  directory, in order: the first to pass wins, or with `score`, the highest number printed on
  the last line of its output (engine.verification).
- person: an Operator picks one on the run page (`choose`).

This module makes the rows and starts the choice (the scheduler's side); engine.choosing makes
it. T then succeeds with the winner's result and branch (its TaskChange is a copy of the winner's),
so downstream tasks get them as if T had run once; its state_reason says which candidate won and
why. No candidate succeeding fails T. Everything is rows: a choice survives worker restarts.
"""
from __future__ import annotations

import shlex

from orchestration.engine import webhooks
from orchestration.engine.signals import wake_engine_on_commit
from orchestration.models import TASK_TERMINAL, Run, TaskRun, TaskState, Verdict
from orchestration.plans.spec import PlanSpec


def candidate_id(task_id: str, number: int) -> str:
    """The task run id of candidate `number` (1-based) of task `task_id`: "ui.2"."""
    return f"{task_id}.{number}"


def candidate_number(task_id: str) -> int:
    """The number of candidate task run `task_id` ("ui.2" -> 2): the order candidates are shown in."""
    return int(task_id.rsplit(".", 1)[1])


def rows_for(spec: PlanSpec, task_id: str) -> list[dict]:
    """The fields of the task runs a run makes for task `task_id` with candidates, besides the
    task run of the task itself: [{"task_id", "worker", "candidate_of"}] in candidate order."""
    workers = spec.task(task_id).candidates.workers
    return [{"task_id": candidate_id(task_id, n), "worker": worker, "candidate_of": task_id} for n, worker in enumerate(workers, 1)]


def downstream_rows(spec: PlanSpec, task_id: str) -> list[str]:
    """The task runs that wait for `task_id` directly: its downstream tasks, with each task that
    has candidates standing for its candidates' task runs (they, not it, wait for `task_id`)."""
    rows: list[str] = []
    for down in spec.downstream(task_id):
        candidates = spec.task(down).candidates
        rows += [candidate_id(down, n) for n in range(1, len(candidates.workers) + 1)] if candidates else [down]
    return rows


def ready_to_choose(choice: TaskRun, candidates: list[TaskRun]) -> bool:
    """Whether pending choice row `choice` can move on: every candidate has ended."""
    return choice.state == TaskState.PENDING and bool(candidates) and all(c.state in TASK_TERMINAL for c in candidates)


def start_choosing(spec: PlanSpec, choice: TaskRun, candidates: list[TaskRun], now) -> bool:
    """Once its candidates have ended, in the caller's transaction: fail the choice when none
    succeeded, else move it to waiting and start the choice its `choose:` names (a check for a
    command; the review is queued by the scheduler; a person decides on the run page). True
    when it changed."""
    task = spec.task(choice.task_id)
    succeeded = [c for c in candidates if c.state == TaskState.SUCCEEDED]
    if not succeeded and all(c.state in (TaskState.SKIPPED, TaskState.CANCELLED) for c in candidates):
        # None ran: an upstream task did not succeed (or they were cancelled): skipped as they were.
        state = TaskState.SKIPPED if any(c.state == TaskState.SKIPPED for c in candidates) else TaskState.CANCELLED
        return choice.transition(state, candidates[0].state_reason, expect=TaskState.PENDING, finished_at=now)
    if not succeeded:
        reason = f"no candidate succeeded ({', '.join(f'{c.task_id} {c.state}' for c in candidates)})"
        return choice.transition(TaskState.FAILED, reason, expect=TaskState.PENDING, error=reason, finished_at=now)
    choose = task.candidates.choose
    how = {"review": f"{choose.review} chooses", "person": "an Operator chooses",
           "command": f"{shlex.join(choose.command or [])} decides"}[choose.way]
    if not choice.transition(TaskState.WAITING, f"choosing among {len(succeeded)} candidate(s): {how}", expect=TaskState.PENDING,
                             started_at=min(c.started_at for c in succeeded if c.started_at) if any(c.started_at for c in succeeded) else now):
        return False
    if choose.way == "person":
        webhooks.enqueue(Run.objects.select_related("plan").get(pk=choice.run_id), "run.waiting", task.id,
                         f"choose among {len(succeeded)} candidates of {task.id}")
    if choose.way == "command":
        fresh_check(choice.run_id, "choice", spec.ids.index(task.id), f"choice among the candidates of {task.id}: {shlex.join(choose.command)}")
    return True


def fresh_check(run_id: int, kind: str, position: int, name: str) -> None:
    """A pending check (Verdict) of `kind` at `position` for a worker process to claim, in the
    caller's transaction, replacing the one an earlier round of a review loop decided (a gate's
    or a choice's check runs again on the new work)."""
    Verdict.objects.filter(run_id=run_id, kind=kind, position=position).delete()
    Verdict.objects.create(run_id=run_id, kind=kind, position=position, name=name[:500])
    wake_engine_on_commit()

