"""Loops, candidates and gates under hostile plans and answers (from a break-it pass): every run ends, and each
answer is read for what it is."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.runtime import Engine
from orchestration.engine.scheduler import start_run
from orchestration.models import Run, TaskRun
from orchestration.plans.errors import PlanInvalid
from tests.conftest import drain_engine, make_plan, py, run_tasks

# A review that asks for changes once (until its prompt carries its own findings), then approves.
REVIEW_TWICE = py("import os; print('APPROVE' if 'Review findings' in os.environ['MAGICBOX_PROMPT'] else 'REQUEST_CHANGES\\nfix it')")


async def run_like_a_worker(tasks: list[dict], sweeps: int = 3, **plan_fields):
    """Start a plan and work on it as a real worker process would: drain the engine, then run
    the periodic sweep (which advances every run) a few times. Returns (Run, {task id: TaskRun})."""
    plan = await sync_to_async(make_plan)(json.dumps({"name": "p", "parallel_execution": {"tasks": tasks}, **plan_fields}))
    run = await sync_to_async(start_run)(plan)
    engine = Engine()
    for _ in range(sweeps):
        await asyncio.wait_for(drain_engine(engine), 60)
        await asyncio.wait_for(engine.sweep(), 60)
    await asyncio.wait_for(drain_engine(engine), 60)
    run = await Run.objects.aget(pk=run.pk)
    rows = await sync_to_async(list)(TaskRun.objects.filter(run=run))
    return run, {t.task_id: t for t in rows}


def states(t: dict) -> dict:
    return {k: (v.state, v.state_reason[:120]) for k, v in t.items()}


# -- runs that never end -------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_two_loops_each_fixing_a_task_the_other_review_reads_are_refused_or_end():
    """r1 fixes a, r2 fixes b, both read a and b. PlanSpec.dependencies makes r2 wait for r1
    (r2 is downstream of r1's fix) and r1 wait for r2: a cycle the validation never sees."""
    ok = py("print('ok')")
    tasks = [
        {"id": "a", "worker": "shell", "command": ok},
        {"id": "b", "worker": "shell", "command": ok},
        {"id": "r1", "worker": "shell", "command": py("print('APPROVE')"), "depends_on": ["a", "b"], "loop": {"fixes": ["a"]}},
        {"id": "r2", "worker": "shell", "command": py("print('APPROVE')"), "depends_on": ["a", "b"], "loop": {"fixes": ["b"]}},
    ]
    try:
        run, t = await run_like_a_worker(tasks)
    except PlanInvalid:
        return  # refused at import: fine
    assert run.state in ("succeeded", "failed", "cancelled"), f"the run never ends: {run.state}, {states(t)}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_candidates_of_a_task_start_as_soon_as_its_upstream_task_succeeded():
    """a -> ui (candidates). a's end queues spec.downstream(a) == ['ui'] (advance_after), not
    the candidate rows ui.1, ui.2 that actually wait for a: they stay pending until the next
    periodic sweep (every MAGICBOX_SWEEP_INTERVAL s), or forever with an engine that does not sweep."""
    run, t = await run_tasks([
        {"id": "a", "worker": "shell", "command": py("print('a')")},
        {"id": "ui", "description": "x", "command": py("print('candidate')"), "candidates": {"worker": "shell", "n": 2},
         "choose": {"command": py("print('fine')")}, "depends_on": ["a"]},
    ])
    assert run.state == "succeeded", f"{run.state}: {states(t)}"


# -- loops and candidates together ---------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_choosing_review_answering_a_5000_digit_number_fails_the_choice_not_magic_box():
    """named_candidate does int() on the digits of the answer's first line: over 4300 digits
    Python raises ValueError inside the review's final write, and the review is failed with
    'internal error in Magic Box' instead of the choice failing with how to answer."""
    run, t = await run_tasks([
        {"id": "ui", "description": "x", "command": py("print('c')"), "candidates": {"worker": "shell", "n": 2},
         "choose": {"review": "judge"}},
        {"id": "judge", "worker": "shell", "depends_on": ["ui"], "command": py("print('9' * 5000)")},
    ])
    assert "internal error" not in t["judge"].state_reason, states(t)
    assert t["judge"].state == "succeeded" and "named no succeeded candidate" in t["ui"].state_reason, states(t)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_score_command_that_prints_nothing_gives_no_score():
    """With score: true, _run_choice reads the last line of the check's evidence, whose first
    line is '$ <the command>': a command printing nothing is scored by the numbers in its own
    command line (here 42), and a candidate wins on a score nobody printed."""
    run, t = await run_tasks([
        {"id": "ui", "description": "x", "command": py("print('c')"), "candidates": {"worker": "shell", "n": 2},
         "choose": {"command": ["python", "-c", "pass  # threshold 42"], "score": True}},
    ])
    assert t["ui"].state == "failed" and "printed no score" in t["ui"].state_reason, states(t)


# -- check gates see the task's work -------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_check_gate_in_a_workspace_runs_in_the_tasks_worktree(repo):
    """The executor removes the task's worktree when the attempt ends (keep_worktrees false),
    before the gate's check runs; checks.job_of then falls back to the run's directory, so the
    check never sees the task's work and rejects a good build."""
    run, t = await run_tasks([
        {"id": "build", "worker": "shell", "command": py("import pathlib; pathlib.Path('artefact.txt').write_text('v1')"),
         "gate": {"command": py("import pathlib, sys; sys.exit(0 if pathlib.Path('artefact.txt').exists() else 1)")}},
        {"id": "ship", "worker": "shell", "command": py("print('ship')"), "depends_on": ["build"]},
    ], workspace={"repository": str(repo), "base": "main"})
    assert run.state == "succeeded", f"{run.state}: {states(t)}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_task_with_candidates_whose_upstream_failed_is_skipped_not_failed():
    """a fails: ui.1 and ui.2 are skipped, then _advance_choice -> candidates.start_choosing fails
    ui itself ('no candidate succeeded'), so the run lists ui among the failures and e blames ui
    instead of a (every other task downstream of a failure is skipped, naming the root)."""
    run, t = await run_tasks([
        {"id": "a", "worker": "shell", "command": py("import sys; sys.exit(3)")},
        {"id": "ui", "description": "x", "command": py("print('c')"), "candidates": {"worker": "shell", "n": 2},
         "choose": "person", "depends_on": ["a"]},
        {"id": "e", "worker": "shell", "command": py("print('e')"), "depends_on": ["ui"]},
    ])
    assert t["ui"].state == "skipped" and "'a'" in t["ui"].state_reason, states(t)
    assert "ui failed" not in run.state_reason and "'a'" in t["e"].state_reason


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_cancelling_a_task_while_its_gate_check_runs_ends_the_run():
    """cancel_task on a task waiting at a check gate cancels it and what waits for it, but not
    its running gate Verdict: the check goes on to its end, and the run cannot end before it
    (checks.prepare waits for undecided verdicts). When the check ends, gates.checked finds the
    task no longer waiting and returns without advancing the run: it stays 'running' with every
    task cancelled until some later sweep."""
    from orchestration.engine.scheduler import cancel_task
    from orchestration.models import Verdict

    plan = await sync_to_async(make_plan)(json.dumps({"name": "p", "parallel_execution": {"tasks": [
        {"id": "b", "worker": "shell", "command": py("print(1)"), "gate": {"command": py("import time; time.sleep(2)")}},
        {"id": "d", "worker": "shell", "command": py("print(1)"), "depends_on": ["b"]}]}}))
    run = await sync_to_async(start_run)(plan)
    engine = Engine()
    await engine.wake()
    for _ in range(200):
        if await Verdict.objects.filter(run=run, kind="gate", state="running").aexists():
            break
        await asyncio.sleep(0.05)
    assert await sync_to_async(cancel_task)(await TaskRun.objects.aget(run=run, task_id="b"), "stop")
    await asyncio.wait_for(drain_engine(engine), 60)
    run = await Run.objects.aget(pk=run.pk)
    assert run.state == "cancelled", run.state
