"""Run one attempt of one task run: prepare, start the worker, stream output, record the end."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from orchestration import direct_sql
from orchestration.engine import candidates, choosing, gates, homes, loops, orphans, revisions, scheduler, work, workspace
from orchestration.engine.db import db
from orchestration.engine.leases import Lease, LeaseLost
from orchestration.engine.output import OutputBuffer, Stored, append_chunk, storable, task_output
from orchestration.engine.prompts import compose_prompt
from orchestration.engine.secrets import secret_values
from orchestration.engine.signals import anotify_run, notify_run_on_commit
from orchestration.engine.validation import output_problems
from orchestration.models import RUN_TERMINAL, Run, TaskChange, TaskRun, TaskState
from orchestration.plans import references
from orchestration.plans.spec import PlanSpec, Task
from orchestration.plans.prompt_library import resolve as resolve_prompt
from orchestration.vcs import changes, worktrees
from orchestration.vcs.git import GitError
from orchestration.vcs.repository import repository_dir, run_start
from orchestration.workers.base import Outcome, TaskContext, WorkerAdapter, WorkerUnavailable
from orchestration.workers.environment import worker_setup
from orchestration.workers import identity, sandbox
from orchestration.workers.process import run_process
from orchestration.workers.registry import UnknownWorker

log = logging.getLogger(__name__)


@dataclass
class AttemptPlan:
    """What the executor read from the database before starting an attempt."""

    task_run_id: int
    run_id: int
    task_id: str
    worker: str
    attempt: int
    timeout: float
    stored_bytes: int
    task: Task
    spec: PlanSpec
    upstream_results: dict[str, str]
    results: dict[str, str]
    upstream_heads: list[tuple[str, str]]  # (task id, head commit) of upstream tasks' captured changes
    downstream: list[str] = field(default_factory=list)  # ids of the tasks that wait for this one
    max_attempts: int = 1
    interruptions: int = 0
    worker_losses: int = 0
    header: Stored | None = None  # the attempt's first output line, stored as it began (_announce)
    findings: str = ""  # a review loop's findings for this attempt (engine.loops), added to its prompt
    own_head: str = ""  # the head of its own branch it continues from, in a loop round ("" otherwise)
    candidate_of: str = ""  # the task whose candidate this is (engine.candidates), "" otherwise
    candidates_brief: str = ""  # the candidates a choosing review is shown (engine.choosing.brief)
    resume_session: str = ""  # in a loop round, the CLI session of the round before, to continue where the CLI can
    inputs: dict[str, str] = field(default_factory=dict)  # the run's inputs, when the task uses some


def _task_texts(task: Task) -> list[str]:
    """The task's texts that references may appear in: description, prompt, command arguments."""
    return [task.description, task.prompt, *(task.command or [])]


def _references_inputs(task: Task) -> bool:
    """Whether the task's text or command may use the run's inputs (`{{ inputs.<name> }}`)."""
    return any("inputs." in text for text in _task_texts(task))


def _references_results(task: Task) -> bool:
    """Whether the task's text or command may refer to task results (`{{ tasks.<id>.… }}`)."""
    return any("{{" in text for text in _task_texts(task))


