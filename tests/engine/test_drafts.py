"""New plan from a goal: the real claude CLI drafts it against a fake model; a person reviews it."""
from __future__ import annotations

import asyncio
import re
import threading
from contextlib import contextmanager

import pytest

from orchestration.engine.drafts import extract_yaml
from orchestration.models import Plan, PlanDraft
from tests.conftest import drain_engine, processes_with, wait_until
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


def stand_in_claude(script: str, tmp_path, settings, monkeypatch) -> None:
    """Make the workers' `claude` a shell script running `script` (with an API key set)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").write_text("#!/bin/sh\n" + script)
    (bin_dir / "claude").chmod(0o755)
    settings.MAGICBOX_EXTRA_PATH = [str(bin_dir)]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-4711")


@contextmanager
def engine_in_background():
    """An in-process engine doing the queued work in a thread, until nothing is left."""
    engine = threading.Thread(target=lambda: asyncio.run(drain_engine()))
    engine.start()
    try:
        yield
    finally:
        engine.join(60)


def status(client, draft: PlanDraft) -> str:
    """What the draft's page fetches each second while the draft is not finished (htmx)."""
    return client.get(f"/plans/drafts/{draft.pk}/", HTTP_HX_REQUEST="true").content.decode()


def test_a_drafted_plan_opens_in_the_editor_and_is_not_saved_until_reviewed(logged_in_client, model):
    model.when("Add a login page", Text(DRAFTED))
    draft = draft_through_the_browser(logged_in_client, "Add a login page to the app")
    assert draft.state == "succeeded" and [t.id for t in draft.spec.tasks] == ["api", "form", "review"]
    assert "You are orchestrating parallel execution" in model.prompts()[-1]
    page = logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()
    assert "Review it in the editor" in page
    assert "What the drafter did" in page and "Here is the plan:" in page  # its log, beside the plan
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
    stand_in_claude("exec sleep 301.5\n", tmp_path, settings, monkeypatch)  # never answers

    queued = PlanDraft.objects.create(goal="never started", worker="claude")
    logged_in_client.post(f"/plans/drafts/{queued.pk}/cancel/")
    queued.refresh_from_db()
    assert queued.state == "failed" and queued.error == "cancelled by ada"

    draft = PlanDraft.objects.create(goal="Add a login page", worker="claude")
    with engine_in_background():
        wait_until(lambda: processes_with("301.5"), 60, "the drafter to start")
        page = logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()
        assert 'id="cancel-draft"' in page
        logged_in_client.post(f"/plans/drafts/{draft.pk}/cancel/")
        wait_until(lambda: not processes_with("301.5"), 30, "the drafter's processes to be killed")
    draft.refresh_from_db()
    assert draft.state == "failed" and draft.error == "cancelled by ada"
    assert "Try again with this goal" in logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()


def test_what_the_drafter_writes_is_shown_while_it_drafts_and_kept_when_it_ends(logged_in_client, settings, tmp_path, monkeypatch):
    stand_in_claude('echo "reading the goal, with the key $ANTHROPIC_API_KEY"\n'
                    'echo "warning: no project settings found" >&2\n'
                    "exec sleep 302.5\n", tmp_path, settings, monkeypatch)
    draft = PlanDraft.objects.create(goal="Add a login page", worker="claude")
    with engine_in_background():
        shown = wait_until(lambda: (page := status(logged_in_client, draft)) * ("no project settings found" in page),
                           60, "the drafter's output to be shown while it drafts")
        assert 'hx-trigger="every 1s"' in shown and 'id="cancel-draft"' in shown  # still drafting
        assert "reading the goal, with the key [secret ANTHROPIC_API_KEY]" in shown and "sk-ant-test-4711" not in shown
        logged_in_client.post(f"/plans/drafts/{draft.pk}/cancel/")
        wait_until(lambda: not processes_with("302.5"), 30, "the drafter's processes to be killed")
    page = logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()
    assert "No plan was made." in page and "What the drafter did" in page
    assert "reading the goal, with the key [secret ANTHROPIC_API_KEY]" in page and "no project settings found" in page
    assert "sk-ant-test-4711" not in page


def test_a_huge_drafter_output_stays_bounded_on_the_page(logged_in_client, settings, tmp_path, monkeypatch):
    stand_in_claude('pad=$(printf "%01000d" 0)\ni=0\n'
                    'while [ $i -lt 4000 ]; do echo "line $i $pad"; i=$((i+1)); done\n'
                    'echo "the last line"\n', tmp_path, settings, monkeypatch)  # 4 MB, then no plan
    draft = PlanDraft.objects.create(goal="Add a login page", worker="claude")
    asyncio.run(drain_engine())
    draft.refresh_from_db()
    assert draft.state == "failed" and len(draft.log) <= PlanDraft.LOG_LIMIT
    page = logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()
    assert len(page) < PlanDraft.LOG_LIMIT + 20_000
    assert "the last line" in page and "line 3999 " in page and "line 0 " not in page
    assert "Earlier output is not kept" in page


def test_the_plan_being_written_is_shown_as_it_grows_and_logged_once(logged_in_client, model):
    model.when("Add a login page", Text(DRAFTED, pieces=8, delay=1))
    draft = PlanDraft.objects.create(goal="Add a login page to the app", worker="claude")
    with engine_in_background():
        writing = wait_until(lambda: re.search(r'<pre class="log-partial" id="draft-writing"[^>]*>([^<]+)</pre>',
                                               status(logged_in_client, draft)), 90, "the plan being written to be shown")
    assert "Here is the plan:" in writing.group(1)
    draft.refresh_from_db()
    assert draft.state == "succeeded" and draft.log.count("Here is the plan:") == 1
    assert 'id="draft-writing"' not in logged_in_client.get(f"/plans/drafts/{draft.pk}/").content.decode()


DECOMPOSED = """```yaml
task_analysis:
  goal: Add a login page
  constraints: [No new dependencies]
subtasks:
  - {id: 1, name: Build login API, worker: codex, type: backend, description: POST /api/auth/login, dependencies: []}
  - {id: 2, name: Build login form, worker: gemini, type: frontend, description: The form, dependencies: [1]}
  - {id: 3, name: Review login, worker: claude, type: review, description: Check both, dependencies: [1, 2]}
execution_plan:
  parallel_groups: [{group: 1, tasks: [1]}, {group: 2, tasks: [2]}, {group: 3, tasks: [3]}]
  quality_gates: [{after_task: 1, check: "A person confirms the API shape"}]
notes: Keep it small.
```"""


def test_a_drafter_may_answer_in_the_decomposition_form(logged_in_client, model):
    model.when("Add a login page", Text(DECOMPOSED))
    draft = draft_through_the_browser(logged_in_client, "Add a login page to the app")
    assert draft.state == "succeeded", draft.error
    assert draft.spec.ids == ["build-login-api", "build-login-form", "review-login"]
    assert draft.spec.task("build-login-api").gate.approve and "No new dependencies" in draft.spec.task("review-login").prompt
    assert "Form B, a decomposition" in model.prompts()[-1], "the drafter is told it may answer so"
