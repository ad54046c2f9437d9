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


def test_a_draft_can_be_cancelled_queued_or_while_its_drafter_runs(logged_in_client, settings, tmp_path, monkeypatch):
    import threading

    from tests.conftest import processes_with, wait_until

    # A stand-in claude that never answers.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").write_text("#!/bin/sh\nexec sleep 301.5\n")
    (bin_dir / "claude").chmod(0o755)
    settings.MAGICBOX_EXTRA_PATH = [str(bin_dir)]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")

    queued = PlanDraft.objects.create(goal="never started", worker="claude")
    logged_in_client.post(f"/plans/drafts/{queued.pk}/cancel/")
    queued.refresh_from_db()
    assert queued.state == "failed" and queued.error == "cancelled by ada"

    draft = PlanDraft.objects.create(goal="Add a login page", worker="claude")
    engine = threading.Thread(target=lambda: asyncio.run(drain_engine()))
    engine.start()
    try:
        wait_until(lambda: processes_with("301.5"), 60, "the drafter to start")
        page = logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()
        assert 'id="cancel-draft"' in page
        logged_in_client.post(f"/plans/drafts/{draft.pk}/cancel/")
        wait_until(lambda: not processes_with("301.5"), 30, "the drafter's processes to be killed")
    finally:
        engine.join(60)
    draft.refresh_from_db()
    assert draft.state == "failed" and draft.error == "cancelled by ada"
    assert "Try again with this goal" in logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()