def _load(task_run_id: int, claimed: TaskRun | None = None) -> AttemptPlan:
    """What the attempt of task run `task_run_id` needs to begin; `claimed`: the row as its claim
    read and changed it (with scheduler.CLAIM_FIELDS), else it is read here."""
    task_run = claimed or (TaskRun.objects.annotate(revision_id=F("run__revision_id")).only(*scheduler.CLAIM_FIELDS)
                           .get(pk=task_run_id))
    spec = revisions.spec_of(task_run.revision_id)
    task = spec.task(task_run.candidate_of or task_run.task_id)  # a candidate does its task's work
    # A review that chooses among a task's candidates is shown them instead of that task's result.
    chooses_for = spec.chooses_for(task_run.task_id)
    succeeded = {"run_id": task_run.run_id, "state": TaskState.SUCCEEDED}
    if not _references_results(task):  # only the upstream results are handed over: read only those
        succeeded["task_id__in"] = task_run.upstream
    results = {t.task_id: t.result for t in direct_sql.rows(TaskRun, succeeded, ("task_id", "result"))}
    heads = dict(TaskChange.objects.filter(task_run__run_id=task_run.run_id, task_run__task_id__in=task_run.upstream)
                 .values_list("task_run__task_id", "head_commit")) if spec.workspace and task_run.upstream else {}
    # A round of a review loop continues from the task's own branch (engine.loops).
    own_head = (TaskChange.objects.filter(task_run_id=task_run.pk).values_list("head_commit", flat=True).first() or ""
                if spec.workspace and task_run.findings else "")
    return AttemptPlan(
        task_run_id=task_run.pk,
        run_id=task_run.run_id,
        task_id=task_run.task_id,
        worker=task_run.worker,
        attempt=task_run.attempt,
        timeout=float(task_run.timeout or settings.MAGICBOX_TASK_TIMEOUT),
        stored_bytes=task_run.output_bytes,
        task=task,
        spec=spec,
        upstream_results={u: results.get(u, "") for u in task_run.upstream if u not in chooses_for},
        results=results,
        upstream_heads=[(u, heads[u]) for u in task_run.upstream if u in heads],
        downstream=[task_run.candidate_of] if task_run.candidate_of else candidates.downstream_rows(spec, task_run.task_id),
        max_attempts=task_run.max_attempts,
        interruptions=task_run.interruptions,
        worker_losses=task_run.worker_losses,
        findings=task_run.findings,
        own_head=own_head,
        candidate_of=task_run.candidate_of,
        resume_session=task_run.session_id if task_run.findings else "",
        inputs=Run.objects.values_list("inputs", flat=True).get(pk=task_run.run_id) if _references_inputs(task) else {},
        candidates_brief=choosing.brief(task_run.run_id, spec, task_run.task_id) if chooses_for else "",
    )


def _setup(plan: AttemptPlan) -> tuple[WorkerAdapter, dict[str, str], str, list[str] | None, str]:
    """(adapter, base environment, prompt, command, warning) of the attempt, in one call to the
    database thread: the worker's setup (workers.environment.worker_setup), the prompt composed
    (with the task's prompt_file, whose problem is `warning`) and a shell task's command argv with
    its references and inputs filled in (None for an agent task), both recorded on the task run.
    Raises UnknownWorker, and references.ReferenceError_ for a reference that cannot be filled in."""
    adapter, env = worker_setup(plan.worker)
    template, warning = resolve_prompt(plan.task.prompt_file) if plan.task.prompt_file else ("", "")
    prompt = compose_prompt(plan.task, plan.spec, plan.upstream_results, template, plan.results, plan.findings,
                            plan.candidates_brief, plan.inputs)
    command = [references.fill(arg, plan.results, plan.spec.ids, plan.inputs) for arg in plan.task.command] if plan.task.command else None
    direct_sql.update_where(TaskRun, {"pk": plan.task_run_id}, {"prompt": storable(prompt), "command": [storable(a) for a in command or ()]})
    return adapter, env, prompt, command, warning


_SETUP_ERRORS = (UnknownWorker, WorkerUnavailable, GitError, references.ReferenceError_, ValueError)  # fail the attempt, saying why


def _announce(plan: AttemptPlan) -> Stored | None:
    """Store the attempt's first output line (which attempt, which worker, where, how confined),
    in the caller's transaction: with its claim, when the claim began it; and when the sandbox is
    off, record that on the run (the run page says so). Returns what append_chunk stored."""
    if sandbox.enabled():
        confined = "in its sandbox" + ("" if plan.task.network else ", without network")
    else:
        confined = "WITHOUT a sandbox (MAGICBOX_SANDBOX=off)"
        _mark_unsandboxed(plan.run_id)
    workdir = workspace.attempt_dirs(plan.run_id, plan.task_id, plan.attempt).workdir
    return append_chunk(plan.task_run_id, plan.attempt, f"[Magic Box] attempt {plan.attempt}: {plan.worker} in {workdir}, {confined}\n")


def _begin(task_run_id: int, claimed: TaskRun | None = None) -> tuple[AttemptPlan, tuple[WorkerAdapter, dict[str, str], str, str] | Exception]:
    """The attempt's plan (_load, `claimed` as there), its first output line stored (_announce,
    plan.header) and its setup (_setup), or the error the setup raised (one of _SETUP_ERRORS),
    in one call to the database thread."""
    plan = _load(task_run_id, claimed)
    plan.header = _announce(plan)
    try:
        return plan, _setup(plan)
    except _SETUP_ERRORS as error:
        return plan, error


