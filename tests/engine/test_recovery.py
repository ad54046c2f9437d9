"""Every kind of background work survives the death of the worker process doing it.

Real `runworker` processes on the test database (the SQLite file, or PostgreSQL and Redis in
CI's second pass): one of them is stopped (SIGTERM, a deploy) or killed (SIGKILL, a crash)
while it runs a task, a check, a plan draft, an integration or a webhook delivery. The work must be queued again
within the lease, be taken up by the other process, and end by itself, with the lost attempt
not counted against the work and its processes gone.
"""
from __future__ import annotations

import http.server
import json
import os
import pathlib
import signal
import sqlite3
import sys
import threading
from dataclasses import dataclass

import pytest
from django.db import connection
from django.utils import timezone

from orchestration.engine.integration import request_integration
from orchestration.engine.scheduler import cancel_task, start_run
from orchestration.models import Integration, PlanDraft, Run, StateChange, TaskRun, Verdict, Webhook, WebhookDelivery, WorkerSetting
from tests.conftest import processes_with, children_of, git, local_http_server, make_plan, process_alive, wait_until

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
    """Work of one kind, started as a user would; `row()` reads it afresh. has_process: whether
    an attempt runs a process of its own (a webhook delivery is a request the worker makes)."""

    model: type
    pk: int
    has_process: bool = True

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


