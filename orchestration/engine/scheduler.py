"""The scheduler: create runs, release tasks whose upstream tasks succeeded, claim work, end runs.

All functions here are synchronous and transactional; the database is the source of truth.
A task is queued the moment every upstream task has succeeded (not phase by phase), and
skipped, naming the failed upstream task, the moment one of them did not succeed.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, router, transaction
from django.utils import timezone

from orchestration import audit, direct_sql
from orchestration.engine import candidates, checks, homes, revisions, webhooks, work
from orchestration.engine.signals import notify_run_on_commit, wake_engine_on_commit
from orchestration.models import (
    GATE_REJECTED,
    KEPT_FROM,
    RUN_TERMINAL,
    TASK_TERMINAL,
    TASK_UNSUCCESSFUL,
    CheckState,
    EngineLock,
    OutputChunk,
    Plan,
    PlanRevision,
    Run,
    RunState,
    TaskChange,
    TaskRun,
    TaskState,
)
from orchestration.plans import inputs as plan_inputs
from orchestration.plans import repositories
from orchestration.plans.spec import PlanSpec
from orchestration.workers.registry import UnknownWorker, worker_config


def start_run(plan: Plan, user: AbstractBaseUser | None = None, worker_map: dict[str, str] | None = None,
              revision: PlanRevision | None = None, via: str = "", inputs: dict[str, object] | None = None) -> Run:
    """Create a run of the plan's latest revision (or `revision`) and its task runs; wake the engine.

    worker_map: {"gemini": "claude"} runs the plan's gemini tasks with the claude worker.
    The start is audited as `user`'s (or the command `via` names). Raises UnknownWorker if the map names a worker that is not configured,
    or maps a worker none of the plan's tasks has,
    and plans.repositories.RepositoryRefused (a ValueError) if neither `user` nor the revision's author may use its local
    repository path (it is outside MAGICBOX_REPOSITORY_ROOTS: a plan stored before the check, or since the roots changed).
    inputs: {name: value} for the plan's `inputs:`; raises plans.inputs.InputsRefused (a ValueError) for a required one
    missing or one the plan does not declare.
    """
    revision = revision or plan.latest_revision
    repositories.check_run(revision.spec.workspace, user, revision.created_by)
    values = plan_inputs.resolve(revision.spec, inputs)
    worker_map = {k: v for k, v in (worker_map or {}).items() if k != v}
    for target in worker_map.values():
        worker_config(target)
    used = {row["worker"] for row in task_run_fields(revision.spec, {})} if worker_map else set()
    if unused := sorted(set(worker_map) - used):
        raise UnknownWorker(f"the plan has no {', '.join(map(repr, unused))} tasks to map to another worker "
                            f"(its workers: {', '.join(sorted(used))})")
    with transaction.atomic():
        run = Run.objects.create(plan=plan, revision=revision, started_by=user, worker_map=worker_map, inputs=values)
        TaskRun.objects.bulk_create([TaskRun(run=run, **fields) for fields in task_run_fields(revision.spec, worker_map)])
        checks.create_verdicts(run)
        mapped = ", ".join(f"{k} tasks with {v}" for k, v in worker_map.items())
        audit.record(audit.Action.RUN_STARTED, user, run=run, via=via,
                     detail=f"revision {revision.number}" + (f"; running {mapped}" if mapped else ""))
        advance_run(run.pk)
        wake_engine_on_commit()
    return run


def task_run_fields(spec: PlanSpec, worker_map: dict[str, str]) -> list[dict]:
    """The fields of every task run a run of `spec` has, in plan order: one per task, and for a
    task with candidates, one per candidate after it (engine.candidates), the task's own waiting
    for them. worker_map: {worker: the worker that runs its tasks instead}."""
    rows = []
    for index, task in enumerate(spec.tasks):
        common = {"position": index, "max_attempts": 1 + task.retries, "timeout": task.timeout}
        if not task.candidates:
            rows.append({"task_id": task.id, "worker": worker_map.get(task.worker, task.worker), "upstream": spec.upstream(task.id), **common})
            continue
        own = candidates.rows_for(spec, task.id)
        rows.append({"task_id": task.id, "worker": worker_map.get(task.worker, task.worker),
                     "upstream": [c["task_id"] for c in own], **common, "max_attempts": 1})
        rows += [{**c, "worker": worker_map.get(c["worker"], c["worker"]), "upstream": spec.upstream(task.id), **common} for c in own]
    return rows


_KEPT_FIELDS = ("state", "result", "error", "exit_code", "cost_usd", "input_tokens", "output_tokens", "session_id",
                "cli_version", "model", "attempt", "interruptions", "worker_losses", "queued_at", "started_at", "finished_at",
                "prompt", "output_seq", "output_bytes")


def rerun_selection(run: Run, task_id: str | None = None) -> list[str]:
    """The ids of the tasks a rerun(run, task_id) runs again, in plan order.

    Without task_id: every task that did not succeed and every task that waits for one
    (transitively); with it: that task and every task that waits for it, nothing else.
    Raises ValueError for a task the run does not have.
    """
    spec = run.revision.spec
    rows = list(run.task_runs.values_list("task_id", "state", "candidate_of"))
    states = {t: state for t, state, _ in rows}
    of = {t: candidate_of or t for t, _, candidate_of in rows}  # a candidate is redone with its task
    if task_id is not None:
        if task_id not in states:
            raise ValueError(f"run #{run.pk} has no task {task_id!r}: retry one of {', '.join(sorted(states))}")
        roots = {of[task_id]}
    else:
        roots = {of[t] for t, state in states.items() if state != TaskState.SUCCEEDED and states.get(of[t]) != TaskState.SUCCEEDED}
    redo = roots | {t for t, ups in spec.ancestors.items() if roots & ups}
    return [t for t in spec.ids if t in redo]


def rerun(run: Run, user: AbstractBaseUser | None = None, task_id: str | None = None, via: str = "") -> Run:
    """A new run of the same revision that redoes exactly rerun_selection(run, task_id) and keeps the rest.

    Without task_id: the tasks that did not succeed and what waits for them (as GitHub Actions'
    "re-run failed jobs"); with it: that task and everything downstream of it. Every other task is
    copied as it ended (succeeded, failed, cancelled or skipped), with its result, output and code
    changes, its state_reason starting "kept from run #N". Raises ValueError for a task the run does
    not have, or a run that has not ended, and RepositoryRefused (a ValueError) as start_run does.
    """
    if not run.is_finished:
        raise ValueError(f"run #{run.pk} is still {run.state}: cancel it or wait for it to end before re-running it")
    repositories.check_run(run.revision.spec.workspace, user, run.revision.created_by)
    redo = rerun_selection(run, task_id)
    old = {t.task_id: t for t in run.task_runs.all()}
    spec = run.revision.spec
    with transaction.atomic():
        new = Run.objects.create(plan=run.plan, revision=run.revision, started_by=user, worker_map=run.worker_map, rerun_of=run,
                                 inputs=run.inputs,
                                 base_commit=run.base_commit)  # the same starting point as the kept tasks
        rows = []
        for fields in task_run_fields(spec, {}):
            before = old.get(fields["task_id"])
            row = TaskRun(run=new, **{**fields, "worker": before.worker if before else fields["worker"]})
            if before is not None and (fields.get("candidate_of") or row.task_id) not in redo:
                for field in _KEPT_FIELDS:
                    setattr(row, field, getattr(before, field))
                row.state_reason = f"{KEPT_FROM}{run.pk}" + (f": {before.state_reason}" if before.state_reason else "")
            rows.append(row)
        TaskRun.objects.bulk_create(rows)
        for row in new.task_runs.exclude(task_id__in=redo).exclude(candidate_of__in=redo):
            chunks = old[row.task_id].output_chunks.order_by("seq")
            OutputChunk.objects.bulk_create(
                [OutputChunk(task_run=row, seq=c.seq, attempt=c.attempt, text=c.text, newlines=c.newlines) for c in chunks.iterator(chunk_size=200)],
                batch_size=200)
            change = TaskChange.objects.filter(task_run=old[row.task_id]).first()
            if change is not None:  # downstream tasks start from its branch's head, as in the first run
                change.pk, change.task_run = None, row
                change.save()
        checks.create_verdicts(new)
        detail = f"of run #{run.pk}: redoing {', '.join(redo) or 'nothing'}"
        if task_id is None:
            audit.record(audit.Action.RUN_RERUN, user, run=new, detail=detail, via=via)
        else:
            audit.record(audit.Action.TASK_RETRIED, user, run=new, detail=f"{task_id} {detail}; every other task kept as it ended", via=via)
        advance_run(new.pk)
        wake_engine_on_commit()
    return new


def advance_run(run_id: int) -> bool:
    """Queue or skip pending tasks by their upstream states; start or finish the run.

    Idempotent; safe to call from any process at any time. Returns True if anything changed.
    """
    now = timezone.now()
    changed = False
    with transaction.atomic():
        run = Run.objects.get(pk=run_id)
        if run.state in RUN_TERMINAL:
            return False
        task_runs = list(run.task_runs.all())
        by_id = {t.task_id: t for t in task_runs}
        # Tasks with candidates: their task runs wait for their candidates, then for a choice.
        choosing = {t.candidate_of for t in task_runs if t.candidate_of}
        spec = revisions.spec_of(run.revision_id) if choosing else None
        chooser = {task: spec.task(task).candidates.choose.review for task in choosing}
        progress = True
        while progress:
            progress = False
            for task_run in task_runs:
                if task_run.task_id in choosing:
                    if _advance_choice(spec, task_run, [by_id[c] for c in task_run.upstream if c in by_id],
                                       by_id.get(chooser[task_run.task_id]), now):
                        progress = changed = True
                    continue
                if task_run.state != TaskState.PENDING:
                    continue
                upstream = [by_id[u] for u in task_run.upstream if u in by_id]
                blocked = next((u for u in upstream if u.state in TASK_UNSUCCESSFUL), None)
                if blocked is not None:
                    root = blocked.task_id if blocked.state != TaskState.SKIPPED else _root_cause(blocked)
                    reason = _gate_skip_reason(blocked) or f"upstream task '{root}' did not succeed"
                    if blocked.state == TaskState.CANCELLED:
                        if task_run.transition(TaskState.CANCELLED, f"upstream task '{blocked.task_id}' was cancelled",
                                               expect=TaskState.PENDING, finished_at=now):
                            progress = changed = True
                    elif task_run.transition(TaskState.SKIPPED, reason, expect=TaskState.PENDING, finished_at=now):
                        task_run.skip_root = root
                        progress = changed = True
                elif all(u.state == TaskState.SUCCEEDED or (u.state == TaskState.WAITING and chooser.get(u.task_id) == task_run.task_id)
                         for u in upstream):  # a review that chooses among candidates starts once they have ended
                    if task_run.transition(TaskState.QUEUED, expect=TaskState.PENDING, queued_at=now):
                        progress = changed = True
        states = [t.state for t in task_runs]
        if run.state == RunState.QUEUED and any(s != TaskState.PENDING for s in states):
            if run.transition(RunState.RUNNING, started_at=now):
                changed = True
                webhooks.enqueue(run, "run.started")
        if all(s in TASK_TERMINAL for s in states):
            if checks.prepare(run, task_runs):
                if _finish(run, task_runs, now):
                    changed = True
                    _discard_homes_on_commit(run_id)
                    webhooks.enqueue(run, f"run.{run.state}")
            else:
                notify_run_on_commit(run_id)
                if run.verdicts.filter(state=CheckState.PENDING).exists():
                    wake_engine_on_commit()  # its checks that need a worker process can be claimed now
        if changed:
            notify_run_on_commit(run_id)
    return changed


def advance_after(run_id: int, task_id: str, downstream: list[str]) -> bool:
    """advance_run for a task run that has just succeeded, reading only what that can change:
    queue the tasks of `downstream` (the ids of the tasks that wait for `task_id`) whose
    upstream tasks have all succeeded; when none is left to run, end the run (advance_run).

    Call it inside the transaction that recorded the success. Idempotent and safe from any
    process, as advance_run: a task is queued by one conditional update, whoever gets there
    first. Its cost does not grow with the run's size. Returns True if anything changed.
    """
    now = timezone.now()
    changed = False
    # Read directly (orchestration.direct_sql): every task's end reads them.
    waiting = direct_sql.rows(TaskRun, {"run_id": run_id, "task_id__in": downstream, "state": TaskState.PENDING},
                              ("run_id", "task_id", "upstream", "state"))
    if waiting:
        others = {u for t in waiting for u in t.upstream} - {task_id}
        states = {t.task_id: t.state for t in direct_sql.rows(TaskRun, {"run_id": run_id, "task_id__in": others}, ("task_id", "state"))}
        states[task_id] = TaskState.SUCCEEDED
        if any(state in TASK_UNSUCCESSFUL for state in states.values()):
            return advance_run(run_id)  # skips and cancels propagate: the full form
        for task_run in waiting:
            if all(states.get(u, TaskState.SUCCEEDED) == TaskState.SUCCEEDED for u in task_run.upstream):
                changed |= task_run.transition(TaskState.QUEUED, expect=TaskState.PENDING, queued_at=now)
    if not changed and not direct_sql.exists(TaskRun, {"run_id": run_id, "state__not_in": sorted(TASK_TERMINAL)}):
        return advance_run(run_id)  # every task has ended: checks, then the run's end
    if changed:
        notify_run_on_commit(run_id)
    return changed


def _discard_homes_on_commit(run_id: int) -> None:
    """Once the run's end is committed, remove its attempts' HOME and TMPDIR (engine.homes), in
    the background: the committing thread goes on at once."""
    transaction.on_commit(lambda: homes.discard_run_homes_soon(run_id))


def _advance_choice(spec: PlanSpec, choice: TaskRun, own: list[TaskRun], chooser: TaskRun | None, now) -> bool:
    """Move the task run of a task with candidates on: to choosing once its candidates have
    ended (engine.candidates), or to failed when the review that was to choose did not succeed.
    True when it changed."""
    if candidates.ready_to_choose(choice, own):
        return candidates.start_choosing(spec, choice, own, now)
    if choice.state == TaskState.WAITING and chooser is not None and chooser.state in TASK_UNSUCCESSFUL:
        reason = f"no candidate was chosen: the review {chooser.task_id} that chooses did not succeed"
        return choice.transition(TaskState.FAILED, reason, expect=TaskState.WAITING, error=reason, finished_at=now)
    return False


def _gate_skip_reason(blocked: TaskRun) -> str | None:
    """Why a task waiting for `blocked` is skipped when `blocked` failed at its gate (or was
    skipped for such a gate upstream): "the gate after 'x' was rejected"; else None."""
    if blocked.state == TaskState.FAILED and blocked.state_reason.startswith(GATE_REJECTED):
        return f"the gate after '{blocked.task_id}' was rejected"
    if blocked.state == TaskState.SKIPPED and blocked.state_reason.startswith("the gate after '"):
        return blocked.state_reason
    return None


def _root_cause(skipped: TaskRun) -> str:
    root = getattr(skipped, "skip_root", None)
    if root:
        return root
    # "upstream task 'x' did not succeed" -> x
    reason = skipped.state_reason
    return reason.split("'")[1] if reason.count("'") >= 2 else skipped.task_id


def _finish(run: Run, task_runs: list[TaskRun], now) -> bool:
    bad = [t for t in task_runs if t.state != TaskState.SUCCEEDED]
    unmet = list(run.verdicts.filter(state="failed").order_by("kind", "position").values_list("name", "summary"))
    if not bad and unmet:
        reason = f"all {len(task_runs)} tasks succeeded, but {len(unmet)} check(s) failed: " + "; ".join(
            f"{name} ({summary})" for name, summary in unmet[:5])
        return run.transition(RunState.FAILED, reason, finished_at=now, started_at=run.started_at or now)
    if not bad:
        return run.transition(RunState.SUCCEEDED, f"all {len(task_runs)} tasks succeeded", finished_at=now,
                              started_at=run.started_at or now)
    failed = [t for t in bad if t.state not in (TaskState.SKIPPED, TaskState.CANCELLED)]
    parts = [f"{t.task_id} {t.get_state_display().lower()}" for t in failed[:5]]
    skipped = sum(1 for t in bad if t.state == TaskState.SKIPPED)
    reason = f"{len(bad)} of {len(task_runs)} tasks did not succeed: {', '.join(parts)}"
    if len(failed) > 5:
        reason += ", …"
    if skipped:
        reason += f"; {skipped} skipped"
    if cancelled := sum(1 for t in bad if t.state == TaskState.CANCELLED):
        reason += f"; {cancelled} cancelled"
    if not failed:
        return run.transition(RunState.CANCELLED, "cancelled", finished_at=now, started_at=run.started_at or now)
    return run.transition(RunState.FAILED, reason, finished_at=now, started_at=run.started_at or now)


def cancel_run(run_id: int, reason: str, user: AbstractBaseUser | None = None, via: str = "") -> bool:
    """Cancel every unfinished task run of the run, then the run. Returns False if it had ended.

    The cancel is audited as `user`'s (or the command `via` names).

    Executors of running task runs notice at their end (their finish is then ignored); the
    caller that owns them should stop them first so their process groups are killed.
    """
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.get(pk=run_id)
        if run.state in RUN_TERMINAL:
            return False
        for task_run in run.task_runs.exclude(state__in=TASK_TERMINAL):
            task_run.transition(TaskState.CANCELLED, reason, finished_at=now, lease_expires_at=None)
        for verdict in run.verdicts.filter(state__in=(CheckState.PENDING, CheckState.RUNNING)):
            verdict.transition(CheckState.UNVERIFIED, reason, summary=f"not checked: {reason}", decided_at=now, lease_expires_at=None)
        run.transition(RunState.CANCELLED, reason, finished_at=now, started_at=run.started_at or now)
        webhooks.enqueue(run, "run.cancelled")
        _discard_homes_on_commit(run_id)  # its running attempts' executors discard what they write meanwhile
        audit.record(audit.Action.RUN_CANCELLED, user, run=run, detail=reason, via=via)
        notify_run_on_commit(run_id)
    return True


def active_run_ids() -> list[int]:
    """Ids of runs that are not finished, oldest first."""
    return list(Run.objects.exclude(state__in=RUN_TERMINAL).order_by("id").values_list("id", flat=True))


def claim_next(owner: str, scope: work.Scope = work.Scope(), limit: int = 1, uncrowded: bool = False) -> list[TaskRun]:
    """Claim (engine.work.claim) up to `limit` of the oldest queued task runs within `scope` that
    may start now, for `owner`, in one transaction; return them (empty when nothing may start).

    Respects MAGICBOX_MAX_PARALLEL and each worker's max_parallel, counted over all processes:
    the count and the claims happen under the "claim" EngineLock, so two processes never both
    take the last free slot. A scope with `idle` (the claiming process runs nothing) claims a
    task run that lost its worker process before, alone, when there is one (engine.work.Scope).

    When more task runs are queued than slots are free, it takes half of the free slots (at
    least one) and wakes an engine for the rest, so that other worker processes share the work
    (one process alone takes the rest on that wake-up). With `uncrowded`, it claims nothing then
    (returns []): a process that has just freed a slot, claiming in the transaction that freed it,
    would otherwise always take that slot itself, and other processes none; the caller then claims
    again on its own, racing with them.
    """
    now = timezone.now()
    with transaction.atomic():
        EngineLock.hold("claim")
        running = direct_sql.counts(TaskRun, "worker", {"state": TaskState.RUNNING})
        free = settings.MAGICBOX_MAX_PARALLEL - sum(running.values())
        if free <= 0 or limit <= 0:
            return []
        return _claim_candidates(scope, owner, running, now, limit, free, uncrowded)


# What a claimed task run is read with: what claiming it needs, and what its attempt needs to
# begin (engine.executor._load, with its run's `revision_id`), so that beginning it reads it no more.
CLAIM_FIELDS = ("id", "run_id", "task_id", "worker", "attempt", "started_at", "claimed_by", "worker_losses", "state", "timeout",
                "output_bytes", "upstream", "max_attempts", "interruptions", "findings", "session_id", "candidate_of")


def _candidates(scope: work.Scope, now, saturated: list[str], count: int) -> list[TaskRun]:
    """Up to `count` queued task runs within `scope` (engine.work.scope_conditions) that may start
    at `now`, of runs that have not ended, whose worker is not one of `saturated`, oldest first
    (with an `idle` scope, of both kinds: those that lost their worker process before first),
    with CLAIM_FIELDS and their run's revision_id. One statement, written directly (as
    orchestration.direct_sql's, for the same reason): every task's claim reads it."""
    connection = connections[router.db_for_write(TaskRun)]
    quote = connection.ops.quote_name
    task, run = TaskRun._meta, Run._meta

    def column(name: str) -> str:
        return f"{quote(task.db_table)}.{quote(task.get_field(name).column)}"

    both = scope.idle and not scope.suspects
    conditions = work.scope_conditions(work.Scope(suspects=scope.suspects, run_id=scope.run_id))
    if both:
        conditions.pop("worker_losses")
    queued, params = direct_sql.where(TaskRun, {"state": TaskState.QUEUED, "queued_at__lte": now, **conditions,
                                                "worker__not_in": saturated}, connection, qualified=True)
    unended, run_params = direct_sql.where(Run, {"state__not_in": sorted(RUN_TERMINAL)}, connection, qualified=True)
    order = [f"CASE WHEN {column('worker_losses')} > 0 THEN 0 ELSE 1 END"] if both else []
    order += [column("queued_at"), column("id")]
    selected = ", ".join([*(column(name) for name in CLAIM_FIELDS),
                          f"{quote(run.db_table)}.{quote(run.get_field('revision').column)} AS {quote('revision_id')}"])
    sql = (f"SELECT {selected} FROM {quote(task.db_table)} INNER JOIN {quote(run.db_table)} ON "
           f"{column('run')} = {quote(run.db_table)}.{quote(run.pk.column)} WHERE {queued} AND {unended} "
           f"ORDER BY {', '.join(order)} LIMIT {int(count)}")
    return list(TaskRun.objects.raw(sql, [*params, *run_params]))


def _claim_candidates(scope: work.Scope, owner: str, running: dict[str, int], now, limit: int, free: int,
                      uncrowded: bool = False) -> list[TaskRun]:
    """Claim up to `limit` queued task runs within `scope` (oldest first) whose worker is under
    its max_parallel (`running`: {worker: running now}, updated), `free` slots being free over
    all processes; inside claim_next's transaction. `uncrowded`: see claim_next. With an `idle`
    scope, one that lost its worker process before (a suspect) is claimed alone when there is
    one, else the rest as usual: both are read with one query, suspects first (_candidates)."""
    want = 1 if scope.suspects else min(limit, free)
    suspects_first = scope.idle and not scope.suspects
    saturated = [worker for worker, n in running.items() if (limit_of := _max_parallel(worker)) is not None and n >= limit_of]
    # A few more than wanted: a worker may reach its max_parallel within this batch.
    candidates = _candidates(scope, now, saturated, 2 * want + 8)  # what could not start now is not read
    if suspects_first:
        if claimed := _claim_first(candidates, owner, running, now, True):
            return claimed
        candidates = [c for c in candidates if not c.worker_losses]
    if uncrowded and len(candidates) > want:
        return []
    if len(candidates) > free >= 2 and want > 1:  # more queued than free slots: share them (see claim_next)
        want = min(want, (free + 1) // 2)
        wake_engine_on_commit()
    return _claim_first(candidates, owner, running, now, False, want)


def _claim_first(candidates: list[TaskRun], owner: str, running: dict[str, int], now, suspects: bool,
                 want: int = 1) -> list[TaskRun]:
    """Claim up to `want` of `candidates` in their order (of those that lost their worker process
    before when `suspects`, else of any), skipping those whose worker has reached its
    max_parallel (`running`, updated); the claimed runs' viewers are told once committed."""
    claimed: list[TaskRun] = []
    for candidate in candidates:
        if suspects and not candidate.worker_losses:
            continue
        limit = _max_parallel(candidate.worker)
        if limit is not None and running.get(candidate.worker, 0) >= limit:
            continue
        if work.claim(candidate, owner, started_at=candidate.started_at or now, exit_code=None, error=""):
            running[candidate.worker] = running.get(candidate.worker, 0) + 1
            claimed.append(candidate)
            if len(claimed) >= want:
                break
    for run_id in {c.run_id for c in claimed}:
        notify_run_on_commit(run_id)
    return claimed