Begun = tuple[AttemptPlan, "tuple[WorkerAdapter, dict[str, str], str, str] | Exception", "workspace.AttemptDirs | OSError | None"]
_begun: dict[int, tuple[int, Begun]] = {}  # task run id -> (attempt, what claim_next began of it), taken by execute


def claim_next(owner: str, scope: work.Scope, limit: int) -> list[TaskRun]:
    """scheduler.claim_next, and each claimed attempt begun in the same call to the database
    thread and transaction: its plan and setup (_begin_claimed) and, after the commit, when the
    setup succeeded, its directories (workspace.make_dirs, or the OSError it raised). A fan-out's
    tasks start with one call and one commit, not one each; `execute` takes what was begun (and
    begins it itself when this could not). Synchronous."""
    with transaction.atomic():
        rows = scheduler.claim_next(owner, scope, limit)
        begun = _begin_claimed(rows)
    return _make_dirs(rows, begun)


def _begin_claimed(rows: list[TaskRun]) -> dict[int, tuple]:
    """_begin each claimed task run of `rows`, inside the caller's transaction (their prompts are
    written with it, one commit for all), each in a savepoint of its own; returns {pk: (plan,
    setup)} of those begun. One that fails but for the connection is left out: execute begins
    it again, and fails the attempt as before. A lost connection raises (engine.db runs the
    whole call again)."""
    begun = {}
    for row in rows:
        try:
            with transaction.atomic():
                begun[row.pk] = _begin(row.pk, row)
        except (OperationalError, InterfaceError):
            raise
        except Exception:  # noqa: BLE001 — see above
            continue
    return begun


def _make_dirs(rows: list[TaskRun], begun: dict[int, tuple]) -> list[TaskRun]:
    """Make the directories of each begun task run whose setup succeeded (outside any
    transaction: file system work), and leave what was begun for `execute`. Returns `rows`."""
    for row in rows:
        if row.pk not in begun:
            continue
        plan, setup = begun[row.pk]
        dirs = None
        if not isinstance(setup, Exception):
            try:
                dirs = workspace.make_dirs(plan.run_id, plan.task_id, plan.attempt, plan.upstream_results)
            except OSError as error:
                dirs = error
        _begun[row.pk] = (row.attempt, (plan, setup, dirs))
    return rows


RESULT_LIMIT = 1024 * 1024  # characters of a result kept (it is also handed to downstream tasks)


def _capped(result: str) -> str:
    if len(result) <= RESULT_LIMIT:
        return result
    return result[:RESULT_LIMIT] + f"\n[Magic Box: result truncated: {len(result) - RESULT_LIMIT} more characters not kept]"


def retry_delay(failed_attempt: int) -> float:
    """Seconds before retrying after attempt number `failed_attempt` failed: MAGICBOX_RETRY_BACKOFF
    doubled for each earlier failure, at most MAGICBOX_RETRY_BACKOFF_MAX."""
    return min(settings.MAGICBOX_RETRY_BACKOFF * 2 ** (failed_attempt - 1), settings.MAGICBOX_RETRY_BACKOFF_MAX)


def _finish(plan: AttemptPlan, owner: str, state: str, outcome: Outcome, exit_code: int | None) -> float | None:
    """Record the attempt's end (engine.work.finish) and advance the run past it in one
    transaction; re-queue it instead when it failed and attempts are left, and then return the
    backoff in seconds (else None). Nothing is written once `owner` no longer holds the task
    run (a cancel, or a take-over: the other party decides)."""
    with transaction.atomic():
        return _record_end(plan, owner, state, outcome, exit_code)


