"""What a hostile link or a password guesser meets: escaped messages, a Content-Security-Policy on
every page, and logins locked after repeated wrong passwords."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

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


def login(client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_repeated_wrong_passwords_lock_that_user_out_from_that_address_until_the_cooloff(client, django_user_model, settings):
    from axes.models import AccessAttempt

    user_in(django_user_model, "ada", "Viewers")
    user_in(django_user_model, "bob", "Viewers")
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        response = login(client, "ada", "guess-%d" % attempt)
        assert response.status_code == 200 and "Please enter a correct username and password" in response.content.decode()
    locked = login(client, "ada", "one-guess-too-many")
    assert locked.status_code == 429
    assert "Too many wrong passwords for <strong>ada</strong>" in locked.content.decode()
    assert "locked for 15 min 00 s" in locked.content.decode()

    # The right password is refused too while the lock lasts.
    right = login(client, "ada", "pw-ada-123")
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    # Another user, and the same user from another address, are not affected.
    assert login(client, "bob", "pw-bob-123").status_code == 302
    client.logout()
    assert login(client, "ada", "pw-ada-123", address="192.0.2.7").status_code == 302
    client.logout()

    # Once the cool-off has passed, the right password works again.
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    response = login(client, "ada", "pw-ada-123")
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(django_user_model.objects.get(username="ada").pk)
