"""Nothing secret stays on disk: an attempt's HOME holds no API key once the attempt ends,
whatever its outcome, and is gone (but for the CLI's session transcripts) once the run ends."""
from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.runtime import Engine
from orchestration.engine.scheduler import start_run
from tests.conftest import make_plan, wait_for_task
from tests.fakes.clis import CLI_NAMES
from tests.fakes.model_server import Fail, Text

pytestmark = [pytest.mark.cli, pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

CASES = {  # outcome: (the model's reply, the task's timeout in seconds, the state the task ends in)
    "success": (Text("Done: the answer."), 120, "succeeded"),
    "failure": (Fail(400, "the request is malformed"), 120, "failed"),
    "timeout": (Text("Too slow.", pieces=2, delay=60), 8, "timed_out"),
}
TRANSCRIPTS = {"claude": ".claude/projects/*/*.jsonl", "gemini": ".gemini/tmp/*/chats/*.jsonl"}


def files_holding(root: Path, secrets: list[str]) -> list[str]:
    """Paths of the files under `root` that contain one of `secrets`."""
    return [str(p) for p in root.rglob("*") if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cli", CLI_NAMES)
async def test_no_key_is_left_in_an_attempts_home_and_the_home_goes_when_the_run_ends(cli, case, model, data_dir, tmp_path):
    reply, timeout, state = CASES[case]
    model.reply(reply)
    secrets = [value for name in CLI_NAMES for key, value in model.client_env(name).items() if "KEY" in key]
    gate = tmp_path / "gate"  # a second task keeps the run going until the test has looked
    plan = await sync_to_async(make_plan)(json.dumps({"name": "h", "parallel_execution": {"tasks": [
        {"id": "agent", "worker": cli, "prompt": "Answer the question.", "timeout": timeout},
        {"id": "hold", "worker": "shell", "command": ["python", "-c", f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)"]},
    ]}}))
    run = await sync_to_async(start_run)(plan)
    attempt = data_dir / "runs" / str(run.pk) / "agent" / "attempt-1"
    engine = Engine()
    await engine.wake()
    try:
        task_run = await wait_for_task(run.pk, "agent", 180)
        assert task_run.state == state, task_run.error
        assert stat.S_IMODE(attempt.stat().st_mode) == 0o700  # nobody else could read it meanwhile
        assert (attempt / "home").is_dir()  # the run goes on: its HOME stays, without keys
        assert files_holding(attempt, secrets) == []
    finally:
        gate.touch()
    await asyncio.wait_for(engine.settle(), 120)
    assert not (attempt / "home").exists() and not (attempt / "tmp").exists()
    if case == "success" and cli in TRANSCRIPTS:  # kept for a later resume, without keys
        assert list((attempt / "sessions").glob(TRANSCRIPTS[cli]))
    assert files_holding(attempt, secrets) == []


@pytest.mark.parametrize("cli", CLI_NAMES)
async def test_a_cancelled_attempt_leaves_no_key_and_its_home_goes_with_the_run(cli, model, data_dir):
    from orchestration.engine.scheduler import cancel_run
    from orchestration.models import TaskRun

    model.reply(Text("Never finished.", pieces=2, delay=60))
    secrets = [value for name in CLI_NAMES for key, value in model.client_env(name).items() if "KEY" in key]
    plan = await sync_to_async(make_plan)(json.dumps({"name": "c", "parallel_execution": {"tasks": [
        {"id": "agent", "worker": cli, "prompt": "Answer the question."}]}}))
    run = await sync_to_async(start_run)(plan)
    attempt = data_dir / "runs" / str(run.pk) / "agent" / "attempt-1"
    engine = Engine()
    await engine.wake()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not model.prompts():  # the CLI is waiting for the model's answer
        assert loop.time() < deadline, "the CLI never asked the model"
        await asyncio.sleep(0.05)
    await sync_to_async(cancel_run)(run.pk, "cancelled by ada")
    await asyncio.wait_for(engine.settle(), 120)
    assert (await sync_to_async(TaskRun.objects.get)(run=run)).state == "cancelled"
    assert not (attempt / "home").exists() and not (attempt / "tmp").exists()
    assert files_holding(attempt, secrets) == []
