"""Integrate a run: merge its successful tasks' branches, in dependency order, into one branch
(magicbox/run-<run>/integration from the run's base), stop at the first conflict saying where,
then run the workspace's check command on the result. Background work like task runs
(engine.work): claimed, leased, finished by its claimer only, and started again from the
run's base when its worker process stops or dies."""
from __future__ import annotations

import asyncio
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from orchestration import audit
from orchestration.engine import orphans, work, workspace
from orchestration.engine.db import db
from orchestration.engine.leases import Lease, LeaseLost
from orchestration.engine.output import storable
from orchestration.engine.signals import anotify_run, notify_run_on_commit, wake_engine_on_commit
from orchestration.models import Integration, IntegrationState, PushState, Run, TaskChange, TaskState
from orchestration.plans.graph import topological_order
from orchestration.plans.spec import PlanSpec
from orchestration.plans.repositories import is_url, masked
from orchestration.vcs import changes, conflicts, worktrees
from orchestration.vcs.git import GitError, git
from orchestration.vcs.repository import repository_dir
from orchestration.workers.base import Invocation, WorkerUnavailable
from orchestration.workers.environment import worker_setup
from orchestration.workers import sandbox
from orchestration.workers.process import run_process
from orchestration.workers.tail import Tail

CHECK_TIMEOUT = 1800  # seconds, when the workspace names no check_timeout
CHECK_OUTPUT_LIMIT = 1024 * 1024  # characters of the check's output kept


def request_integration(run: Run, user=None) -> Integration:
    """Queue an integration of a finished run of a workspace plan; the engine is woken.
    Raises ValueError (with the reason) when the run has no workspace, has not ended, has no
    captured changes, or an integration of it is already under way or has succeeded."""
    workspace_spec = run.revision.spec.workspace
    if not workspace_spec:
        raise ValueError("this plan has no workspace repository: there are no branches to integrate")
    if not run.is_finished:
        raise ValueError(f"run #{run.pk} is still {run.state}: integrate it once it has ended")
    with transaction.atomic():
        if run.integrations.filter(state__in=(IntegrationState.QUEUED, IntegrationState.RUNNING)).exists():
            raise ValueError(f"an integration of run #{run.pk} is already under way")
        if done := run.integrations.filter(state=IntegrationState.SUCCEEDED).first():
            raise ValueError(f"run #{run.pk} was already integrated (integration #{done.pk}, on {done.branch}): "
                             "see its result on the run page")
        if not TaskChange.objects.filter(task_run__run=run, task_run__state=TaskState.SUCCEEDED).exists():
            raise ValueError(f"run #{run.pk} has no succeeded task with captured changes to integrate")
        integration = Integration.objects.create(run=run, requested_by=user, check_command=workspace_spec.check,
                                                 branch=worktrees.integration_branch(run.branch_prefix or f"magicbox/run-{run.pk}"))
        audit.record(audit.Action.RUN_INTEGRATED, user, run=run, detail=f"integration #{integration.pk}")
        notify_run_on_commit(run.pk)
        wake_engine_on_commit()
    return integration


def claim_next(owner: str, scope: work.Scope = work.Scope()) -> Integration | None:
    """Claim (engine.work.claim) the oldest queued integration within `scope` for `owner`; or None."""
    for integration in work.claimable(Integration.objects.filter(state=IntegrationState.QUEUED), scope).order_by("created_at")[:5]:
        if work.claim(integration, owner, started_at=timezone.now()):
            return integration
    return None


def _plan_of(integration_id: int) -> tuple[Integration, dict, list[tuple[str, str]]]:
    integration = Integration.objects.select_related("run__revision").get(pk=integration_id)
    spec = integration.run.revision.spec
    heads = dict(TaskChange.objects.filter(task_run__run=integration.run, task_run__state=TaskState.SUCCEEDED)
                 .values_list("task_run__task_id", "head_commit"))
    order = topological_order(spec.dependencies)
    return integration, spec, [(task, heads[task]) for task in order if task in heads]


def _progress(integration_id: int, lease: Lease, **fields) -> None:
    """Record a step of a running integration, while `lease` still holds it."""
    Integration.objects.filter(pk=integration_id, state=IntegrationState.RUNNING, claimed_by=lease.owner,
                               attempt=lease.attempt).update(**fields)


async def execute(integration_id: int, lease: Lease) -> None:
    """Run an integration this process holds through `lease` to its end, recording every step;
    stop (its check's processes killed) when the lease is lost."""
    integration, spec, heads = await db(_plan_of, integration_id)
    try:
        state, reason, extra = await lease.guard(_integrate(integration, spec, heads, lease))
    except LeaseLost:
        return
    await db(work.finish, integration, lease.owner, lease.attempt, state, storable(reason), finished_at=timezone.now(), **extra)
    await anotify_run(integration.run_id)