def _record_end(plan: AttemptPlan, owner: str, state: str, outcome: Outcome, exit_code: int | None) -> float | None:
    """The body of _finish, inside the caller's transaction."""
    now = timezone.now()
    notify_run_on_commit(plan.run_id)
    # What the claim read (_load); the writes below happen only while `owner` holds it as this attempt.
    task_run = TaskRun(pk=plan.task_run_id, run_id=plan.run_id, task_id=plan.task_id, state=TaskState.RUNNING,
                       claimed_by=owner, attempt=plan.attempt, max_attempts=plan.max_attempts,
                       interruptions=plan.interruptions, worker_losses=plan.worker_losses)
    fields = dict(
        result=storable(_capped(outcome.result)),
        error=storable(outcome.error),
        exit_code=exit_code,
        cost_usd=outcome.cost_usd,
        input_tokens=outcome.input_tokens,
        output_tokens=outcome.output_tokens,
        session_id=outcome.session_id[:200],
        cli_version=outcome.cli_version[:100],
        model=outcome.model[:200],
    )
    used = task_run.attempts_used
    review = None
    if state == TaskState.SUCCEEDED and plan.task.loop:
        review = loops.review_ended(task_run, owner, plan.attempt, plan.spec, fields)  # None: approved
    if review is not None:
        if review[0]:  # a new round (its fixes are queued), or the loop failed (what waits for it is skipped)
            scheduler.advance_run(plan.run_id)
    elif state != TaskState.SUCCEEDED and used < task_run.max_attempts:
        delay = retry_delay(used)
        reason = storable(f"attempt {task_run.attempt} {state.replace('_', ' ')}: {outcome.error}; retrying in {delay:g} s")
        if work.finish(task_run, owner, plan.attempt, TaskState.QUEUED, reason, queued_at=now + timedelta(seconds=delay),
                       claimed_by="", **fields):
            return delay
    elif state == TaskState.SUCCEEDED and plan.task.gate:
        choosing.chosen_by_review(plan.run_id, plan.task_id, fields["result"], plan.spec)  # its answer chooses, gate or not
        if not gates.hold(task_run, owner, plan.attempt, plan.spec, fields) and _run_ended(plan.run_id):
            transaction.on_commit(lambda: homes.discard_run_homes_soon(plan.run_id))
        # else its downstream tasks wait for the gate's decision (engine.gates)
    elif work.finish(task_run, owner, plan.attempt, state, fields["error"], finished_at=now, **fields):
        if state == TaskState.SUCCEEDED and plan.candidate_of:
            scheduler.advance_run(plan.run_id)  # its task may start choosing once every candidate has ended
        elif state == TaskState.SUCCEEDED:
            choosing.chosen_by_review(plan.run_id, plan.task_id, fields["result"], plan.spec)  # when it chooses a winner
            scheduler.advance_after(plan.run_id, plan.task_id, plan.downstream)
        else:
            scheduler.advance_run(plan.run_id)  # what waits for it is skipped, transitively
    elif _run_ended(plan.run_id):  # cancelled with its run: this HOME goes too, as the run's end removed the others
        transaction.on_commit(lambda: homes.discard_run_homes_soon(plan.run_id))
    return None


@dataclass
class NextClaim:
    """What the final write of an attempt claims in its own transaction (scheduler.claim_next):
    up to `limit` task runs within `scope`, for `owner`; `rows`: the task runs claimed (begun for
    `execute`, see claim_next). The engine sets it up (Lease.hop) and starts the rows."""

    owner: str
    scope: work.Scope
    limit: int
    rows: list[TaskRun] = field(default_factory=list)


def _finish_and_claim(plan: AttemptPlan, owner: str, state: str, outcome: Outcome, exit_code: int | None,
                      claim: NextClaim | None) -> tuple[float | None, list[TaskRun]]:
    """_finish, and in the same transaction what may start now that this attempt's slot is free
    (its downstream tasks, or what waited for a slot), claimed as `claim` says (None: nothing),
    unless more is queued than may start (scheduler.claim_next's `uncrowded`: the engine claims
    on its own then, racing with the other processes); those claimed are begun in it too
    (_begin_claimed), their directories made after the commit. Returns (_finish's backoff, the
    rows claimed). A claim that fails for a reason other than the connection claims nothing
    (logged; the engine claims again itself) and leaves the end recorded."""
    rows: list[TaskRun] = []
    with transaction.atomic():
        delay = _record_end(plan, owner, state, outcome, exit_code)
        if claim is not None:
            try:  # claim_next's own transaction is a savepoint in this one
                rows = scheduler.claim_next(claim.owner, claim.scope, claim.limit, uncrowded=True)
            except (OperationalError, InterfaceError):
                raise  # the connection: engine.db runs it all again
            except Exception:
                log.exception("claiming the next task runs after task run %s failed; the engine claims again", plan.task_run_id)
                rows = []
        begun = _begin_claimed(rows)
    return delay, _make_dirs(rows, begun)


