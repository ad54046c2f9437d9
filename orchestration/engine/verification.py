"""Run a claimed check in a worker process: a command, or a contract's outputs against its schema.

A criterion's command is met when it exits 0; a contract check's command must also print JSON
on stdout matching the named schema of the contract; an outputs check validates the
provider's and/or consumer's results against it. Commands run in the run's directory with a
timeout; schemas are applied off the event loop with a time limit (engine.validation). The
verdict is the final write of the check's claim (engine.work.finish); the run is then advanced,
since its end may wait for this check.
"""
from __future__ import annotations

import asyncio
import math
import re
import shlex
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from orchestration.engine import checks, choosing, gates, orphans, scheduler, work, workspace
from orchestration.engine.checks import EVIDENCE_LIMIT, CheckJob
from orchestration.engine.db import db
from orchestration.engine.leases import Lease, LeaseLost
from orchestration.engine.output import storable
from orchestration.engine.signals import anotify_run
from orchestration.engine.validation import output_problems
from orchestration.models import CheckState, Verdict
from orchestration.workers.base import Invocation, WorkerUnavailable
from orchestration.workers.environment import worker_setup
from orchestration.workers import sandbox
from orchestration.workers.process import run_process
from orchestration.workers.tail import Tail


STDOUT_LIMIT = 16 * 2**20  # characters of a check command's stdout checked against a contract schema


def _load(verdict_id: int) -> tuple[Verdict, CheckJob]:
    verdict = Verdict.objects.select_related("run__revision").get(pk=verdict_id)
    return verdict, checks.job_of(verdict)


async def execute(verdict_id: int, lease: Lease) -> None:
    """Decide a check this process has claimed and holds through `lease`, then advance its run.

    Stops (killing the command's processes) without writing anything when the lease is lost
    (the run was cancelled meanwhile).
    """
    verdict, job = await db(_load, verdict_id)
    winner = ""
    try:
        if verdict.kind == "choice":
            state, summary, evidence, winner = await lease.guard(_run_choice(verdict.run_id, job, lease.marker))
        elif job.command is None:
            state, summary, evidence = await _check_outputs(job)
        else:
            state, summary, evidence = await lease.guard(_run_command(verdict.run_id, job, lease.marker))
    except LeaseLost:
        return
    await db(_record, verdict, lease, state, summary, evidence, winner)
    await anotify_run(verdict.run_id)


async def _check_outputs(job: CheckJob) -> tuple[str, str, str]:
    """(state, summary, evidence) of an outputs check."""
    problems, evidence = [], []
    for role, task_id, result in job.outputs:
        if result is None:
            problems.append(f"the contract has no {role} task" if not task_id else f"{role} {task_id} has no result")
            continue
        evidence.append(f"{role} {task_id}:\n{result[:5000]}")
        problems += [f"{role} {task_id} {p}" for p in await output_problems(result, job.schema)]
    roles = " and ".join(role for role, _, _ in job.outputs)
    summary = "; ".join(problems) if problems else f"{roles} output matches the contract"
    return (CheckState.FAILED if problems else CheckState.PASSED), summary, "\n\n".join(evidence)


