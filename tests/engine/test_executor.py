"""What a task attempt does: its environment, results handed downstream, failures, timeouts."""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.scheduler import start_run
from orchestration.models import TaskRun
from tests.conftest import make_plan, process_alive, run_tasks, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def output_of(task_run: TaskRun) -> str:
    return await sync_to_async(task_run.output_text)()


async def test_a_downstream_task_receives_its_upstream_results():
    reader = (
        "import os, pathlib\n"
        "d = pathlib.Path(os.environ['MAGICBOX_UPSTREAM_DIR'])\n"
        "print('file:', (d / 'backend.result').read_text().strip())\n"
        "print('prompt has it:', 'POST /api/login ready' in os.environ['MAGICBOX_PROMPT'])\n"
    )
    run, t = await run_tasks([
        {"id": "backend", "worker": "shell", "command": ["python", "-c", "print('POST /api/login ready')"]},
        {"id": "frontend", "worker": "shell", "command": ["python", "-c", reader], "depends_on": ["backend"],
         "description": "Build the login form"},
    ])
    assert run.state == "succeeded"
    assert "file: POST /api/login ready" in t["frontend"].result
    assert "prompt has it: True" in t["frontend"].result
    assert "## Result of upstream task backend\nPOST /api/login ready" in t["frontend"].prompt


async def test_a_worker_whose_program_is_missing_fails_at_once_saying_what_to_install():
    run, t = await run_tasks([{"id": "a", "worker": "shell", "command": ["no-such-program-xyz", "--version"]}])
    assert t["a"].state == "failed"
    assert "needs the program 'no-such-program-xyz', which is not installed" in t["a"].error
    assert "needs the program 'no-such-program-xyz'" in await output_of(t["a"])
    assert run.state == "failed"


async def test_each_task_runs_in_its_own_working_directory_with_a_private_home():
    code = "import os; print(os.getcwd()); print(os.environ['HOME']); open('mine.txt', 'w').write('x')"
    run, t = await run_tasks([
        {"id": "one", "worker": "shell", "command": ["python", "-c", code]},
        {"id": "two", "worker": "shell", "command": ["python", "-c", code]},
    ])
    one, two = t["one"].result.split(), t["two"].result.split()
    assert one[0] != two[0] and one[1] != two[1]
    assert one[0].endswith("/one/attempt-1/work") and os.path.exists(os.path.join(one[0], "mine.txt"))


async def test_the_environment_is_an_allowlist_not_the_servers(monkeypatch):
    monkeypatch.setenv("DATABASE_PASSWORD_FOR_TEST", "hunter2")
    monkeypatch.setenv("CLAUDECODE", "1")
    code = "import os; print(sorted(k for k in os.environ if k in ('DATABASE_PASSWORD_FOR_TEST', 'CLAUDECODE')))"
    run, t = await run_tasks([{"id": "a", "worker": "shell", "command": ["python", "-c", code]}])
    assert t["a"].result.strip() == "[]"


@pytest.mark.usefixtures("unsandboxed")  # pids from inside a sandbox mean nothing here
async def test_a_task_that_runs_too_long_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    run, t = await run_tasks([{"id": "slow", "worker": "shell", "command": ["python", "-c", code], "timeout": 1.5}])
    assert t["slow"].state == "timed_out"
    assert "timed out after 1.5 s" in t["slow"].error
    assert "started" in await output_of(t["slow"])
    wait_until(lambda: not process_alive(int(pid_file.read_text())), 10, "the background child to be killed")


@pytest.mark.usefixtures("unsandboxed")  # pids from inside a sandbox mean nothing here
async def test_a_child_that_left_the_process_group_does_not_outlive_its_task(tmp_path):
    pid_file = tmp_path / "daemon.pid"
    code = (
        "import subprocess, sys\n"
        "daemon = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True,\n"
        "                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(daemon.pid))\n"
        "print('left a daemon behind')\n"
    )
    run, t = await run_tasks([{"id": "leaky", "worker": "shell", "command": ["python", "-c", code]}])
    assert t["leaky"].state == "succeeded"
    wait_until(lambda: not process_alive(int(pid_file.read_text())), 10, "the setsid() child was found by its marker and killed")


