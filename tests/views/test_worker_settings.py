"""Administrators configure workers' commands and environment in the admin; tasks use it at once."""
from __future__ import annotations

import json

import pytest

from orchestration.engine.scheduler import start_run
from orchestration.models import TaskRun, WorkerSetting
from orchestration.workers import registry
from tests.conftest import make_plan, py, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stand_in_path(settings, tmp_path):
    """A claude program that exists (availability checks the program and the key)."""
    program = tmp_path / "bin" / "claude"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    settings.MAGICBOX_EXTRA_PATH = [str(program.parent)]


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123"))
    return client


def add(admin_client, **fields):
    data = {"worker": "shell", "program": "", "args": "", "env": "{}", "env_passthrough": "[]", "max_parallel": "", **fields}
    return admin_client.post("/admin/orchestration/workersetting/add/", data)


def test_bad_settings_are_refused_with_a_message_saying_what_to_write(admin_client):
    response = add(admin_client, env='{"1BAD": "x"}', args='"not a list"', worker="nonesuch")
    page = response.content.decode()
    assert response.status_code == 200 and not WorkerSetting.objects.exists()
    assert "is not a variable name" in page and "Give a JSON list of strings" in page and "nonesuch is not one of the available choices" in page


@pytest.mark.parametrize("fields, message", [
    ({"max_parallel": "0"}, "greater than or equal to 1"),
    ({"program": "/bin/false"}, "runs each task&#x27;s own command"),
    ({"worker": "claude", "args": '["-p", "{other}"]'}, "Unknown placeholder {other}"),
    ({"env": "[" * 50000 + "]" * 50000}, "nested too deeply"),
])
def test_settings_that_would_not_work_are_refused_saying_why(admin_client, fields, message):
    response = add(admin_client, **fields)
    assert response.status_code == 200 and message in response.content.decode()
    assert not WorkerSetting.objects.exists()


def test_a_key_set_in_worker_settings_makes_the_worker_available(admin_client, monkeypatch, stand_in_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    assert "ANTHROPIC_API_KEY" in registry.availability()["claude"]
    assert add(admin_client, worker="claude", env=json.dumps({"ANTHROPIC_API_KEY": "sk-test-123456"})).status_code == 302
    registry.forget_overrides()
    assert registry.availability()["claude"] == ""


@pytest.mark.asyncio
async def test_a_saved_environment_reaches_the_next_task_and_its_secret_value_is_masked(admin_client):
    from asgiref.sync import sync_to_async

    response = await sync_to_async(add)(admin_client, env=json.dumps({"TEAM_NAME": "blue team", "DEPLOY_TOKEN": "tok-123456789"}),
                                         max_parallel="1")
    assert response.status_code == 302
    setting = await WorkerSetting.objects.select_related("updated_by").aget(worker="shell")
    assert setting.updated_by.username == "root"
    await sync_to_async(registry.forget_overrides)()
    assert (await sync_to_async(registry.worker_config)("shell")).max_parallel == 1

    code = "import os; print(os.environ['TEAM_NAME'], os.environ['DEPLOY_TOKEN'])"
    plan = await sync_to_async(make_plan)(json.dumps({"name": "env", "parallel_execution": {"tasks": [
        {"id": "show", "worker": "shell", "command": py(code)}]}}))
    run = await sync_to_async(start_run)(plan)
    await run_to_end(run.pk)
    task_run = await TaskRun.objects.aget(run=run)
    output = await sync_to_async(task_run.output_text)()
    assert task_run.state == "succeeded" and "blue team [secret DEPLOY_TOKEN]" in output
    assert "tok-123456789" not in output + task_run.result