async def _run_command(run_id: int, job: CheckJob, marker: str) -> tuple[str, str, str]:
    """(state, summary, evidence) of a command check, run in the run's directory."""
    argv = job.command
    cwd = job.cwd or workspace.run_dir(run_id)
    cwd.mkdir(parents=True, exist_ok=True)
    shell, env = await db(worker_setup, "shell")
    env.update({"MAGICBOX_RUN_DIR": str(cwd), orphans.MARKER: marker})
    try:
        program = shell.find_program(argv[0])
    except WorkerUnavailable as error:
        return CheckState.FAILED, str(error), ""
    shown = Tail(EVIDENCE_LIMIT)  # what the evidence keeps; stdout, for a schema, up to STDOUT_LIMIT
    stdout = Tail(STDOUT_LIMIT)

    def out(line: str) -> None:
        stdout.add(line)
        shown.add(line)

    try:
        result = await run_process(Invocation(argv=[program, *argv[1:]], env=env, cwd=Path(cwd)), out, shown.add, timeout=job.timeout,
                                   confinement=sandbox.Confinement(writable=(), readable=(Path(cwd),)))  # reads the run, changes nothing of it
    except (OSError, ValueError) as error:  # not executable, or a NUL in an argument
        return CheckState.FAILED, f"could not start {argv[0]}: {error}", ""
    finally:
        await asyncio.to_thread(orphans.kill_marked, marker)
    evidence = f"$ {shlex.join(argv)}\n" + shown.text()
    if result.timed_out:
        return CheckState.FAILED, f"timed out after {job.timeout:g} s", evidence
    if result.exit_code != 0:
        return CheckState.FAILED, f"exited with code {result.exit_code}", evidence
    if job.schema is not None:
        if stdout.cut:
            return CheckState.FAILED, f"its output is larger than {STDOUT_LIMIT // 2**20} MiB, too large to check against the contract", evidence
        problems = await output_problems(stdout.text(), job.schema)  # stdout only: stderr is evidence
        if problems:
            return CheckState.FAILED, "output does not match the contract: " + "; ".join(problems), evidence
        return CheckState.PASSED, "output matches the contract", evidence
    return CheckState.PASSED, "exited with code 0", evidence


SCORE = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


async def _run_choice(run_id: int, job: CheckJob, marker: str) -> tuple[str, str, str, str]:
    """(state, summary, evidence, winner) of a choice among candidates: the command run in each
    candidate's directory in turn; the first to exit 0 wins, or with `score`, the one whose
    output's last line holds the highest number (of those that exit 0). winner: "" for none."""
    evidence, scores = [], {}
    for task_id, cwd in job.candidates:
        state, summary, shown = await _run_command(run_id, CheckJob(job.command, job.timeout, None, [], cwd=cwd), marker)
        evidence.append(f"## {task_id}: {summary}\n{shown}")
        if state != CheckState.PASSED:
            continue
        if not job.score:
            return CheckState.PASSED, f"{task_id} is the first to pass", "\n\n".join(evidence), task_id
        printed = shown.split("\n", 1)[1] if "\n" in shown else ""  # after the "$ command" line
        last = next((line for line in reversed(printed.splitlines()) if line.strip()), "")
        if (found := SCORE.findall(last)) and math.isfinite(value := float(found[-1])):
            scores[task_id] = value
    if scores:
        best = max(scores, key=lambda t: scores[t])  # the first of equals, in candidate order
        listed = ", ".join(f"{t} {v:g}" for t, v in scores.items())
        return CheckState.PASSED, f"{best} has the best score ({listed})", "\n\n".join(evidence), best
    why = "printed no score on its last line" if job.score else "passed"
    return CheckState.FAILED, f"no candidate {why}", "\n\n".join(evidence), ""


def _record(verdict: Verdict, lease: Lease, state: str, summary: str, evidence: str, winner: str = "") -> None:
    """The check's verdict and, when it was the last one, the run's end: one transaction. A
    gate's check decides its gate; a choice's check, the winner among the candidates."""
    with transaction.atomic():
        if work.finish(verdict, lease.owner, lease.attempt, state, summary=storable(summary[:2000]), evidence=storable(evidence[-EVIDENCE_LIMIT:]),
                       decided_at=timezone.now()):
            # A gate's check approves or rejects it, a choice's makes the winner's result the task's
            # (each advancing the run); when its task no longer waits for it (cancelled), the run
            # is advanced all the same: it may have ended.
            decided = (gates.checked(verdict) if verdict.kind == "gate" else
                       choosing.checked(verdict, winner) if verdict.kind == "choice" else False)
            if not decided:
                scheduler.advance_run(verdict.run_id)