def _mark_unsandboxed(run_id: int) -> None:
    """Record that a task of the run ran without a sandbox (the run page says so)."""
    Run.objects.filter(pk=run_id, unsandboxed=False).update(unsandboxed=True)


async def execute(task_run_id: int, lease: Lease) -> None:
    """Run the current attempt of a task run this process has claimed (state running) and holds
    through `lease`; stop, killing its processes, when the lease is lost (a cancel).

    Never raises for a task's own failure: every outcome is recorded on the task run.
    """
    owner = lease.owner
    attempt, begun = _begun.pop(task_run_id, (None, None))
    if begun is not None and attempt == lease.attempt:
        plan, setup, made = begun
    else:
        (plan, setup), made = await db(_begin, task_run_id), None
    output = task_output(plan.task_run_id, plan.run_id, plan.attempt, plan.stored_bytes)
    output.stored_already(plan.header)

    async def end(state: str, outcome: Outcome, exit_code: int | None = None) -> None:
        output.follow_partial(None)
        await output.flush()
        # Its viewers are told once it is committed; a retry's backoff is the engine's to wait out.
        if lease.hop is None or not plan.downstream or state != TaskState.SUCCEEDED:
            # Nothing of its own to start next: what waits for a slot is claimed by the engine
            # as before (often more than may start, shared with the other processes).
            lease.retry_in = await db(_finish, plan, owner, state, outcome, exit_code)
            return
        async with lease.hop() as claim:
            lease.retry_in, rows = await db(_finish_and_claim, plan, owner, state, outcome, exit_code, claim)
            if claim is not None:
                claim.rows = rows

    repo_spec = adapter = dirs = None
    env: dict[str, str] = {}
    try:
        if isinstance(setup, Exception):
            raise setup
        adapter, env, prompt, command, warning = setup
        if warning:
            output.add([f"[Magic Box] {warning}"])
        if isinstance(made, OSError):
            raise made
        dirs = made or await workspace.prepare(plan.run_id, plan.task_id, plan.attempt, plan.upstream_results)
        if repo_spec := plan.spec.workspace:
            repository = await repository_dir(repo_spec)
            base, prefix = await run_start(plan.run_id, repo_spec)
            # Checked with the repository locked: a process that hung since its claim must not take
            # the branch (and its worktree) from its successor.
            task_start = await worktrees.start_task(repository, prefix, plan.task_id, dirs.workdir, base, plan.upstream_heads,
                                                    still_holder=lease.check, continue_from=plan.own_head)
            output.add([f"[Magic Box] worktree on branch {task_start.branch} at {task_start.start_commit[:10]}"])
        if reason := adapter.unavailable_reason(env):
            raise WorkerUnavailable(reason)
        context = TaskContext(task_id=plan.task_id, prompt=prompt, command=command, output_schema=plan.task.output_schema,
                              workdir=dirs.workdir, home=dirs.home, tmpdir=dirs.tmpdir, upstream_dir=dirs.upstream, base_env=env)
        if plan.resume_session and (sessions := _earlier_sessions(plan)) and adapter.resume(sessions, plan.resume_session, context):
            context.resume_session = plan.resume_session  # a review loop's next round continues the conversation
            output.add([f"[Magic Box] continuing the CLI's session {plan.resume_session} of the round before"])
        invocation = adapter.build(context)
    except LeaseLost:  # taken over before it began: nothing of it to record
        return
    except _SETUP_ERRORS as error:
        output.add([f"[Magic Box] {error}"])
        await _seal(plan, dirs, adapter, env, recorded=True)
        await end(TaskState.FAILED, Outcome(succeeded=False, error=str(error)))
        return

    parser = adapter.parser()
    interrupted = taken_over = recorded = False  # recorded: its end is recorded below (_finish)
    capture_error = ""
    invocation.env[orphans.MARKER] = lease.marker
    output.follow_partial(parser.partial_text)
    flusher = asyncio.create_task(output.flush_forever())
    try:
        result = await lease.guard(run_process(
            invocation,
            on_stdout=lambda line: output.add(parser.feed_stdout(line)),
            on_stderr=lambda line: output.add(parser.feed_stderr(line)),
            timeout=plan.timeout,
            pace=output.pace,
            confinement=sandbox.for_attempt(dirs.workdir, dirs.home, dirs.tmpdir, (dirs.upstream,),
                                            network=plan.task.network),
        ))
        recorded = True
    except LeaseLost:  # the process group was killed; record nothing more
        state, reason = await db(_state_of, plan.task_run_id)
        if state == TaskState.CANCELLED:  # from the browser: what it changed so far is kept
            output.add([f"[Magic Box] stopped: {reason or 'the task run was cancelled'}; its processes were killed"])
            output.follow_partial(None)
            await output.flush()
            await anotify_run(plan.run_id)
        else:  # taken over after its lease ran out: its worktree and output are the next attempt's now
            taken_over = True
        return
    except (OSError, ValueError) as error:  # ValueError: an argument or variable holds a NUL
        recorded = True
        message = f"could not start {invocation.argv[0]}: {error}"
        output.add([f"[Magic Box] {message}"])
        await end(TaskState.FAILED, Outcome(succeeded=False, error=message))
        return
    except asyncio.CancelledError:
        interrupted = True
        output.add(["[Magic Box] interrupted: the worker process is stopping; its processes were killed"])
        output.follow_partial(None)
        await output.flush()
        raise
    finally:
        flusher.cancel()
        # What left the process group (setsid) is found by its marker and goes too. In the
        # sandbox the kernel already ended every process of its PID namespace with its bwrap.
        if not sandbox.enabled():
            await asyncio.to_thread(orphans.kill_marked, lease.marker)
        await _seal(plan, dirs, adapter, invocation.env, recorded)  # whatever the outcome: its processes are gone
        if repo_spec and not interrupted and not taken_over and not await lease.confirm():
            # Its worker hung, and the task was taken over meanwhile (a cancel keeps the work).
            taken_over = (await db(_state_of, plan.task_run_id))[0] != TaskState.CANCELLED
        if repo_spec and not taken_over:
            sandbox.discard_git_scratch(dirs.workdir)  # what git wrote inside the sandbox: the files are the work
            if not interrupted:  # an interrupted attempt starts again from scratch
                capture_error = await _capture(plan, repository, task_start, output)
            if capture_error:
                output.add([f"[Magic Box] the worktree is kept, with the task's work, at {dirs.workdir}"])
            elif not repo_spec.keep_worktrees and not (plan.candidate_of and plan.task.candidates.choose.way == "command") \
                    and not (plan.task.gate and plan.task.gate.command):
                # (kept: a command choosing among candidates, or a gate's check, runs in it)
                await worktrees.remove(repository, dirs.workdir)

    output.add(parser.end_of_output())  # e.g. gemini's unfinished line of text when it timed out
    if result.timed_out:
        outcome = parser.finish(-1, result.stderr_tail)
        await identity.complete(adapter, invocation, outcome)
        outcome.succeeded = False
        outcome.error = f"timed out after {plan.timeout:g} s; the worker's process group was killed"
        await end(TaskState.TIMED_OUT, outcome)
        return
    outcome = parser.finish(result.exit_code, result.stderr_tail)
    await identity.complete(adapter, invocation, outcome)
    if outcome.succeeded and capture_error:  # downstream tasks would start without its work
        outcome.succeeded, outcome.error = False, capture_error
    if outcome.succeeded and plan.task.output_schema:
        problems = await output_problems(outcome.result, plan.task.output_schema)
        if problems:
            outcome.succeeded = False
            source = plan.task.output_schema_ref or "its output_schema"
            outcome.error = f"the result does not match {source}: " + "; ".join(problems)
            output.add([f"[Magic Box] {outcome.error}"])
    await end(TaskState.SUCCEEDED if outcome.succeeded else TaskState.FAILED, outcome, result.exit_code)


