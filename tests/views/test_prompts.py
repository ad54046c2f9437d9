"""The prompt library: starter prompts, editing in the browser, and tasks that use them."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.scheduler import start_run
from orchestration.models import PromptTemplate, TaskRun
from orchestration.plans.prompt_library import load_starter_prompts
from tests.conftest import make_plan, run_to_end

STARTERS = {"prompts/orchestrator/plan-drafter.md", "prompts/orchestrator/quality-control.md",
            "prompts/workers/claude/reviewer.md", "prompts/workers/codex/backend-builder.md",
            "prompts/workers/gemini/documentation.md", "prompts/workers/gemini/frontend-builder.md"}


@pytest.mark.django_db
def test_the_starter_set_loads_once_without_overwriting_edits():
    assert load_starter_prompts() == len(STARTERS)
    assert set(PromptTemplate.objects.values_list("path", flat=True)) == STARTERS
    PromptTemplate.objects.filter(path="prompts/workers/claude/reviewer.md").update(body="edited")
    assert load_starter_prompts() == 0
    assert PromptTemplate.objects.get(path="prompts/workers/claude/reviewer.md").body == "edited"


@pytest.mark.django_db
def test_a_prompt_is_created_and_edited_in_the_browser(logged_in_client):
    response = logged_in_client.post("/prompts/new/", {"path": "./prompts//team/api.md", "body": "Use REST."})
    prompt = PromptTemplate.objects.get()
    assert response.status_code == 302 and prompt.path == "prompts/team/api.md"
    logged_in_client.post(f"/prompts/{prompt.pk}/", {"path": prompt.path, "body": "Use GraphQL."})
    prompt.refresh_from_db()
    assert prompt.body == "Use GraphQL." and prompt.updated_by.username == "ada"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/etc/passwd", "../secrets.md", ""])
def test_a_path_outside_the_library_is_refused_and_the_text_kept(logged_in_client, path):
    response = logged_in_client.post("/prompts/new/", {"path": path, "body": "keep me"})
    assert response.status_code == 400 and "keep me" in response.content.decode()
    assert not PromptTemplate.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_task_gets_its_library_prompt_first_in_its_prompt():
    await sync_to_async(PromptTemplate.objects.create)(path="prompts/team/style.md", body="Write tests first.")
    plan = await sync_to_async(make_plan)(json.dumps({"name": "p", "parallel_execution": {"tasks": [
        {"id": "a", "worker": "shell", "command": ["python", "-c", "print(1)"], "prompt_file": "prompts/team/style.md",
         "description": "Add a feature"}]}}))
    run = await sync_to_async(start_run)(plan)
    await run_to_end(run.pk)
    task_run = await sync_to_async(TaskRun.objects.get)(run=run)
    assert task_run.prompt.startswith("Write tests first.\n\n# Task a\nAdd a feature")


@pytest.mark.django_db
def test_renaming_a_prompt_a_plan_uses_is_refused_with_the_plans_named(logged_in_client):
    prompt = PromptTemplate.objects.create(path="prompts/team/style.md", body="x")
    make_plan(json.dumps({"name": "Styled", "parallel_execution": {"tasks": [
        {"id": "a", "worker": "claude", "description": "d", "prompt_file": "prompts/team/style.md"}]}}))
    response = logged_in_client.post(f"/prompts/{prompt.pk}/", {"path": "prompts/team/renamed.md", "body": "x"})
    assert response.status_code == 400 and "is used by Styled" in response.content.decode()
