"""Gates: a task with `gate:` holds everything downstream of it once its work succeeds.

The task run goes from running to WAITING (its result and changes kept, no worker slot held)
until a person with the Operator role approves or rejects it in the browser (an approval gate),
or its check command passes or fails (a check gate: a Verdict of kind "gate", claimed and run
by a worker process like any check, engine.verification). Approval moves it to succeeded and its
downstream tasks are queued; rejection fails it, and its downstream tasks are skipped with a
reason that names the gate. An approval gate with a `timeout` is rejected once it has waited
that long (`expire`, from the engine's sweep). Everything is rows in the database, so a run
waiting at a gate survives any worker restart.
"""
from __future__ import annotations

import shlex

from django.db import transaction
from django.utils import timezone

from orchestration import audit
from orchestration.engine import candidates, revisions, scheduler, webhooks, work
from orchestration.engine.output import storable
from orchestration.engine.signals import notify_run_on_commit, wake_engine_on_commit
from orchestration.models import GATE_REJECTED, CheckState, Run, TaskRun, TaskState, Verdict
from orchestration.plans.spec import Gate, PlanSpec

REJECTED = GATE_REJECTED


def waiting_reason(gate: Gate) -> str:
    """What a task run waiting at `gate` says (its state_reason)."""
    if gate.command:
        return f"waiting at its gate: the check {shlex.join(gate.command)} runs" + (f" ({gate.message})" if gate.message else "")
    return "waiting at its gate for an Operator's approval" + (f": {gate.message}" if gate.message else "")


def hold(task_run: TaskRun, owner: str, attempt: int, spec: PlanSpec, fields: dict) -> bool:
    """The final write of a successful attempt of a task with a gate, in the caller's
    transaction: running -> waiting, with the attempt's `fields` (result, cost, …), only while
    `owner` holds it as `attempt` (engine.work.finish). A check gate's Verdict is created to be
    claimed. False when `owner` no longer holds it."""
    task = spec.task(task_run.task_id)
    if not work.finish(task_run, owner, attempt, TaskState.WAITING, waiting_reason(task.gate), finished_at=timezone.now(),
                       claimed_by="", **fields):
        return False
    if task.gate.approve:
        webhooks.enqueue(Run.objects.select_related("plan").get(pk=task_run.run_id), "run.waiting", task.id,
                         waiting_reason(task.gate))
    if task.gate.command:
        candidates.fresh_check(task_run.run_id, "gate", spec.ids.index(task.id), f"gate after {task.id}: {shlex.join(task.gate.command)}")
    notify_run_on_commit(task_run.run_id)
    return True


def decide(task_run_id: int, approved: bool, reason: str) -> bool:
    """Approve (waiting -> succeeded, its downstream tasks queued) or reject (waiting -> failed,
    its downstream tasks skipped) the gate of a waiting task run, in one transaction; `reason`
    is recorded in its History. False when it was not waiting (decided already, or cancelled)."""
    with transaction.atomic():
        task_run = TaskRun.objects.select_related("run__revision").get(pk=task_run_id)
        reason = storable(reason)
        if approved:
            if not task_run.transition(TaskState.SUCCEEDED, reason, expect=TaskState.WAITING):
                return False
            spec = revisions.spec_of(task_run.run.revision_id)
            scheduler.advance_after(task_run.run_id, task_run.task_id, candidates.downstream_rows(spec, task_run.task_id))
            wake_engine_on_commit()  # what waited for the gate starts now, not at the next sweep
        else:
            if not task_run.transition(TaskState.FAILED, reason, expect=TaskState.WAITING, error=reason):
                return False
            scheduler.advance_run(task_run.run_id)
        notify_run_on_commit(task_run.run_id)
    return True


def decider(user, comment: str) -> tuple[str, str]:
    """(who decided, their comment as stored) of a person's decision at a gate or a choice."""
    who = user.get_username() if user is not None and user.is_authenticated else "Magic Box"
    return who, storable(comment.strip())


def decide_by(task_run: TaskRun, user, approved: bool, comment: str = "") -> bool:
    """A person's decision on the approval gate of waiting `task_run`, recorded in its History
    and the audit trail ("gate approved by alice: looks right"). The caller checks the Operator
    role. False when it is not waiting at an approval gate (a check gate is decided by its
    check, a choice among candidates by its way of choosing)."""
    task = revisions.spec_of(task_run.run.revision_id).by_id.get(task_run.task_id)
    if task is None or not (task.gate and task.gate.approve) or task.candidates:
        return False
    who, comment = decider(user, comment)
    reason = f"gate {'approved' if approved else 'rejected'} by {who}" + (f": {comment}" if comment else "")
    with transaction.atomic():
        if not decide(task_run.pk, approved, reason):
            return False
        audit.record(audit.Action.GATE_APPROVED if approved else audit.Action.GATE_REJECTED, user, run=task_run.run,
                     detail=f"{task_run.task_id}" + (f": {comment}" if comment else ""))
    return True


def checked(verdict: Verdict) -> bool:
    """Decide the gate whose check `verdict` (kind "gate") has just been decided: passed
    approves it, anything else rejects it. False when its task run was not waiting."""
    spec = verdict.run.revision.spec
    task_id = spec.ids[verdict.position]
    task_run = TaskRun.objects.only("pk").get(run_id=verdict.run_id, task_id=task_id)
    if verdict.state == CheckState.PASSED:
        return decide(task_run.pk, True, f"gate check passed: {verdict.summary}")
    return decide(task_run.pk, False, f"{REJECTED}: its check failed ({verdict.summary})")


def expire() -> int:
    """Reject the approval gates that have waited longer than their `timeout` (seconds since the
    task's work ended). Returns how many were rejected."""
    now = timezone.now()
    rejected = 0
    waiting = TaskRun.objects.filter(state=TaskState.WAITING).values_list("pk", "task_id", "finished_at", "run__revision_id")
    for pk, task_id, finished_at, revision_id in waiting:
        task = revisions.spec_of(revision_id).by_id.get(task_id)
        gate = task.gate if task else None
        if gate and gate.approve and gate.timeout and finished_at and (now - finished_at).total_seconds() > gate.timeout:
            rejected += decide(pk, False, f"{REJECTED}: no decision within {gate.timeout:g} s")
    return rejected


APPROVERS_SHOWN = 20


def approvers() -> list[str]:
    """Usernames of the active users who may decide an approval gate (the Operator role:
    orchestration.operate_run, directly, through a group, or as superusers), at most
    APPROVERS_SHOWN of them, sorted."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.with_perm("orchestration.operate_run", is_active=True,
                                               backend="django.contrib.auth.backends.ModelBackend")
    return sorted(u.get_username() for u in users[:APPROVERS_SHOWN])

