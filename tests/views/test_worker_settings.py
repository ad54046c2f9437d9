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
