"""The run page shows a waiting gate, who can decide it and, to Operators, Approve and Reject."""
from __future__ import annotations

import json

import pytest

from orchestration.engine.scheduler import start_run
from orchestration.models import StateChange, TaskRun
from tests.conftest import make_plan, user_in

PLAN = json.dumps({"name": "gated", "parallel_execution": {"tasks": [
    {"id": "build", "worker": "shell", "command": "true", "gate": {"approve": True, "message": "Is staging green?"}},
    {"id": "deploy", "worker": "shell", "command": "true", "depends_on": ["build"]}]}})


@pytest.fixture
def waiting_run(db):
    run = start_run(make_plan(PLAN))
    TaskRun.objects.filter(run=run, task_id="build").update(state="waiting", state_reason="waiting at its gate for an Operator's approval: Is staging green?")
    return run


def test_an_operator_sees_the_gate_and_approves_it_with_a_comment(client, django_user_model, waiting_run):
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    page = client.get(f"/runs/{waiting_run.pk}/?task=build").content.decode()
    assert "Waiting at a gate:" in page and "Is staging green?" in page
    assert 'id="gate-approvers">Who can decide: olga.' in page and 'id="gate-approve"' in page
    build = TaskRun.objects.get(run=waiting_run, task_id="build")
    response = client.post(f"/runs/{waiting_run.pk}/tasks/{build.pk}/gate/", {"decision": "approve", "comment": "green"})
    assert response.status_code == 302 and response.url.endswith("?task=build")
    assert TaskRun.objects.get(pk=build.pk).state == "succeeded"
    assert TaskRun.objects.get(run=waiting_run, task_id="deploy").state == "queued"
    assert StateChange.objects.filter(task_run=build, reason="gate approved by olga: green").exists()
    history = client.get(f"/runs/{waiting_run.pk}/?tab=history").content.decode()
    assert "approved a gate" in history


def test_a_viewer_sees_who_can_decide_but_cannot_decide(client, django_user_model, waiting_run):
    user_in(django_user_model, "olga", "Operators")
    client.force_login(user_in(django_user_model, "vic", "Viewers"))
    page = client.get(f"/runs/{waiting_run.pk}/?task=build").content.decode()
    assert "Who can decide: olga." in page and 'id="gate-approve"' not in page
    build = TaskRun.objects.get(run=waiting_run, task_id="build")
    assert client.post(f"/runs/{waiting_run.pk}/tasks/{build.pk}/gate/", {"decision": "approve"}).status_code == 403
    assert TaskRun.objects.get(pk=build.pk).state == "waiting"
