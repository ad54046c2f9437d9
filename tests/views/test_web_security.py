"""What a hostile link meets: escaped messages and a Content-Security-Policy on every page."""
from __future__ import annotations

import re

import pytest

from orchestration.engine.scheduler import start_run
from orchestration.models import TaskChange
from tests.conftest import make_plan, user_in

pytestmark = pytest.mark.django_db

PLAN = "name: Guarded\nparallel_execution:\n  tasks:\n    - {id: edit, worker: shell, command: [python, -V]}\n"
PAYLOAD = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"


def test_a_file_parameter_of_the_diff_view_comes_back_escaped(logged_in_client):
    task_run = start_run(make_plan(PLAN)).task_runs.get()
    TaskChange.objects.create(task_run=task_run, branch="magicbox/run-1/edit", start_commit="a" * 40, head_commit="b" * 40,
                              files=[{"path": "app.py", "status": "modified", "added": 1, "deleted": 0, "binary": False,
                                      "start": 0, "end": 10}], patch="+print(1)\n")
    response = logged_in_client.get(f"/runs/{task_run.run_id}/tasks/{task_run.pk}/diff/", {"file": PAYLOAD})
    assert response.status_code == 400
    body = response.content.decode()
    assert "changed no file named &lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;&lt;img" in body
    assert "<script" not in body and "<img" not in body


def test_every_page_carries_a_content_security_policy_without_inline_code(client, logged_in_client, django_user_model):
    run = start_run(make_plan(PLAN))
    plan_id, task_run = run.plan_id, run.task_runs.get()
    pages = ["/runs/", f"/runs/{run.pk}/", "/plans/", f"/plans/{plan_id}/", f"/plans/{plan_id}/edit/", "/plans/new/",
             f"/plans/{plan_id}/revisions/", "/prompts/", "/prompts/new/", "/plans/draft/",
             f"/runs/{run.pk}/tasks/{task_run.pk}/output.txt", f"/runs/{run.pk}/summary.json"]
    responses = [(url, logged_in_client.get(url)) for url in pages]
    responses.append(("/accounts/login/", client.get("/accounts/login/")))  # not logged in
    admin = client
    admin.force_login(django_user_model.objects.create_superuser("root", password="root-password-1"))
    responses.append(("/admin/", admin.get("/admin/")))
    for url, response in responses:
        assert response.status_code == 200, url
        policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'", url
        assert policy["default-src"] == "'self'" and policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'", url
        if response.get("Content-Type", "").startswith("text/html"):
            html = response.content.decode()
            inline = [tag for tag in re.findall(r"<script\b[^>]*>", html) if "src=" not in tag and 'type="application/json"' not in tag]
            assert inline == [], f"{url}: inline scripts {inline}"
            assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), f"{url}: an inline event handler"


def test_a_denied_page_has_the_policy_too(client, django_user_model):
    client.force_login(user_in(django_user_model, "nobody"))
    response = client.get("/plans/")
    assert response.status_code == 403 and "script-src 'self'" in response["Content-Security-Policy"]
