"""`manage.py runplan` runs a plan headless, on its own, with the embedded Redis."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import process_alive, wait_until

ROOT = Path(__file__).resolve().parents[2]


def runplan(tmp_path: Path, plan_text: str, *extra: str) -> subprocess.CompletedProcess:
    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_text)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["MAGICBOX_DATA_DIR"] = str(tmp_path / "data")
    env["MAGICBOX_SANDBOX_WRITABLE"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "runplan", str(plan), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )


GOOD = """
name: headless
parallel_execution:
  tasks:
    - {id: first, worker: shell, command: [python, -c, "print('one')"]}
    - {id: second, worker: shell, command: [python, -c, "print('two')"], depends_on: [first]}
"""

BAD = """
name: headless-failing
parallel_execution:
  tasks:
    - {id: first, worker: shell, command: [python, -c, "import sys; sys.exit(2)"]}
    - {id: second, worker: shell, command: [python, -c, "print('two')"], depends_on: [first]}
"""


def test_runplan_prints_state_changes_and_exits_0_when_the_run_succeeds(tmp_path):
    result = runplan(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "first: running" in out and "first: succeeded" in out and "second: succeeded" in out
    assert out.index("first: succeeded") < out.index("second: running")
    assert "succeeded: all 2 tasks succeeded" in out


def test_runplan_exits_1_and_names_the_failure_when_the_run_fails(tmp_path):
    result = runplan(tmp_path, BAD)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "first: failed — exited with code 2" in result.stdout
    assert "second: skipped — upstream task 'first' did not succeed" in result.stdout


def test_runplan_rejects_an_invalid_plan_with_its_line(tmp_path):
    result = runplan(tmp_path, "parallel_execution:\n  tasks:\n    - {id: a, worker: nobody, description: x}\n")
    assert result.returncode != 0
    assert "plan.yaml:3:" in result.stderr and "unknown worker 'nobody'" in result.stderr


@pytest.mark.parametrize("mapping", ["gemini", "gemini=", "=claude"])
def test_runplan_explains_a_malformed_worker_map(tmp_path, mapping):
    result = runplan(tmp_path, GOOD, "--map", mapping)
    assert result.returncode != 0 and "write it as FROM=TO" in result.stderr


@pytest.mark.usefixtures("unsandboxed")  # pids from inside a sandbox mean nothing here
def test_ctrl_c_cancels_the_run_and_kills_its_tasks(tmp_path):
    pid_file = tmp_path / "task.pid"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "name: interrupted\nparallel_execution:\n  tasks:\n"
        "    - id: long\n      worker: shell\n      command:\n        - python\n        - -c\n"
        f"        - \"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); print('started', flush=True); time.sleep(300)\"\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["MAGICBOX_DATA_DIR"] = str(tmp_path / "data")
    env["MAGICBOX_SANDBOX_WRITABLE"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runplan", str(plan)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # wait for the state change, not a fixed delay
        if "long: running" in line:
            break
    deadline = time.monotonic() + 60
    while not pid_file.exists():  # the task writes it as its first act
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "cancelled" in out and "Traceback" not in out
    task_pid = int(pid_file.read_text())
    wait_until(lambda: not process_alive(task_pid), 10, "the task's process to be killed")


def test_runplan_does_its_own_runs_work_only(tmp_path):
    # Another run waits in the same database for a worker process: runplan leaves it alone.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["MAGICBOX_DATA_DIR"] = str(tmp_path / "data")
    env["MAGICBOX_SANDBOX_WRITABLE"] = str(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text("name: waiting\nparallel_execution:\n  tasks:\n    - {id: w, worker: shell, command: [python, -c, \"print('w')\"]}\n")
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=180)
    code = ("import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'magicbox_web.settings'); django.setup();"
            "from orchestration.plans.store import import_file; from orchestration.engine.scheduler import start_run;"
            f"from pathlib import Path; print(start_run(import_file(Path({str(other)!r}))[0].plan).pk)")
    waiting = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert waiting.returncode == 0, waiting.stderr
    result = runplan(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    check = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'magicbox_web.settings'); django.setup();"
             f"from orchestration.models import TaskRun; print(TaskRun.objects.get(run_id={waiting.stdout.split()[-1]}).state)")
    state = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert state.stdout.strip() == "queued", "the other run's task is still waiting for a worker process"
