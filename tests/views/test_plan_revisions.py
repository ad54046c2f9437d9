"""Plan versions: every change is a revision; any two compare as a readable diff."""
from __future__ import annotations

import pytest
import yaml

from orchestration.plans.loader import load_plan
from tests.conftest import make_plan

pytestmark = pytest.mark.django_db

V1 = "name: Checks\nparallel_execution:\n  tasks:\n    - {id: lint, worker: shell, command: [ruff, check]}\n"
V2 = V1 + "    - {id: test, worker: shell, command: [pytest, -q], depends_on: [lint]}\n"


def test_the_history_lists_revisions_and_shows_what_changed(logged_in_client):
    make_plan(V1)
    plan = make_plan(V2)
    page = logged_in_client.get(f"/plans/{plan.pk}/revisions/").content.decode()
    assert "r1 → r2" in page
    assert '<span class="diff-add">+  - id: test</span>' in page
    assert '<span class="diff-add">+    - lint</span>' in page
    assert '<span class="diff-remove">-  total_tasks: 1</span>' in page and '<span class="diff-add">+  total_tasks: 2</span>' in page


def test_any_two_revisions_can_be_compared_either_way(logged_in_client):
    make_plan(V1)
    plan = make_plan(V2)
    page = logged_in_client.get(f"/plans/{plan.pk}/revisions/?a=2&b=1").content.decode()
    assert "r2 → r1" in page and '<span class="diff-remove">-  - id: test</span>' in page
    assert logged_in_client.get(f"/plans/{plan.pk}/revisions/?a=1&b=9").status_code == 404


def test_an_export_downloads_yaml_that_imports_back_to_the_same_plan(logged_in_client):
    plan = make_plan(V2)
    response = logged_in_client.get(f"/plans/{plan.pk}/export.yaml")
    text = response.content.decode()
    assert text.startswith("# yaml-language-server: $schema=http://testserver/schema/plan.json")
    assert load_plan(text) == plan.latest_revision.spec
    assert yaml.safe_load(text)["parallel_execution"]["total_tasks"] == 2