async def test_a_failed_attempt_is_retried_when_the_task_allows_it(tmp_path):
    marker = tmp_path / "tried-once"
    code = f"import os, sys; p = {str(marker)!r}\nif os.path.exists(p): print('second try'); sys.exit(0)\nopen(p, 'w').close(); print('first try'); sys.exit(1)"
    run, t = await run_tasks([{"id": "flaky", "worker": "shell", "command": ["python", "-c", code], "retries": 1}])
    assert t["flaky"].state == "succeeded" and t["flaky"].attempt == 2
    output = await output_of(t["flaky"])
    assert output.index("first try") < output.index("second try")


async def test_retries_wait_a_backoff_that_doubles(settings):
    from orchestration.models import StateChange

    settings.MAGICBOX_RETRY_BACKOFF = 0.4
    code = "import sys; print('failing'); sys.exit(1)"
    run, t = await run_tasks([{"id": "flaky", "worker": "shell", "command": ["python", "-c", code], "retries": 2}])
    assert t["flaky"].state == "failed" and t["flaky"].attempt == 3
    changes = await sync_to_async(list)(StateChange.objects.filter(task_run=t["flaky"]).order_by("at", "id"))
    requeued = [c for c in changes if c.from_state == "running" and c.to_state == "queued"]
    restarted = [c for c in changes if c.from_state == "queued" and c.to_state == "running"][1:]
    assert [r.reason.rsplit("retrying in ", 1)[1] for r in requeued] == ["0.4 s", "0.8 s"]
    # A change is recorded a moment after its backoff was measured from: allow that moment.
    waits = [(s.at - r.at).total_seconds() for r, s in zip(requeued, restarted)]
    assert waits[0] >= 0.4 - 0.05 and waits[1] >= 0.8 - 0.05, waits


async def test_a_python_tasks_output_is_shown_while_it_runs_without_it_flushing(tmp_path):
    from orchestration.engine.runtime import Engine

    gate = tmp_path / "gate"
    code = (  # a plain print: Python block-buffers it when stdout is a pipe, unless PYTHONUNBUFFERED
        "import os, time\n"
        "print('tests collected')\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
    )
    plan = await sync_to_async(make_plan)(json.dumps({"name": "u", "parallel_execution": {"tasks": [
        {"id": "shard", "worker": "shell", "command": ["python", "-c", code]}]}}))
    run = await sync_to_async(start_run)(plan)
    engine = Engine()
    await engine.wake()
    task_run = await sync_to_async(TaskRun.objects.get)(run=run, task_id="shard")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    try:
        while "tests collected" not in await output_of(task_run):
            assert loop.time() < deadline, "the printed line was not shown while the task ran"
            await asyncio.sleep(0.05)
        await sync_to_async(task_run.refresh_from_db)()
        assert task_run.state == "running"
    finally:
        gate.touch()
    await asyncio.wait_for(engine.settle(), 60)
    await sync_to_async(task_run.refresh_from_db)()
    assert task_run.state == "succeeded" and (await output_of(task_run)).count("tests collected") == 1


async def test_invalid_utf8_and_a_ten_megabyte_line_are_stored_whole():
    code = "import sys; sys.stdout.buffer.write(b'bad \\xff\\xfe bytes\\n' + b'x' * 10_000_000 + b'\\nend\\n')"
    run, t = await run_tasks([{"id": "noisy", "worker": "shell", "command": ["python", "-c", code]}])
    assert t["noisy"].state == "succeeded"
    output = await output_of(t["noisy"])
    assert "bad \ufffd\ufffd bytes" in output
    assert "x" * 10_000_000 in output and output.rstrip().endswith("end")