async def _integrate(integration: Integration, spec: PlanSpec, heads: list[tuple[str, str]], lease: Lease) -> tuple[str, str, dict]:
    """Merge and check; (final state, reason, fields to record)."""
    integration_id = integration.pk
    run_id, ws = integration.run_id, spec.workspace
    workdir = workspace.run_dir(run_id) / "integration" / f"{integration_id}-attempt-{lease.attempt}"
    repository: Path | None = None
    state, reason, extra = IntegrationState.FAILED, "", {}
    try:
        repository = await repository_dir(ws)
        await lease.check()  # before each change to the shared branch: a frozen process may wake taken over
        base = (await git(["rev-parse", "--verify", "--end-of-options",
                           f"{integration.run.base_commit or ws.base or 'HEAD'}^{{commit}}"], repository)).out.strip()
        await worktrees.create(repository, workdir, integration.branch, base)
        merged: list[str] = []
        for task_id, head in heads:
            await lease.check()
            files = await worktrees.merge(workdir, head, f"Magic Box: integrate task {task_id} of run #{run_id}")
            if files:
                reason = f"stopped at {task_id}: merging its branch conflicts in {conflicts.describe(files)}"
                extra = {"conflict": {"task": task_id, "files": files}}
                break
            merged.append(task_id)
            await db(_progress, integration_id, lease, merged=merged)
            await anotify_run(run_id)
        else:
            head = (await git(["rev-parse", "HEAD"], workdir)).out.strip()
            captured = await changes.diff(workdir, base, head, Integration.PATCH_LIMIT)
            extra = {"head_commit": head, "files": captured.files, "patch": storable(captured.patch),
                     "patch_truncated": captured.truncated, "lines_added": captured.lines_added,
                     "lines_deleted": captured.lines_deleted}
            if integration.check_command:
                timeout = ws.check_timeout or CHECK_TIMEOUT
                code, output = await _check(lease.marker, integration.check_command, workdir, timeout)
                extra.update(check_exit_code=code, check_output=storable(output[-CHECK_OUTPUT_LIMIT:]))
                if code == 0:
                    state, reason = IntegrationState.SUCCEEDED, f"merged {len(merged)} branch(es); the check passed"
                elif code is None:
                    reason = f"merged {len(merged)} branch(es); the check timed out after {timeout:g} s"
                else:
                    reason = f"merged {len(merged)} branch(es); the check failed (exit {code})"
            else:
                state, reason = IntegrationState.SUCCEEDED, f"merged {len(merged)} branch(es) cleanly (no check command)"
        if state == IntegrationState.SUCCEEDED and ws.push:
            await lease.check()
            extra.update(await push(repository, ws.repository, integration.branch))
    except GitError as error:
        reason = str(error)
    finally:
        sandbox.discard_git_scratch(workdir)
        if repository is not None and not ws.keep_worktrees:
            try:
                await worktrees.remove(repository, workdir)
            except GitError:
                pass
    return state, reason, extra


async def push(repository: Path, remote: str, branch: str) -> dict:
    """Push `branch` of `repository` (the workspace's git directory) to the workspace's
    `remote` (its URL, credentials and all; only git sees them). Returns the Integration fields
    push_state and push_message (git's words, credentials masked); never raises for git's
    refusal. A local-path workspace is not pushed: the branch is already in it."""
    if not is_url(remote):
        return {"push_state": PushState.NONE,
                "push_message": "not pushed: the repository is a local path on this server and the branch is already in it"}
    try:
        await git(["push", "--quiet", "--", remote, f"refs/heads/{branch}:refs/heads/{branch}"], repository)
    except GitError as error:
        return {"push_state": PushState.FAILED, "push_message": str(error)}
    return {"push_state": PushState.SUCCEEDED, "push_message": f"pushed {branch} to {masked(remote)}"}


async def _check(marker: str, argv: list[str], workdir: Path, timeout: float) -> tuple[int | None, str]:
    """Run the check command in the integration worktree; (exit code or None on timeout, output)."""
    output = Tail(CHECK_OUTPUT_LIMIT)  # only its end stays in memory
    shell, env = await db(worker_setup, "shell")
    env[orphans.MARKER] = marker
    try:
        program = shell.find_program(argv[0])
    except WorkerUnavailable as error:
        return 127, str(error)
    try:
        result = await run_process(Invocation(argv=[program, *argv[1:]], env=env, cwd=workdir), output.add, output.add, timeout,
                                   confinement=sandbox.Confinement(writable=(workdir,)).with_git(workdir))
    finally:
        await asyncio.to_thread(orphans.kill_marked, marker)
    if result.timed_out:
        output.add(f"[Magic Box] the check timed out after {timeout:g} s; its process group was killed")
    return result.exit_code, output.text()
