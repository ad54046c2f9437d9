"""Every kind of background work survives the death of the worker process doing it.

Real `runworker` processes on the test database (the SQLite file, or PostgreSQL and Redis in
CI's second pass): one of them is stopped (SIGTERM, a deploy) or killed (SIGKILL, a crash)
while it runs a task, a check, a plan draft or an integration. The work must be queued again
within the lease, be taken up by the other process, and end by itself, with the lost attempt
not counted against the work and its processes gone.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass

import pytest
from django.utils import timezone

from orchestration.engine.integration import request_integration
from orchestration.engine.scheduler import start_run
from orchestration.models import Integration, PlanDraft, Run, StateChange, TaskRun, Verdict, WorkerSetting
from tests.conftest import make_plan, process_alive, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = "15"  # seconds: recovery must come well within it

# The work's process: it marks each attempt (marks/attempt-<n> holds its pid); the first
# attempt then hangs (until killed), a later one prints argv[2] and ends at once.
BLOCK_ONCE = (
    "import os, pathlib, sys, time\n"
    "marks = pathlib.Path(sys.argv[1]); marks.mkdir(exist_ok=True)\n"
    "n = len(list(marks.glob('attempt-*')))\n"
    "(marks / f'attempt-{n}').write_text(str(os.getpid()))\n"
    "if n == 0:\n"
    "    time.sleep(300)\n"
    "print(sys.argv[2] if len(sys.argv) > 2 else 'done', flush=True)\n"
)

DRAFTED_PLAN = "name: Drafted\nparallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: 'true'}\n"


def block_once(marks, answer: str = "done") -> list[str]:
    return ["python", "-c", BLOCK_ONCE, str(marks), answer]


@dataclass
class Started:
    """Work of one kind, started as a user would; `row()` reads it afresh."""

    model: type
    pk: int

    def row(self):
        return self.model.objects.get(pk=self.pk)


def start_task_run(marks, repo_path) -> Started:
    plan = make_plan(json.dumps({"name": "task", "parallel_execution": {"tasks": [
        {"id": "work", "worker": "shell", "command": block_once(marks)}]}}))
    return Started(TaskRun, TaskRun.objects.get(run=start_run(plan)).pk)


def start_check(marks, repo_path) -> Started:
    plan = make_plan(json.dumps({"name": "check", "parallel_execution": {
        "tasks": [{"id": "a", "worker": "shell", "command": ["true"]}],
        "completion_criteria": [{"name": "tests pass", "command": block_once(marks)}]}}))
    return Started(Verdict, Verdict.objects.get(run=start_run(plan)).pk)


def start_draft(marks, repo_path) -> Started:
    # A stand-in for the claude CLI, configured as an administrator would: it answers with
    # claude's stream-json `result` event holding the plan.
    event = json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": DRAFTED_PLAN})
    WorkerSetting.objects.create(worker="claude", program=sys.executable, args=["-c", BLOCK_ONCE, str(marks), event],
                                 env={"ANTHROPIC_API_KEY": "test-key"})
    return Started(PlanDraft, PlanDraft.objects.create(goal="a login page", worker="claude").pk)


def start_integration(marks, repo_path) -> Started:
    plan = make_plan(json.dumps({"name": "integrate", "workspace": {"repository": str(repo_path), "base": "main",
                                                                     "check": block_once(marks)},
                                 "parallel_execution": {"tasks": [
                                     {"id": "a", "worker": "shell", "command": ["python", "-c", "open('a.txt', 'w').write('a')"]}]}}))
    run = start_run(plan)
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 120, "the run to end before integrating it")
    assert Run.objects.get(pk=run.pk).state == "succeeded"
    return Started(Integration, request_integration(Run.objects.get(pk=run.pk)).pk)


STARTS = {"task run": start_task_run, "check": start_check, "draft": start_draft, "integration": start_integration}
ENDED_WELL = {"task run": "succeeded", "check": "passed", "draft": "succeeded", "integration": "succeeded"}


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
@pytest.mark.parametrize("kind", list(STARTS))
def test_work_whose_worker_process_stops_or_dies_is_taken_up_by_another_and_ends(kind, how, spawn_worker, tmp_path, repo):
    marks = tmp_path / "marks"
    workers = [spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE) for _ in range(2)]
    work = STARTS[kind](marks, repo)
    first_attempt = int(wait_until(lambda: (marks / "attempt-0").exists() and (marks / "attempt-0").read_text(), 120,
                                   f"the {kind} to start"))
    holder_pid = int(work.row().claimed_by.split(":")[1])
    holder = next(w for w in workers if w.pid == holder_pid)

    holder.send_signal(how)  # the process only: after SIGKILL its attempt's processes live on as orphans
    holder.wait(60)
    hit_at = timezone.now()
    lost = "interrupted" if how == signal.SIGTERM else "worker lost"
    change = wait_until(lambda: StateChange.objects.filter(kind=work.model.KIND, object_id=work.pk, from_state="running",
                                                           reason__startswith=lost).first(),
                        int(LEASE), f"the {kind} to be queued again")
    assert (change.at - hit_at).total_seconds() < int(LEASE), "queued again within the lease"

    row = wait_until(lambda: (r := work.row()).is_finished and r, 120, f"the {kind} to end")
    assert row.state == ENDED_WELL[kind], (row.state, row.state_reason, [w.log.read_text()[-2000:] for w in workers])
    assert row.attempt == 2 and row.attempts_used == 1, "the lost attempt does not count against the work"
    assert (row.interruptions, row.worker_losses) == ((1, 0) if how == signal.SIGTERM else (0, 1))
    wait_until(lambda: not process_alive(first_attempt), 10, "the lost attempt's process to be killed")
    if kind in ("task run", "check"):
        run = wait_until(lambda: (r := Run.objects.get(pk=row.run_id)).is_finished and r, 60, "the run to end")
        assert run.state == "succeeded", run.state_reason


def test_a_task_without_retries_whose_worker_is_killed_once_still_succeeds(spawn_worker, tmp_path):
    marks = tmp_path / "marks"
    first = spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE)
    work = start_task_run(marks, None)
    assert work.row().max_attempts == 1
    wait_until(lambda: (marks / "attempt-0").exists(), 120, "the task to start")
    first.send_signal(signal.SIGKILL)
    first.wait(60)
    spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE)
    row = wait_until(lambda: (r := work.row()).is_finished and r, 120, "the task to end")
    assert row.state == "succeeded" and row.worker_losses == 1, row.state_reason


def test_a_task_that_kills_its_worker_every_time_fails_after_three_losses_naming_the_cause(spawn_worker, tmp_path):
    # Each attempt SIGKILLs the worker process running it (as an out-of-memory kill would).
    plan = make_plan(json.dumps({"name": "killer", "parallel_execution": {"tasks": [
        {"id": "killer", "worker": "shell", "retries": 5,
         "command": ["python", "-c", "import os, signal, time; os.kill(os.getppid(), signal.SIGKILL); time.sleep(300)"]}]}}))
    run = start_run(plan)
    task_run = TaskRun.objects.get(run=run)
    workers = [spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE)]

    def ended_with_a_worker_at_hand():
        for worker in workers:
            if worker.poll() is not None and not getattr(worker, "replaced", False):
                worker.replaced = True
                workers.append(spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE))
        return TaskRun.objects.get(pk=task_run.pk).is_finished

    wait_until(ended_with_a_worker_at_hand, 240, "the task to fail after killing its workers")
    task_run.refresh_from_db()
    assert task_run.state == "failed" and task_run.worker_losses == 3
    assert "lost 3 times" in task_run.error and "kill or exhaust its worker process" in task_run.error
    assert task_run.attempts_used == 0, "the task's own 6 attempts were not spent"
    for worker in workers:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGTERM)
