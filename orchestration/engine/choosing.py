"""Choosing the winner among a task's candidates (engine.candidates): by a review's answer, a
check's verdict, or a person; then the task succeeds as the winner."""
from __future__ import annotations

import re

from django.db import transaction
from django.utils import timezone

from orchestration import audit
from orchestration.engine import candidates, gates, revisions, scheduler
from orchestration.engine.candidates import candidate_id
from orchestration.engine.signals import notify_run_on_commit, wake_engine_on_commit
from orchestration.models import TaskChange, TaskRun, TaskState, Verdict
from orchestration.plans.spec import PlanSpec

BRIEF_RESULT = 6000  # characters of each candidate's result shown to a choosing review
BRIEF_PATCH = 12000  # characters of each candidate's diff shown to it


def choose(choice_id: int, winner_id: str, reason: str) -> bool:
    """Make candidate `winner_id` the result of waiting choice row `choice_id`, in one
    transaction: its result and cost (every candidate's together) and a copy of its captured
    change become the task's, the task succeeds with `reason`, and what waits for it is queued.
    False when the choice is not waiting any more or `winner_id` is not a succeeded candidate of it."""
    with transaction.atomic():
        choice = TaskRun.objects.select_related("run").get(pk=choice_id)
        rows = {c.task_id: c for c in TaskRun.objects.filter(run_id=choice.run_id, candidate_of=choice.task_id)}
        winner = rows.get(winner_id)
        if choice.state != TaskState.WAITING or winner is None or winner.state != TaskState.SUCCEEDED:
            return False
        costs = [c.cost_usd for c in rows.values() if c.cost_usd is not None]
        if not choice.transition(TaskState.SUCCEEDED, reason, expect=TaskState.WAITING, result=winner.result,
                                 cost_usd=sum(costs) if costs else None, session_id=winner.session_id,
                                 cli_version=winner.cli_version, model=winner.model, worker=winner.worker,
                                 finished_at=timezone.now()):
            return False
        change = TaskChange.objects.filter(task_run=winner).first()
        if change is not None:
            change.pk, change.task_run = None, choice
            TaskChange.objects.filter(task_run=choice).delete()
            change.save()
        spec = revisions.spec_of(choice.run.revision_id)
        scheduler.advance_after(choice.run_id, choice.task_id, candidates.downstream_rows(spec, choice.task_id))
        notify_run_on_commit(choice.run_id)
        wake_engine_on_commit()  # what waited for the choice starts now
    return True


def choose_by(choice: TaskRun, user, winner_id: str, comment: str = "") -> bool:
    """A person's pick among the candidates of waiting `choice`, recorded in its History and the
    audit trail. The caller checks the Operator role. False unless its `choose:` is person (a
    review's or a command's choice is theirs) and `winner_id` is a succeeded candidate of it."""
    task = revisions.spec_of(choice.run.revision_id).by_id.get(choice.task_id)
    if task is None or not task.candidates or not task.candidates.choose.person:
        return False
    who, comment = gates.decider(user, comment)
    reason = f"chose {winner_id}: picked by {who}" + (f": {comment}" if comment else "")
    with transaction.atomic():
        if not choose(choice.pk, winner_id, reason):
            return False
        audit.record(audit.Action.CANDIDATE_CHOSEN, user, run=choice.run, detail=f"{choice.task_id}: {winner_id}"
                     + (f": {comment}" if comment else ""))
    return True


def named_candidate(answer: str, task_id: str, count: int) -> int | None:
    """The candidate number a choosing review's answer names on its first line ("2", "candidate
    2", "ui.2", "Winner: #2"), or None."""
    first = answer.strip().splitlines()[0] if answer.strip() else ""
    found = re.search(rf"(?:{re.escape(task_id)}\.|#|(?<![-.0-9]))([0-9]{{1,3}})(?![.0-9])", first)
    number = int(found.group(1)) if found else None
    return number if number is not None and 1 <= number <= count else None


def chosen_by_review(run_id: int, review_id: str, answer: str, spec: PlanSpec) -> None:
    """After review `review_id` succeeded, in the caller's transaction: resolve every waiting
    choice it chooses for, by the candidate its answer names (or fail it, saying how to answer)."""
    for task in map(spec.task, spec.chooses_for(review_id)):
        choice = TaskRun.objects.filter(run_id=run_id, task_id=task.id, state=TaskState.WAITING).first()
        if choice is None:
            continue
        number = named_candidate(answer, task.id, len(task.candidates.workers))
        winner = candidate_id(task.id, number) if number else ""
        first_line = answer.strip().splitlines()[0][:300] if answer.strip() else ""
        if not (number and choose(choice.pk, winner, f"chose {winner}: named by {review_id}: {first_line}")):
            reason = (f"{review_id} named no succeeded candidate of {task.id} on its answer's first line "
                      f"({first_line!r}): it must start with the winner's number, 1 to {len(task.candidates.workers)}")
            if choice.transition(TaskState.FAILED, reason, expect=TaskState.WAITING, error=reason, finished_at=timezone.now()):
                scheduler.advance_run(run_id)  # what waits for the task is skipped


def brief(run_id: int, spec: PlanSpec, review_id: str) -> str:
    """What a choosing review is shown: for each task whose candidates it chooses among, every
    candidate's worker, state, result and diff (capped), and how to answer. "" when it chooses
    for none."""
    parts = []
    for task in map(spec.task, spec.chooses_for(review_id)):
        rows = list(TaskRun.objects.filter(run_id=run_id, candidate_of=task.id).order_by("task_id"))
        changes = {c.task_run_id: c for c in TaskChange.objects.filter(task_run__in=rows)}
        lines = [f"## Candidates of {task.id}",
                 f"{len(rows)} candidates did task {task.id} in parallel, each on its own branch. Choose the best: start your "
                 f"answer with its number alone on the first line (e.g. `1`), then say why."]
        for number, row in enumerate(sorted(rows, key=lambda r: candidates.candidate_number(r.task_id)), 1):
            lines.append(f"### Candidate {number} ({row.task_id}, {row.worker}): {row.state}")
            if row.state == TaskState.SUCCEEDED:
                lines.append(f"Result:\n{row.result.strip()[:BRIEF_RESULT] or '(empty)'}")
                if (change := changes.get(row.pk)) is not None:
                    lines.append(f"Diff (+{change.lines_added} −{change.lines_deleted}):\n```diff\n{change.patch[:BRIEF_PATCH]}\n```")
            else:
                lines.append(f"It did not succeed: {row.error.strip()[:500]}")
        parts.append("\n\n".join(lines))
    return "\n\n".join(parts)


def checked(verdict: Verdict, winner: str) -> bool:
    """Decide the choice whose command check `verdict` (kind "choice") has just been decided:
    `winner` (a candidate's task id) wins, or with none the task fails. False when the task was
    not waiting for it."""
    task_id = revisions.spec_of(verdict.run.revision_id).ids[verdict.position]
    choice = TaskRun.objects.get(run_id=verdict.run_id, task_id=task_id)
    if winner:
        return choose(choice.pk, winner, f"chose {winner}: {verdict.summary}")
    if choice.state != TaskState.WAITING:
        return False
    reason = f"no candidate was chosen: {verdict.summary}"
    if not choice.transition(TaskState.FAILED, reason, expect=TaskState.WAITING, error=reason, finished_at=timezone.now()):
        return False
    scheduler.advance_run(choice.run_id)
    return True

