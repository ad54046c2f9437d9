"""Run one attempt of one task run: prepare, start the worker, stream output, record the end."""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import jsonschema
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orchestration.engine import orphans, scheduler, workspace
from orchestration.engine.output import OutputBuffer, storable
from orchestration.engine.prompts import compose_prompt
from orchestration.plans.prompt_library import resolve as resolve_prompt
from orchestration.engine.signals import anotify_run
from orchestration.models import TaskChange, TaskRun, TaskState
from orchestration.plans.graph import ancestors
from orchestration.vcs import changes, worktrees
from orchestration.vcs.git import GitError
from orchestration.vcs.repository import repository_dir, run_start
from orchestration.plans import references
from orchestration.workers.base import Outcome, TaskContext, WorkerUnavailable
from orchestration.workers.process import run_process
from orchestration.workers.registry import UnknownWorker, get_adapter, search_path, worker_config

log = logging.getLogger(__name__)

BASE_ENV_NAMES = ("LANG", "LC_ALL", "TZ", "TERM")


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
    task: dict
    spec: dict
    upstream_results: dict[str, str]
    results: dict[str, str]
    upstream_heads: list[tuple[str, str]]  # (task id, head commit) of upstream tasks' captured changes


def base_environment(worker: str) -> dict[str, str]:
    """The explicit environment every worker process starts from (an allowlist, never os.environ).

    PATH: the registry's search path (the same directories worker programs are found in).
    Plus LANG/LC_ALL/TZ/TERM and the worker's env_passthrough variables when the server has them.
    """
    env = {"PATH": os.pathsep.join(search_path()), "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in BASE_ENV_NAMES if k in os.environ})
    try:
        passthrough = worker_config(worker).env_passthrough
    except UnknownWorker:
        passthrough = []
    env.update({k: os.environ[k] for k in passthrough if k in os.environ})
    for nested in ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"):
        env.pop(nested, None)
    return env


def _load(task_run_id: int) -> AttemptPlan:
    task_run = TaskRun.objects.select_related("run__revision").get(pk=task_run_id)
    spec = task_run.run.revision.spec
    task = next(t for t in spec["tasks"] if t["id"] == task_run.task_id)
    results = dict(
        TaskRun.objects.filter(run_id=task_run.run_id, state=TaskState.SUCCEEDED).values_list("task_id", "result")
    )
    heads = dict(TaskChange.objects.filter(task_run__run_id=task_run.run_id, task_run__task_id__in=task_run.upstream)
                 .values_list("task_run__task_id", "head_commit"))
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
        upstream_results={u: results.get(u, "") for u in task_run.upstream},
        results=results,
        upstream_heads=[(u, heads[u]) for u in task_run.upstream if u in heads],
    )


def _record_prompt(task_run_id: int, prompt: str) -> None:
    TaskRun.objects.filter(pk=task_run_id).update(prompt=storable(prompt))


RESULT_LIMIT = 1024 * 1024  # characters of a result kept (it is also handed to downstream tasks)


def _capped(result: str) -> str:
    if len(result) <= RESULT_LIMIT:
        return result
    return result[:RESULT_LIMIT] + f"\n[Magic Box: result truncated: {len(result) - RESULT_LIMIT} more characters not kept]"


def retry_delay(failed_attempt: int) -> float:
    """Seconds before retrying after attempt number `failed_attempt` failed: MAGICBOX_RETRY_BACKOFF
    doubled for each earlier failure, at most MAGICBOX_RETRY_BACKOFF_MAX."""
    return min(settings.MAGICBOX_RETRY_BACKOFF * 2 ** (failed_attempt - 1), settings.MAGICBOX_RETRY_BACKOFF_MAX)


def _finish(plan: AttemptPlan, owner: str, state: str, outcome: Outcome, exit_code: int | None) -> None:
    """Record the attempt's end; re-queue it instead when it failed and attempts are left."""
    now = timezone.now()
    with transaction.atomic():
        task_run = TaskRun.objects.get(pk=plan.task_run_id)
        if task_run.state != TaskState.RUNNING or task_run.claimed_by != owner:
            return  # cancelled, or declared lost and taken over: the other party decides
        fields = dict(
            result=storable(_capped(outcome.result)),
            error=storable(outcome.error),
            exit_code=exit_code,
            cost_usd=outcome.cost_usd,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            session_id=outcome.session_id[:200],
            lease_expires_at=None,
        )
        if state != TaskState.SUCCEEDED and task_run.attempt < task_run.max_attempts:
            delay = retry_delay(task_run.attempt)
            reason = storable(f"attempt {task_run.attempt} {state.replace('_', ' ')}: {outcome.error}; retrying in {delay:g} s")
            task_run.transition(TaskState.QUEUED, reason, expect=TaskState.RUNNING, queued_at=now + timedelta(seconds=delay),
                                claimed_by="", **fields)
        else:
            task_run.transition(state, fields["error"], expect=TaskState.RUNNING, finished_at=now, **fields)
        scheduler.advance_run(plan.run_id)


