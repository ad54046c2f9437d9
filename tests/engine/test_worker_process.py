"""A real `runworker magicbox.engine` process: it finds work on its own and stops gracefully."""
from __future__ import annotations

import json
import signal

import pytest

from orchestration.engine.scheduler import start_run
from orchestration.models import TaskRun
from tests.conftest import make_plan, process_alive, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.usefixtures("unsandboxed")  # pids from inside a sandbox mean nothing here
def test_a_worker_started_after_the_run_picks_it_up_and_sigterm_requeues_its_task(worker, tmp_path):
    pid_file = tmp_path / "task.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    plan = make_plan(json.dumps({"name": "long", "parallel_execution": {"tasks": [
        {"id": "long", "worker": "shell", "command": ["python", "-c", code]}]}}))
    run = start_run(plan)  # its wake-up goes nowhere this worker listens: the sweep finds it
    task_pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 60, "the task to start"))

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.log.read_text()

    task_run = TaskRun.objects.get(run=run)
    assert task_run.state == "queued" and task_run.state_reason.startswith("interrupted")
    assert task_run.attempts_used == 0 and task_run.interruptions == 1, "an interrupted attempt does not use up a retry"
    assert "interrupted: the worker process is stopping" in task_run.output_text()
    wait_until(lambda: not process_alive(task_pid), 10, "the task's process to be killed")
