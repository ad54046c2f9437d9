"""Review-and-fix loops: a review task with `loop: {fixes, max_rounds}` sends work back.

A review answers APPROVE, REQUEST_CHANGES or REJECT on its answer's first line (the seed's
quality-control reviewer, prompts/orchestrator/quality-control.md). When it succeeds:

- APPROVE: the loop ends well; the review succeeds and what waits for it may start (through its
  gate first, if it has one).
- REQUEST_CHANGES, before `max_rounds` reviews: a new round. The review goes back to pending;
  its `fixes` run again (succeeded -> queued) with the review's findings added to their prompt,
  each continuing from its own branch (engine.executor); the tasks between the fixes and the
  review run again after them (-> pending); then the review runs again.
- REJECT, REQUEST_CHANGES at the last round, or no verdict: the loop fails, and says so; what
  waits for the review is skipped.

Each round is kept (models.LoopRound): its verdict and findings, the attempt of each task in it,
its cost, and each task's diff against the round before (models.RoundChange). Everything is
rows, written in the transaction that records the review's end, so a loop survives worker
restarts like any other work. Tasks downstream of a fix that the review does not wait for wait
for the review (plans.spec.PlanSpec.dependencies), so nothing builds on unreviewed work.
"""
from __future__ import annotations

import re

from django.db.models import F
from django.utils import timezone

from orchestration.engine import work
from orchestration.models import LoopRound, RoundChange, TaskChange, TaskRun, TaskState
from orchestration.plans.spec import REVIEW_VERDICTS, PlanSpec

MAX_FINDINGS = 20_000  # characters of a review's answer handed to the fixes' prompts


def verdict_of(result: str) -> str:
    """APPROVE, REQUEST_CHANGES or REJECT: the first word of a review's answer, read leniently
    ("**Approve.**", "request changes:"); "" when it is none of them."""
    first = result.strip().splitlines()[0] if result.strip() else ""
    word = re.sub(r"[^A-Z_ ]", "", first.upper()).strip()
    for verdict in REVIEW_VERDICTS:
        if word.startswith(verdict) or word.startswith(verdict.replace("_", " ")):
            return verdict
    return ""


def round_tasks(spec: PlanSpec, review: str) -> list[str]:
    """The tasks a new round of `review`'s loop runs again, in plan order: its fixes, and every
    task between a fix and the review (downstream of a fix, upstream of the review)."""
    loop = spec.task(review).loop
    fixes = set(loop.fixes)
    between = {t for t in spec.ancestors[review] if fixes & spec.ancestors[t]}
    return [t for t in spec.ids if t in fixes or t in between]


def review_ended(task_run: TaskRun, owner: str, attempt: int, spec: PlanSpec, fields: dict) -> tuple[str, str] | None:
    """Decide what the successful attempt of review `task_run` (a task with a loop) means, in the
    caller's transaction, and record the round. Returns None when the loop ends well (the caller
    then records the success as usual), else (state, reason) written already: ("pending", …) for
    a new round, ("failed", …) when the loop failed. Writes nothing and returns ("", "") when
    `owner` no longer holds the review as `attempt`."""
    task = spec.task(task_run.task_id)
    result = fields.get("result", "")
    verdict = verdict_of(result)
    number = LoopRound.objects.filter(run_id=task_run.run_id, review=task.id).count() + 1
    members = round_tasks(spec, task.id)
    now = timezone.now()
    if verdict == "APPROVE":
        _record_round(task_run, number, verdict, result, members, now, fields.get("cost_usd"))
        return None
    if verdict == "REQUEST_CHANGES" and number < task.loop.max_rounds:
        reason = f"round {number} asked for changes; {', '.join(task.loop.fixes)} fix them, then round {number + 1}"
        # Its next review is a new attempt, not one of its retries: one more attempt allowed.
        own = (f"## Your review in round {number}\n{result.strip()[:MAX_FINDINGS]}\n\n{', '.join(task.loop.fixes)} ran again "
               "with these findings: check whether they are addressed now.")
        if not work.finish(task_run, owner, attempt, TaskState.PENDING, reason, claimed_by="", queued_at=None,
                           max_attempts=F("max_attempts") + 1, **{**fields, "findings": own}):
            return "", ""
        _record_round(task_run, number, verdict, result, members, now, fields.get("cost_usd"))
        findings = (f"## Review findings from {task.id} (round {number})\n{result.strip()[:MAX_FINDINGS]}\n\n"
                    "Fix what the review asks for. Your earlier work is in your working directory (your branch continues "
                    "from it): change it, do not start over.")
        for member in TaskRun.objects.filter(run_id=task_run.run_id, task_id__in=members, state=TaskState.SUCCEEDED):
            fix = member.task_id in task.loop.fixes
            member.transition(TaskState.QUEUED if fix else TaskState.PENDING, f"round {number + 1} of the loop of {task.id}",
                              expect=TaskState.SUCCEEDED, findings=findings if fix else "", queued_at=now if fix else None,
                              finished_at=None, max_attempts=F("max_attempts") + 1)
        return TaskState.PENDING, reason
    if verdict == "REJECT":
        reason = f"the review loop failed: {task.id} answered REJECT in round {number}"
    elif verdict == "REQUEST_CHANGES":
        reason = (f"the review loop failed: {task.id} still asked for changes after {number} round(s) "
                  f"(max_rounds: {task.loop.max_rounds})")
    else:
        reason = (f"the review loop failed: {task.id} gave no verdict in round {number} (its answer must start with "
                  "APPROVE, REQUEST_CHANGES or REJECT)")
    if not work.finish(task_run, owner, attempt, TaskState.FAILED, reason, finished_at=now, **{**fields, "error": reason}):
        return "", ""
    _record_round(task_run, number, verdict, result, members, now, fields.get("cost_usd"))
    return TaskState.FAILED, reason


def _record_round(review: TaskRun, number: int, verdict: str, findings: str, members: list[str], now,
                  review_cost: float | None) -> LoopRound:
    """Store round `number` of `review`'s loop: the attempt and cost of each task in it (the
    review's included), and a copy of each member's captured change (its diff against the
    round before, since a fix continues from its own branch). review_cost: the review's
    attempt's cost in USD (not stored on its row yet)."""
    rows = {t.task_id: t for t in TaskRun.objects.filter(run_id=review.run_id, task_id__in=[*members, review.task_id])
            .only("task_id", "attempt", "cost_usd")}
    rows[review.task_id].cost_usd = review_cost
    costs = [t.cost_usd for t in rows.values() if t.cost_usd is not None]
    loop_round = LoopRound.objects.create(
        run_id=review.run_id, review=review.task_id, number=number, verdict=verdict, findings=findings[:MAX_FINDINGS],
        attempts={task: row.attempt for task, row in rows.items()}, cost_usd=sum(costs) if costs else None, decided_at=now)
    copied = [RoundChange(round=loop_round, task_id=change.task_run.task_id, start_commit=change.start_commit,
                          head_commit=change.head_commit, files=change.files, patch=change.patch,
                          patch_truncated=change.patch_truncated, lines_added=change.lines_added, lines_deleted=change.lines_deleted)
              for change in TaskChange.objects.filter(task_run__run_id=review.run_id, task_run__task_id__in=members)
              .select_related("task_run")]
    RoundChange.objects.bulk_create(copied)
    return loop_round
