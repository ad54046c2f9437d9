"""Roles: viewers watch, authors write plans, operators run them; each refused the rest."""
from __future__ import annotations

import pytest

from orchestration.engine.scheduler import start_run
from orchestration.models import Plan, Run
from tests.conftest import make_plan, user_in

pytestmark = pytest.mark.django_db

PLAN = "name: Roles\nparallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: [python, -V]}\n"


def login(client, django_user_model, name, *groups):
    client.force_login(user_in(django_user_model, name, *groups))
    return client


def test_a_viewer_watches_but_cannot_write_or_run(client, django_user_model):
    plan = make_plan(PLAN)
    run = start_run(plan)
    login(client, django_user_model, "vic", "Viewers")
    assert client.get(f"/runs/{run.pk}/").status_code == 200 and client.get(f"/plans/{plan.pk}/").status_code == 200
    page = client.get(f"/plans/{plan.pk}/").content.decode()
    assert 'id="start-run"' not in page and 'id="edit-plan"' not in page
    assert client.post(f"/plans/{plan.pk}/start/").status_code == 403
    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 403
    assert client.post("/plans/import/", {"text": PLAN.replace("Roles", "Other")}).status_code == 403
    assert client.get("/plans/new/").status_code == 403
    assert Run.objects.count() == 1 and Plan.objects.count() == 1


def test_an_author_writes_plans_but_cannot_run_them(client, django_user_model):
    login(client, django_user_model, "ann", "Authors")
    assert client.post("/plans/import/", {"text": PLAN}).status_code == 302
    plan = Plan.objects.get()
    assert client.get(f"/plans/{plan.pk}/edit/").status_code == 200
    assert client.post(f"/plans/{plan.pk}/start/").status_code == 403 and not Run.objects.exists()


def test_an_operator_runs_and_cancels_but_cannot_write_plans(client, django_user_model):
    plan = make_plan(PLAN)
    login(client, django_user_model, "olga", "Operators")
    assert client.post(f"/plans/{plan.pk}/start/", {}).status_code == 302
    run = Run.objects.get()
    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 302
    run.refresh_from_db()
    assert run.state == "cancelled"
    assert client.get(f"/plans/{plan.pk}/edit/").status_code == 403
    assert client.post("/prompts/new/", {"path": "prompts/x.md", "body": "x"}).status_code == 403


def test_a_user_in_no_role_is_refused_every_page_and_told_whom_to_ask(client, django_user_model):
    plan = make_plan(PLAN)
    run = start_run(plan)
    login(client, django_user_model, "newbie")
    for url in ("/runs/", f"/runs/{run.pk}/", "/plans/", f"/plans/{plan.pk}/", "/prompts/",
                f"/runs/{run.pk}/tasks/{run.task_runs.get().pk}/output.txt"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Ask an administrator to add you to the Viewers, Authors or Operators group" in response.content.decode()
    assert client.post(f"/plans/{plan.pk}/start/").status_code == 403 and Run.objects.count() == 1
    assert client.get("/schema/plan.json").status_code == 200  # public: editors fetch it without a login


def test_only_superusers_configure_workers(client, django_user_model):
    staff = login(client, django_user_model, "sam", "Viewers", "Authors", "Operators")
    user = django_user_model.objects.get(username="sam")
    user.is_staff = True
    user.save()
    user.user_permissions.add(*__import__("django.contrib.auth.models", fromlist=["Permission"]).Permission.objects.filter(
        codename__endswith="workersetting"))
    assert staff.get("/admin/orchestration/workersetting/").status_code == 403
    assert staff.post("/admin/orchestration/workersetting/add/", {"worker": "shell", "env": "{}",
                                                                   "env_passthrough": "[]"}).status_code == 403
    from orchestration.models import WorkerSetting

    assert not WorkerSetting.objects.exists()