async def _seal(plan: AttemptPlan, dirs: workspace.AttemptDirs | None, adapter: WorkerAdapter | None, env: dict[str, str],
                recorded: bool = False) -> None:
    """The attempt has ended: remove every secret from its HOME (engine.homes.seal); when its run
    has ended meanwhile (a cancel), its HOME goes altogether, as the run's end removed the others
    (`recorded`: its end is about to be recorded, and _finish looks at the run then)."""
    if dirs is None:
        return
    secrets, discard, transcripts = secret_values(env), getattr(adapter, "HOME_DISCARD", ()), getattr(adapter, "HOME_TRANSCRIPTS", ())
    if secrets or discard or transcripts:  # else there is nothing to look for (a shell task without secrets)
        await asyncio.to_thread(homes.seal, dirs.home, secrets, discard, transcripts)
    if not recorded and await db(_run_ended, plan.run_id):
        await asyncio.to_thread(homes.discard_run_homes, plan.run_id)


def _run_ended(run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, state__in=RUN_TERMINAL).exists()


async def _capture(plan: AttemptPlan, repository, task_start: worktrees.TaskStart, output: OutputBuffer) -> str:
    """Commit the task's worktree, store its diff (models.TaskChange) and which unrelated tasks'
    branches it would not merge with. Returns "" or, when git failed, why (not raised)."""
    try:
        head = await changes.commit_worktree(
            task_start.workdir, task_start.branch, f"Magic Box: task {plan.task_id} of run #{plan.run_id} (attempt {plan.attempt})")
        captured = await changes.diff(task_start.workdir, task_start.start_commit, head, TaskChange.PATCH_LIMIT)
        # Stored before looking at the others: of two tasks capturing at once, at least the
        # later one sees the other, so a pair is never missed.
        await db(_store_change, plan, task_start, captured, {})
        conflicts = {}
        for other, other_head in await db(_unrelated_heads, plan) if captured.files else []:
            files = await changes.merge_conflicts(repository, head, other_head)
            if files:
                conflicts[other] = files
        if conflicts:
            await db(TaskChange.objects.filter(task_run_id=plan.task_run_id).update, merge_conflicts=conflicts)
        output.add([f"[Magic Box] changes: {len(captured.files)} file(s), +{captured.lines_added} -{captured.lines_deleted}, "
                    f"commit {head[:10]} on {task_start.branch}"
                    + (f"; would conflict with {', '.join(sorted(conflicts))}" if conflicts else "")])
        return ""
    except GitError as error:
        output.add([f"[Magic Box] the task's changes could not be captured: {error}"])
        return f"its changes could not be committed: {error}"


