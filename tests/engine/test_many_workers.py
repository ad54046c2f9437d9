"""Several `runworker` processes share one run through the database (PostgreSQL in CI's second
pass, the SQLite file otherwise), and a worker process killed with SIGKILL loses nothing."""
from __future__ import annotations

import json
import os
import signal
from collections import Counter, defaultdict

import pytest

from orchestration.engine.scheduler import start_run
from orchestration.models import Run, StateChange, TaskRun
from tests.conftest import make_plan, process_alive, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LAYERS, WIDTH = 4, 50  # 200 tasks: each layer's task i waits for task i of the layer before


def ledger_task(task_id: str, ledger, upstream: list[str]) -> dict:
    """A shell task appending '<id> start <ns>' and '<id> end <ns>' lines to the ledger file."""
    script = 'echo "$1 start $(date +%s%N)" >> "$2"; sleep 0.05; echo "$1 end $(date +%s%N)" >> "$2"'
    return {"id": task_id, "worker": "shell", "command": ["sh", "-c", script, "sh", task_id, str(ledger)],
            "depends_on": upstream}


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    """The largest number of [start, end] intervals that overlap at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_four_worker_processes_share_a_200_task_plan_each_task_once_within_the_global_limit(
        spawn_worker, redis_url, settings, tmp_path):
    ledger = tmp_path / "ledger.txt"
    tasks = [ledger_task(f"l{layer}t{i}", ledger, [f"l{layer - 1}t{i}"] if layer else [])
             for layer in range(LAYERS) for i in range(WIDTH)]
    plan = make_plan(json.dumps({"name": "wide", "parallel_execution": {"tasks": tasks}}))
    # Each process may take 2 task runs, so 4 of them could run 8: the global limit of 5 must hold.
    procs = [spawn_worker(MAGICBOX_MAX_PARALLEL="5", MAGICBOX_WORKER_SLOTS="2") for _ in range(4)]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [redis_url]}}}
    run = start_run(plan)

    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 240, "the 200-task run to finish")
    run.refresh_from_db()
    logs = "\n".join(p.log.read_text() for p in procs)
    assert run.state == "succeeded", (run.state_reason, logs[-3000:])

    task_runs = list(TaskRun.objects.filter(run=run))
    assert len(task_runs) == 200
    assert {t.attempt for t in task_runs} == {1}
    claims = Counter(StateChange.objects.filter(run=run, task_run__isnull=False, to_state="running").values_list("task_run_id", flat=True))
    assert set(claims.values()) == {1} and len(claims) == 200, "every task run was claimed exactly once"

    starts, ends = Counter(), {}
    intervals: dict[str, list[int]] = defaultdict(list)
    for line in ledger.read_text().splitlines():
        task_id, what, ns = line.split()
        intervals[task_id].append(int(ns))
        if what == "start":
            starts[task_id] += 1
        else:
            ends[task_id] = int(ns)
    assert len(starts) == 200 and set(starts.values()) == {1}, "every task's command ran exactly once"
    assert most_at_once([tuple(v) for v in intervals.values()]) <= 5, "the global limit held across processes"
    owners = {t.claimed_by.rsplit(":", 1)[0] for t in task_runs}
    assert len(owners) == 4, f"all four processes took work: {Counter(t.claimed_by for t in task_runs)}"


@pytest.mark.usefixtures("unsandboxed")  # pids from inside a sandbox mean nothing here
def test_a_worker_killed_with_sigkill_mid_task_is_noticed_and_its_task_retried_with_output_kept(
        spawn_worker, tmp_path):
    pid_file = tmp_path / "task.pid"
    code = (
        "import os, sys, time\n"
        f"if os.path.exists({str(pid_file)!r}):\n"
        "    print('attempt two finishes', flush=True); sys.exit(0)\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "print('written before the kill', flush=True)\n"
        "time.sleep(300)\n"
    )
    plan = make_plan(json.dumps({"name": "crash", "parallel_execution": {"tasks": [
        {"id": "victim", "worker": "shell", "retries": 1, "command": ["python", "-c", code]}]}}))
    first = spawn_worker(MAGICBOX_LEASE_SECONDS="3")
    run = start_run(plan)
    task_run = TaskRun.objects.get(run=run)
    wait_until(lambda: "written before the kill" in TaskRun.objects.get(pk=task_run.pk).output_text(), 60,
               "the task's first output to be stored")
    orphan = int(pid_file.read_text())
    first.send_signal(signal.SIGKILL)  # the process only: its task's process group lives on
    first.wait()
    assert process_alive(orphan), "the dead worker's task process lives on until the sweep finds it"
    try:
        spawn_worker(MAGICBOX_LEASE_SECONDS="3")
        # Lease (3 s) + sweep interval (1 s) + the second attempt: well within 30 s.
        wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 30, "the lost task to be retried")
        wait_until(lambda: not process_alive(orphan), 10, "the sweep killed the lost attempt's process before the retry")
    finally:
        if process_alive(orphan):
            os.kill(orphan, signal.SIGKILL)

    task_run.refresh_from_db()
    assert task_run.state == "succeeded" and task_run.attempt == 2
    reasons = list(StateChange.objects.filter(task_run=task_run).values_list("reason", flat=True))
    assert any(r.startswith("worker lost") and "1 leftover process(es) of the attempt killed" in r for r in reasons), reasons
    output = task_run.output_text()
    assert output.index("written before the kill") < output.index("attempt two finishes")