async def execute(task_run_id: int, owner: str) -> None:
    """Run the current attempt of a task run that `owner` has claimed (state running).

    Never raises for a task's own failure: every outcome is recorded on the task run.
    """
    plan = await sync_to_async(_load)(task_run_id)
    output = OutputBuffer(plan.task_run_id, plan.run_id, plan.attempt, plan.stored_bytes)

    async def end(state: str, outcome: Outcome, exit_code: int | None = None) -> None:
        await output.flush()
        await sync_to_async(_finish)(plan, owner, state, outcome, exit_code)
        await anotify_run(plan.run_id)

    repo_spec = None
    try:
        adapter = get_adapter(plan.worker)
        dirs = await workspace.prepare(plan.run_id, plan.task_id, plan.attempt, plan.upstream_results)
        if repo_spec := plan.spec.get("workspace"):
            repository = await repository_dir(repo_spec)
            base, prefix = await run_start(plan.run_id, repo_spec)
            task_start = await worktrees.start_task(repository, prefix, plan.task_id, dirs.workdir, base, plan.upstream_heads)
            output.add([f"[Magic Box] worktree on branch {task_start.branch} at {task_start.start_commit[:10]}"])
        template, warning = await sync_to_async(resolve_prompt)(plan.task["prompt_file"]) if plan.task.get("prompt_file") else ("", "")
        if warning:
            output.add([f"[Magic Box] {warning}"])
        prompt = compose_prompt(plan.task, plan.spec, plan.upstream_results, template, plan.results)
        await sync_to_async(_record_prompt)(plan.task_run_id, prompt)
        ids = [t["id"] for t in plan.spec["tasks"]]
        command = [references.fill(arg, plan.results, ids) for arg in plan.task["command"]] if plan.task.get("command") else None
        env = base_environment(plan.worker)
        if reason := adapter.unavailable_reason(env):
            raise WorkerUnavailable(reason)
        invocation = adapter.build(
            TaskContext(
                task_id=plan.task_id,
                prompt=prompt,
                command=command,
                output_schema=plan.task.get("output_schema"),
                workdir=dirs.workdir,
                home=dirs.home,
                tmpdir=dirs.tmpdir,
                upstream_dir=dirs.upstream,
                base_env=env,
            )
        )
    except (UnknownWorker, WorkerUnavailable, GitError, references.ReferenceError_, ValueError) as error:
        output.add([f"[Magic Box] {error}"])
        await end(TaskState.FAILED, Outcome(succeeded=False, error=str(error)))
        return

    parser = adapter.parser()
    interrupted = False
    capture_error = ""
    attempt_marker = orphans.marker(owner, plan.task_run_id, plan.attempt)
    invocation.env[orphans.MARKER] = attempt_marker
    output.add([f"[Magic Box] attempt {plan.attempt}: {plan.worker} in {dirs.workdir}"])
    flusher = asyncio.create_task(output.flush_forever())
    lost = asyncio.Event()  # set when the task run was cancelled (or taken over) meanwhile
    lease = asyncio.create_task(_keep_lease(plan.task_run_id, owner, lost))
    running = asyncio.create_task(run_process(
        invocation,
        on_stdout=lambda line: output.add(parser.feed_stdout(line)),
        on_stderr=lambda line: output.add(parser.feed_stderr(line)),
        timeout=plan.timeout,
    ))
    try:
        watch = asyncio.create_task(lost.wait())
        done, _ = await asyncio.wait({running, watch}, return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
        if running not in done:  # cancelled from the browser: kill the process group, record nothing more
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            reason = await sync_to_async(_state_reason)(plan.task_run_id)
            output.add([f"[Magic Box] stopped: {reason or 'the task run was cancelled'}; its processes were killed"])
            await output.flush()
            await anotify_run(plan.run_id)
            return
        result = running.result()
    except (OSError, ValueError) as error:  # ValueError: an argument or variable holds a NUL
        message = f"could not start {invocation.argv[0]}: {error}"
        output.add([f"[Magic Box] {message}"])
        await end(TaskState.FAILED, Outcome(succeeded=False, error=message))
        return
    except asyncio.CancelledError:
        interrupted = True
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        output.add(["[Magic Box] interrupted: the worker process is stopping; its processes were killed"])
        await output.flush()
        raise
    finally:
        flusher.cancel()
        lease.cancel()
        # What left the process group (setsid) is found by its marker and goes too.
        await asyncio.to_thread(orphans.kill_marked, attempt_marker)
        if repo_spec:
            if not interrupted:  # an interrupted attempt starts again from scratch
                capture_error = await _capture(plan, repository, task_start, output)
            if capture_error:
                output.add([f"[Magic Box] the worktree is kept, with the task's work, at {dirs.workdir}"])
            elif not repo_spec.get("keep_worktrees"):
                await worktrees.remove(repository, dirs.workdir)

    if result.timed_out:
        outcome = parser.finish(-1, result.stderr_tail)
        outcome.succeeded = False
        outcome.error = f"timed out after {plan.timeout:g} s; the worker's process group was killed"
        await end(TaskState.TIMED_OUT, outcome)
        return
    outcome = parser.finish(result.exit_code, result.stderr_tail)
    if outcome.succeeded and capture_error:  # downstream tasks would start without its work
        outcome.succeeded, outcome.error = False, capture_error
    if outcome.succeeded and plan.task.get("output_schema"):
        problems = output_problems(outcome.result, plan.task["output_schema"])
        if problems:
            outcome.succeeded = False
            source = plan.task.get("output_schema_ref") or "its output_schema"
            outcome.error = f"the result does not match {source}: " + "; ".join(problems)
            output.add([f"[Magic Box] {outcome.error}"])
    await end(TaskState.SUCCEEDED if outcome.succeeded else TaskState.FAILED, outcome, result.exit_code)


async def _capture(plan: AttemptPlan, repository, task_start: worktrees.TaskStart, output: OutputBuffer) -> str:
    """Commit the task's worktree, store its diff (models.TaskChange) and which unrelated tasks'
    branches it would not merge with. Returns "" or, when git failed, why (not raised)."""
    try:
        head = await changes.commit_worktree(
            task_start.workdir, task_start.branch, f"Magic Box: task {plan.task_id} of run #{plan.run_id} (attempt {plan.attempt})")
        captured = await changes.diff(task_start.workdir, task_start.start_commit, head, TaskChange.PATCH_LIMIT)
        # Stored before looking at the others: of two tasks capturing at once, at least the
        # later one sees the other, so a pair is never missed.
        await sync_to_async(_store_change)(plan, task_start, captured, {})
        conflicts = {}
        for other, other_head in await sync_to_async(_unrelated_heads)(plan) if captured.files else []:
            files = await changes.merge_conflicts(repository, head, other_head)
            if files:
                conflicts[other] = files
        if conflicts:
            await sync_to_async(TaskChange.objects.filter(task_run_id=plan.task_run_id).update)(merge_conflicts=conflicts)
        output.add([f"[Magic Box] changes: {len(captured.files)} file(s), +{captured.lines_added} -{captured.lines_deleted}, "
                    f"commit {head[:10]} on {task_start.branch}"
                    + (f"; would conflict with {', '.join(sorted(conflicts))}" if conflicts else "")])
        return ""
    except GitError as error:
        output.add([f"[Magic Box] the task's changes could not be captured: {error}"])
        return f"its changes could not be committed: {error}"


def _unrelated_heads(plan: AttemptPlan) -> list[tuple[str, str]]:
    """(task id, head commit) of the run's captured changes of tasks neither upstream nor downstream of this one."""
    waits_for = ancestors({t["id"]: t["depends_on"] for t in plan.spec["tasks"]})
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


def output_problems(result: str, schema: dict) -> list[str]:
    """Why `result` (JSON text, or a ```json block in it) does not match `schema`; [] if it does.

    Each problem names the JSON pointer of the fault: "/token: 'token' is a required property".
    """
    try:
        value = references.parse_output(result)
    except ValueError:
        return ["it is not JSON"]
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.path])[:10]
    except RecursionError:
        return ["the schema refers to itself ($ref) without end, so nothing can match it"]
    for error in errors:
        pointer = "/" + "/".join(str(p) for p in error.path)
        problems.append(f"{pointer}: {error.message}")
    return problems


CANCEL_POLL = 1.0  # seconds between checks that a running task run was not cancelled meanwhile


async def _keep_lease(task_run_id: int, owner: str, lost: asyncio.Event) -> None:
    """Renew the lease every third of its length; every second, check the task run is still
    ours and running (a cancel from the browser changes it), and set `lost` when it is not."""
    renew_every = max(1, round(settings.MAGICBOX_LEASE_SECONDS / 3 / CANCEL_POLL))
    beat = 0
    while True:
        await asyncio.sleep(CANCEL_POLL)
        beat += 1
        still_ours = await sync_to_async(scheduler.renew_lease if beat % renew_every == 0 else scheduler.holds)(task_run_id, owner)
        if not still_ours:
            lost.set()
            return


def _state_reason(task_run_id: int) -> str:
    return TaskRun.objects.filter(pk=task_run_id).values_list("state_reason", flat=True).first() or ""
