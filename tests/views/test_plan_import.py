"""Importing a plan through the browser form."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from orchestration.models import Plan

pytestmark = pytest.mark.django_db

GOOD = b"name: Build\nparallel_execution:\n  tasks:\n    - {id: build, worker: shell, command: [python, -V]}\n"
CYCLE = b"parallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: 'true', depends_on: [b]}\n    - {id: b, worker: shell, command: 'true', depends_on: [a]}\n"


def test_an_uploaded_plan_is_stored_and_opened(logged_in_client):
    response = logged_in_client.post("/plans/import/", {"file": SimpleUploadedFile("build.yaml", GOOD)})
    plan = Plan.objects.get(name="Build")
    assert response.status_code == 302 and response.url == f"/plans/{plan.pk}/"
    page = logged_in_client.get(response.url).content.decode()
    assert "Start run" in page and "<code>build</code>" in page


def test_a_rejected_upload_shows_each_fault_with_its_line_and_stores_nothing(logged_in_client):
    response = logged_in_client.post("/plans/import/", {"file": SimpleUploadedFile("loop.yaml", CYCLE)})
    assert response.status_code == 400
    page = response.content.decode()
    assert "The plan was not imported" in page
    assert "loop.yaml:3:" in page and "dependency cycle: a → b → a" in page
    assert Plan.objects.count() == 0


def test_pasted_yaml_imports_too(logged_in_client):
    response = logged_in_client.post("/plans/import/", {"text": GOOD.decode()})
    assert response.status_code == 302 and Plan.objects.filter(name="Build").exists()


def test_an_empty_form_says_what_to_do(logged_in_client):
    response = logged_in_client.post("/plans/import/", {})
    assert "Choose a plan file or paste its YAML." in response.content.decode()


def test_pages_need_a_login(logged_in_client, django_user_model):
    anonymous = type(logged_in_client)()
    for url in ["/plans/", "/runs/", "/plans/import/"]:
        response = anonymous.get(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_the_plan_schema_is_served_at_a_stable_url(logged_in_client):
    schema = type(logged_in_client)().get("/schema/plan.json").json()
    assert schema["required"] == ["parallel_execution"]
    assert "depends_on" in schema["$defs"]["task"]["properties"]


def test_an_empty_file_is_called_empty(logged_in_client):
    response = logged_in_client.post("/plans/import/", {"file": SimpleUploadedFile("empty.yaml", b"")})
    assert "The submitted file is empty." in response.content.decode()
