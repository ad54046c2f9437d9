"""New plan from a goal: the real claude CLI drafts it against a fake model; a person reviews it."""
from __future__ import annotations

import asyncio

import pytest

from orchestration.engine.drafts import extract_yaml
from orchestration.models import Plan, PlanDraft
from tests.conftest import drain_engine
from tests.fakes.model_server import Text

pytestmark = [pytest.mark.cli, pytest.mark.django_db(transaction=True)]

DRAFTED = """Here is the plan:

```yaml
name: Login page
parallel_execution:
  total_tasks: 3
  tasks:
    - id: api
      worker: codex
      description: Build POST /api/auth/login
    - id: form
      worker: gemini
      description: Build the login form
    - id: review
      worker: claude
      description: Check that form and API agree
      depends_on: [api, form]
contracts:
  auth_api:
    provider: api
    consumer: form
    specification:
      request: {type: object, required: [email, password]}
```
"""


def draft_through_the_browser(logged_in_client, goal: str) -> PlanDraft:
    response = logged_in_client.post("/plans/draft/", {"goal": goal, "worker": "claude"})
    draft = PlanDraft.objects.get()
    assert response.status_code == 302 and response.url == f"/plans/drafts/{draft.pk}/"
    asyncio.run(drain_engine())
    draft.refresh_from_db()
    return draft


def test_a_drafted_plan_opens_in_the_editor_and_is_not_saved_until_reviewed(logged_in_client, model):
    model.when("Add a login page", Text(DRAFTED))
    draft = draft_through_the_browser(logged_in_client, "Add a login page to the app")
    assert draft.state == "succeeded" and [t["id"] for t in draft.spec["tasks"]] == ["api", "form", "review"]
    assert "You are orchestrating parallel execution" in model.prompts()[-1]
    page = logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()
    assert "Review it in the editor" in page
    editor = logged_in_client.get(f"/plans/new/?draft={draft.pk}").content.decode()
    assert 'value="Login page"' in editor and 'value="review"' in editor and 'value="auth_api"' in editor
    assert not Plan.objects.exists()


def test_garbage_from_the_orchestrator_is_shown_with_the_validation_errors(logged_in_client, model):
    model.when("Add a login page", Text("Sure! I would split this into a frontend and a backend."))
    draft = draft_through_the_browser(logged_in_client, "Add a login page to the app")
    assert draft.state == "failed" and draft.error.startswith("The drafted plan is not valid:")
    page = logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()
    assert "No plan was made." in page and "I would split this into a frontend and a backend" in page
    assert not Plan.objects.exists()


def test_the_yaml_is_taken_from_a_fenced_block_or_the_whole_answer():
    assert extract_yaml(DRAFTED).startswith("name: Login page\n")
    assert extract_yaml("name: x\nparallel_execution: {}\n") == "name: x\nparallel_execution: {}\n"


def test_a_draft_without_a_sandbox_says_why_and_how_to_fix_it(logged_in_client, model, monkeypatch):
    from orchestration.workers import sandbox

    monkeypatch.setattr(sandbox, "bwrap_program", lambda: "/bin/false")  # as where user namespaces are off
    draft = draft_through_the_browser(logged_in_client, "Add a login page to the app")
    assert draft.state == "failed"
    assert "the task sandbox cannot be made on this host" in draft.error and "MAGICBOX_SANDBOX=off" in draft.error
    assert "internal error" not in draft.error


def test_a_finished_draft_leaves_nothing_on_disk(logged_in_client, model, settings):
    model.when("Add a login page", Text(DRAFTED))
    draft = draft_through_the_browser(logged_in_client, "Add a login page to the app")
    assert draft.state == "succeeded"
    assert not list((settings.DATA_DIR / "drafts" / str(draft.pk)).glob("attempt-*"))