def _earlier_sessions(plan: AttemptPlan) -> Path | None:
    """The session transcripts of the task's latest earlier attempt that kept some (engine.homes.seal
    moves them to <attempt>/sessions), or None."""
    for attempt in range(plan.attempt - 1, 0, -1):
        sessions = workspace.attempt_dirs(plan.run_id, plan.task_id, attempt).workdir.parent / "sessions"
        if sessions.is_dir():
            return sessions
    return None


def _unrelated_heads(plan: AttemptPlan) -> list[tuple[str, str]]:
    """(task id, head commit) of the run's captured changes of tasks neither upstream nor downstream of this one."""
    waits_for = plan.spec.ancestors
    mine = waits_for.get(plan.task_id, set())
    rows = TaskChange.objects.filter(task_run__run_id=plan.run_id).exclude(task_run__task_id=plan.task_id)
    return [(task, head) for task, head, start in rows.values_list("task_run__task_id", "head_commit", "start_commit")
            if task not in mine and plan.task_id not in waits_for.get(task, set()) and head != start]


def _store_change(plan: AttemptPlan, task_start: worktrees.TaskStart, captured: changes.Captured, conflicts: dict) -> None:
    TaskChange.objects.update_or_create(task_run_id=plan.task_run_id, defaults=dict(
        branch=task_start.branch, start_commit=task_start.start_commit, head_commit=captured.head_commit,
        files=captured.files, patch=storable(captured.patch), patch_truncated=captured.truncated,
        lines_added=captured.lines_added, lines_deleted=captured.lines_deleted, merge_conflicts=conflicts,
        captured_at=timezone.now()))


def note_loss(task_run: TaskRun) -> None:
    """Say in a task run's output why its attempt ended without an end of its own (its worker
    process died and the sweep queued it again, or failed it)."""
    append_chunk(task_run.pk, task_run.attempt, f"[Magic Box] attempt {task_run.attempt}: {task_run.state_reason}\n")


def _state_of(task_run_id: int) -> tuple[str, str]:
    """(state, state_reason) of a task run."""
    return TaskRun.objects.filter(pk=task_run_id).values_list("state", "state_reason").first() or ("", "")