async def test_an_agent_task_without_its_api_key_fails_at_once_saying_which_variable(monkeypatch, settings):
    # The program exists (any executable will do); only the key is missing.
    settings.MAGICBOX_WORKERS = {**settings.MAGICBOX_WORKERS, "codex": {**settings.MAGICBOX_WORKERS["codex"], "program": "true"}}
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("CODEX_PROVIDER_BASE_URL", raising=False)
    run, t = await run_tasks([{"id": "api", "worker": "codex", "description": "Build the API"}])
    assert t["api"].state == "failed"
    assert "needs OPENAI_API_KEY or CODEX_PROVIDER_BASE_URL in the environment" in t["api"].error


async def test_a_worker_process_drafts_plans_too_and_says_why_it_cannot(monkeypatch):
    from orchestration.engine.runtime import Engine
    from orchestration.models import PlanDraft

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    draft = await sync_to_async(PlanDraft.objects.create)(goal="Add a login page", worker="claude")
    engine = Engine()
    await engine.wake()
    await engine.settle()
    await sync_to_async(draft.refresh_from_db)()
    assert draft.state == "failed" and "needs ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN" in draft.error


async def test_a_secret_in_a_workers_output_result_and_prompt_is_masked(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-0123456789abcdef")
    code = "import sys; print('using', sys.argv[1]); print('done', file=sys.stderr)"
    run, t = await run_tasks([{"id": "leaky", "worker": "shell", "description": "key is sk-live-0123456789abcdef",
                              "command": ["python", "-c", code, "sk-live-0123456789abcdef"]}])
    output = await output_of(t["leaky"])
    assert "sk-live-0123456789abcdef" not in output + t["leaky"].result + t["leaky"].prompt
    assert "using [secret OPENAI_API_KEY]" in output and "[secret OPENAI_API_KEY]" in t["leaky"].prompt


async def test_a_secret_in_the_error_of_a_retried_attempt_is_masked_in_every_state_reason(monkeypatch):
    from orchestration.models import StateChange

    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-0123456789abcdef")
    code = "import sys; sys.exit('fatal: ' + sys.argv[1])"
    run, t = await run_tasks([{"id": "leaky", "worker": "shell", "retries": 1,
                              "command": ["python", "-c", code, "sk-live-0123456789abcdef"]}])
    reasons = await sync_to_async(list)(StateChange.objects.filter(run=run).values_list("reason", flat=True))
    assert t["leaky"].state == "failed" and any("fatal: [secret OPENAI_API_KEY]" in r for r in reasons)
    assert not any("sk-live" in r for r in reasons + [t["leaky"].state_reason, t["leaky"].error])


@pytest.mark.usefixtures("unsandboxed")  # pids from inside a sandbox mean nothing here
async def test_cancelling_a_running_task_kills_its_process_tree_and_cancels_what_waits_for_it(tmp_path):
    from orchestration.engine.runtime import Engine
    from orchestration.engine.scheduler import cancel_task

    pid_file = tmp_path / "pids"
    code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(300)\n"
    )
    plan = await sync_to_async(make_plan)(json.dumps({"name": "c", "parallel_execution": {"tasks": [
        {"id": "stubborn", "worker": "shell", "command": ["python", "-c", code]},
        {"id": "after", "worker": "shell", "command": "true", "depends_on": ["stubborn"]}]}}))
    run = await sync_to_async(start_run)(plan)
    engine = Engine()
    await engine.wake()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not pid_file.exists() or len(pid_file.read_text().split()) < 2:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    stubborn = await sync_to_async(TaskRun.objects.get)(run=run, task_id="stubborn")
    await sync_to_async(cancel_task)(stubborn, "cancelled by ada")
    # Without the cancel, the tree would sleep 300 s; with it, the engine settles in seconds.
    await asyncio.wait_for(engine.settle(), 120)
    for pid in pid_file.read_text().split():
        wait_until(lambda: not process_alive(int(pid)), 10, "the cancelled task's processes to be killed")
    rows = {t.task_id: t for t in await sync_to_async(list)(TaskRun.objects.filter(run=run))}
    assert rows["stubborn"].state == "cancelled" and rows["stubborn"].state_reason == "cancelled by ada"
    assert rows["after"].state == "cancelled"
    assert "stopped: cancelled by ada" in await output_of(rows["stubborn"])
    await sync_to_async(run.refresh_from_db)()
    assert run.state == "cancelled"