class HangOnce(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that marks each delivery attempt (marks/attempt-<n>) as BLOCK_ONCE does;
    the first one it never answers (until the test ends), a later one gets 200 at once."""

    marks: pathlib.Path
    released = threading.Event()

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        n = len(list(self.marks.glob("attempt-*")))
        (self.marks / f"attempt-{n}").write_text("0")
        if n == 0:
            self.released.wait(300)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(tmp_path):
    """A HangOnce receiver on 127.0.0.1; its URL."""
    HangOnce.marks = tmp_path / "marks"
    HangOnce.marks.mkdir()
    HangOnce.released.clear()
    with local_http_server(HangOnce) as server:
        yield f"http://127.0.0.1:{server.server_port}/hook"
        HangOnce.released.set()


def start_delivery(marks, repo_path, receiver) -> Started:
    Webhook.objects.create(name="ci", url=receiver, events=["run.started"])
    start_run(make_plan(json.dumps({"name": "announced", "parallel_execution": {"tasks": [
        {"id": "a", "worker": "shell", "command": ["true"]}]}})))
    return Started(WebhookDelivery, WebhookDelivery.objects.get().pk, has_process=False)


STARTS = {"task run": start_task_run, "check": start_check, "draft": start_draft, "integration": start_integration,
          "webhook delivery": start_delivery}
ENDED_WELL = {"task run": "succeeded", "check": "passed", "draft": "succeeded", "integration": "succeeded",
              "webhook delivery": "succeeded"}


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
@pytest.mark.parametrize("kind", list(STARTS))
@pytest.mark.usefixtures("unsandboxed")  # pids from inside a sandbox mean nothing here
def test_work_whose_worker_process_stops_or_dies_is_taken_up_by_another_and_ends(kind, how, spawn_worker, tmp_path, repo, receiver):
    marks = tmp_path / "marks"
    workers = [spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE) for _ in range(2)]
    work = STARTS[kind](marks, repo, *([receiver] if kind == "webhook delivery" else []))
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
    if work.has_process:
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


@pytest.mark.usefixtures("unsandboxed")  # a sandboxed task cannot see, let alone kill, its worker
def test_a_task_that_kills_its_worker_fails_after_three_losses_and_takes_no_other_task_down(spawn_worker, tmp_path):
    # Each attempt of `killer` SIGKILLs the worker process running it (as an out-of-memory kill
    # would), the first time while two innocent tasks run in the same worker process.
    marks = tmp_path / "marks"
    marks.mkdir()
    innocent = ("import pathlib, sys, time; pathlib.Path(sys.argv[1], sys.argv[2]).touch(); time.sleep(3); print('done')")
    killer = ("import os, pathlib, signal, sys, time\n"
              "marks = pathlib.Path(sys.argv[1])\n"
              "while not ((marks / 'one').exists() and (marks / 'two').exists()): time.sleep(0.05)\n"
              "os.kill(os.getppid(), signal.SIGKILL); time.sleep(300)\n")
    plan = make_plan(json.dumps({"name": "killer", "parallel_execution": {"tasks": [
        {"id": "one", "worker": "shell", "command": ["python", "-c", innocent, str(marks), "one"]},
        {"id": "two", "worker": "shell", "command": ["python", "-c", innocent, str(marks), "two"]},
        {"id": "killer", "worker": "shell", "retries": 5, "command": ["python", "-c", killer, str(marks)]}]}}))
    run = start_run(plan)
    workers = [spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE)]

    def ended_with_a_worker_at_hand():
        for worker in list(workers):
            if worker.poll() is not None and not getattr(worker, "replaced", False):
                worker.replaced = True
                workers.append(spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE))
        return Run.objects.get(pk=run.pk).is_finished

    wait_until(ended_with_a_worker_at_hand, 240, "the run to end after the killer killed its workers")
    tasks = {t.task_id: t for t in TaskRun.objects.filter(run=run)}
    assert tasks["killer"].state == "failed" and tasks["killer"].worker_losses == 3
    assert "lost 3 times" in tasks["killer"].error and "kill or exhaust its worker process" in tasks["killer"].error
    assert tasks["killer"].attempts_used == 0, "the task's own 6 attempts were not spent"
    for name in ("one", "two"):  # lost once with the killer's first victim, then run alone and fine
        assert tasks[name].state == "succeeded" and tasks[name].worker_losses == 1, (name, tasks[name].state_reason)
    for worker in workers:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGTERM)


def database_busy() -> bool:
    """Whether some other connection is inside a transaction now (a process frozen there would
    block every writer: SQLite's write lock, PostgreSQL's row locks)."""
    if connection.vendor == "sqlite":
        probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.2)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL")
        return cursor.fetchone()[0] > 0


def freeze_between_transactions(proc) -> None:
    """SIGSTOP `proc` at a moment no transaction is open (else thaw it and try again): a real
    freeze can land anywhere, but one inside a transaction stops every other writer, which no
    engine can help."""
    for _ in range(200):
        proc.send_signal(signal.SIGSTOP)
        if not database_busy():
            return
        proc.send_signal(signal.SIGCONT)
        # Try again right after that transaction ends (a busy engine is in one often).
        wait_until(lambda: not database_busy(), 10, "the worker's transaction to end")
    pytest.fail("could not freeze the worker outside a transaction")


def holder_of(row, workers):
    pid = int(type(row).objects.get(pk=row.pk).claimed_by.split(":")[1])
    return next(w for w in workers if w.pid == pid)


def test_a_frozen_worker_whose_task_was_taken_over_leaves_the_new_attempt_alone_when_it_wakes(spawn_worker, tmp_path, repo):
    # The task writes its own pid into a file of its worktree for a few seconds. Its worker is
    # frozen (SIGSTOP) until the lease runs out and the other worker takes the task over, then
    # woken (SIGCONT): the old attempt must not commit, capture or remove anything any more.
    code = ("import os, pathlib, time\n"
            "for i in range(40):\n"
            "    with open('mine.txt', 'a') as f: f.write(f'{os.getpid()}\\n')\n"
            "    print('line', i, flush=True); time.sleep(0.1)\n")
    plan = make_plan(json.dumps({"name": "frozen", "workspace": {"repository": str(repo), "base": "main"},
                                 "parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": ["python", "-c", code]}]}}))
    workers = [spawn_worker(MAGICBOX_LEASE_SECONDS="4") for _ in range(2)]
    run = start_run(plan)
    task_run = wait_until(lambda: TaskRun.objects.filter(run=run, state="running").first(), 120, "the task to start")
    frozen = holder_of(task_run, workers)
    freeze_between_transactions(frozen)
    try:
        wait_until(lambda: TaskRun.objects.get(pk=task_run.pk).attempt == 2, 60, "the other worker to take the task over")
    finally:
        frozen.send_signal(signal.SIGCONT)
    done = wait_until(lambda: (t := TaskRun.objects.select_related("change").get(pk=task_run.pk)).is_finished and t, 120,
                      "the task to end")
    assert done.state == "succeeded" and done.attempt == 2, (done.state, done.state_reason)
    pids = set(git(repo, "show", f"{done.change.head_commit}:mine.txt").split())
    assert len(pids) == 1, "the file is the second attempt's alone"
    assert "(attempt 2)" in git(repo, "log", "-1", "--format=%s", done.change.head_commit)
    output = done.output_text()
    second = output.index("attempt 2:")
    assert "[Magic Box] attempt 1" not in output[second:] and "stopped" not in output[second:], "the old attempt wrote nothing after"


def test_a_task_cancelled_while_its_worker_is_frozen_or_dead_has_its_processes_killed_by_another_worker(spawn_worker):
    for how in (signal.SIGSTOP, signal.SIGKILL):
        token = f"stuck-task-{how}"  # found in the sandboxed processes' argv, as the host sees them
        plan = make_plan(json.dumps({"name": f"stuck {how}", "parallel_execution": {"tasks": [
            {"id": "stuck", "worker": "shell", "command": ["python", "-c", "import time; time.sleep(300)", token]}]}}))
        workers = [spawn_worker(MAGICBOX_LEASE_SECONDS=LEASE) for _ in range(2)]
        run = start_run(plan)
        wait_until(lambda: processes_with(token), 120, "the task to start")
        task_run = TaskRun.objects.get(run=run)
        holder = holder_of(task_run, workers)
        if how == signal.SIGKILL:
            holder.send_signal(how)
            holder.wait(60)
        else:
            freeze_between_transactions(holder)
        try:
            cancel_task(TaskRun.objects.get(pk=task_run.pk), "cancelled by ada")
            wait_until(lambda: not processes_with(token), 30, "the cancelled task's processes to be killed")
        finally:
            if how == signal.SIGSTOP:
                holder.send_signal(signal.SIGCONT)
        assert Run.objects.get(pk=run.pk).state == "cancelled"
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)


def test_the_schema_helper_of_a_killed_worker_dies_with_it(worker, tmp_path):
    plan = make_plan(json.dumps({"name": "schema", "parallel_execution": {"tasks": [
        {"id": "answer", "worker": "shell", "command": ["python", "-c", "print('\"' + 'a' * 60 + '!\"')"],
         "output_schema": {"type": "string", "pattern": "^(a+)+$"}}]}}))
    start_run(plan)
    helper = wait_until(lambda: next((p for p, cmd in children_of(worker.pid).items() if "output_schema" in cmd), None), 120,
                        "the worker to check the answer against the schema")
    worker.kill()
    worker.wait(60)
    wait_until(lambda: not process_alive(helper), 10, "the schema helper to die with its worker")


def test_a_sandboxed_task_and_its_daemons_die_with_their_worker(worker):
    token = "998.5151"  # the daemon's argv: it cleared its environment, so no marker finds it
    daemonise = ("import os\n"
                 "if os.fork() == 0:\n"
                 "    os.setsid()\n"
                 f"    os.execve('/bin/sleep', ['sleep', '{token}'], {{}})\n"
                 f"os.execvp('sleep', ['sleep', '{token}'])\n")
    plan = make_plan(json.dumps({"name": "daemon", "parallel_execution": {"tasks": [
        {"id": "daemon", "worker": "shell", "command": ["python", "-c", daemonise]}]}}))
    start_run(plan)
    # bwrap (twice: outside and inside its PID namespace), the task and its daemon
    wait_until(lambda: len(processes_with(token)) >= 4, 120, "the task and its daemon to start")
    worker.kill()
    worker.wait(60)
    # The kernel ends the sandbox's PID namespace with its bwrap, which dies with the worker.
    wait_until(lambda: not processes_with(token), 10, "every process of the task to die with its worker")