def _max_parallel(worker: str) -> int | None:
    """The worker's max_parallel (None: no limit of its own, or an unknown worker, which the
    executor fails with the message)."""
    try:
        return worker_config(worker).max_parallel
    except UnknownWorker:
        return None


def next_retry_in() -> float | None:
    """Seconds until the earliest queued task run waiting out a retry backoff may start (None if none)."""
    now = timezone.now()
    earliest = (TaskRun.objects.filter(state=TaskState.QUEUED, queued_at__gt=now).exclude(run__state__in=RUN_TERMINAL)
                .order_by("queued_at").values_list("queued_at", flat=True).first())
    return None if earliest is None else (earliest - now).total_seconds()


def cancel_task(task_run: TaskRun, reason: str, user: AbstractBaseUser | None = None) -> bool:
    """Cancel one unfinished task run (its executor kills its processes within about a second);
    tasks downstream of it are then cancelled too. False if it had already ended. Audited as `user`'s."""
    now = timezone.now()
    with transaction.atomic():
        done = task_run.transition(TaskState.CANCELLED, reason, finished_at=now, lease_expires_at=None)
        if done:
            audit.record(audit.Action.TASK_CANCELLED, user, run=task_run.run, detail=task_run.task_id)
            advance_run(task_run.run_id)
            notify_run_on_commit(task_run.run_id)
            wake_engine_on_commit()
    return done
