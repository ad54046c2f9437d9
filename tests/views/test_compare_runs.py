"""Comparing two runs, task by task, from the runs list's "compare with previous"."""
from __future__ import annotations

import json
import re

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.scheduler import start_run
from orchestration.models import Plan
from orchestration.plans.store import import_text
from tests.conftest import py, run_to_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def plan_text(answer: str) -> str:
    return json.dumps({"name": "Answers", "parallel_execution": {"tasks": [
        {"id": "steady", "worker": "shell", "command": py("print('always the same')")},
        {"id": "answer", "worker": "shell", "command": py(f"print({answer!r})")},
    ]}})


async def test_comparing_two_runs_shows_the_changed_result_and_plan_and_collapses_the_rest(async_client, user):
    await sync_to_async(import_text)(plan_text("forty-one"), "answers.yaml")
    plan = await Plan.objects.aget(name="Answers")
    first = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    await sync_to_async(import_text)(plan_text("forty-two"), "answers.yaml")
    second = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    await sync_to_async(async_client.force_login)(user)

    listing = (await async_client.get("/runs/")).content.decode()
    link = f'/runs/compare/?a={first.pk}&amp;b={second.pk}'
    assert link in listing and listing.count("compare with previous") == 1

    page = (await async_client.get(f"/runs/compare/?a={first.pk}&b={second.pk}")).content.decode()
    assert "<strong>1</strong> of 2 tasks differs" in page
    answer = page.split('data-task="answer"', 1)[1].split("</section>", 1)[0]
    steady = page.split('data-task="steady"', 1)[1].split("</section>", 1)[0]
    assert 'data-same="false"' in page and "<details open>" in answer and "<details>" in steady and "unchanged" in steady
    assert re.search(r'diff-remove">-forty-one</span>\s*<span class="diff-add">\+forty-two', answer)
    assert "Plan r1 → r2" in page and "forty-two" in page.split('id="revision-diff-card"', 1)[1]


async def test_a_bad_comparison_says_what_to_give(async_client, user):
    await sync_to_async(async_client.force_login)(user)
    response = await async_client.get("/runs/compare/?a=x")
    assert response.status_code == 400 and b"Give two run numbers" in response.content


async def test_runs_whose_plans_have_different_tasks_compare_with_the_missing_ones_marked(async_client, user):
    await sync_to_async(import_text)(plan_text("one"), "answers.yaml")
    plan = await Plan.objects.aget(name="Answers")
    first = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    await sync_to_async(import_text)(plan_text("one").replace('"steady"', '"renamed"'), "answers.yaml")
    second = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    await sync_to_async(async_client.force_login)(user)
    response = await async_client.get(f"/runs/compare/?a={first.pk}&b={second.pk}")
    page = response.content.decode()
    assert response.status_code == 200
    assert f"not in #{second.pk}" in page.split('data-task="steady"', 1)[1].split("</summary>", 1)[0]
    assert f"not in #{first.pk}" in page.split('data-task="renamed"', 1)[1].split("</summary>", 1)[0]


T0 = datetime(2026, 12, 1, 12, 0, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize(("first_fields", "second_fields", "named"), [
    ({"cli_version": "2.1.197", "model": "claude-opus-4-8"}, {"cli_version": "2.1.200", "model": "claude-opus-4-8"},
     "CLI version differs"),
    ({"cli_version": "2.1.197", "model": "claude-opus-4-8"}, {"cli_version": "2.1.197", "model": "claude-sonnet-4-6"},
     "model differs"),
    ({"worker": "gemini", "input_tokens": 1000, "output_tokens": 100}, {"worker": "claude", "cost_usd": 0.5},
     "worker, cost differ"),
    ({"cost_usd": 0.01}, {"cost_usd": 0.12}, "cost differs"),
    ({"prompt": "Build the login form in React"}, {"prompt": "Build the login form in Vue"}, "prompt differs"),
    ({"started_at": T0, "finished_at": T0 + timedelta(seconds=3)}, {"started_at": T0, "finished_at": T0 + timedelta(seconds=40)},
     "duration differs"),
])
async def test_a_task_whose_agent_or_cost_changed_is_not_unchanged(async_client, user, first_fields, second_fields, named):
    """The same answer from another CLI version, model or worker, or at 12 times the cost, is a difference."""
    from orchestration.models import TaskRun

    await sync_to_async(import_text)(plan_text("same"), "answers.yaml")
    plan = await Plan.objects.aget(name="Answers")
    first = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    second = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    for run, fields in ((first, first_fields), (second, second_fields)):  # as the agents' runs recorded them
        await TaskRun.objects.filter(run=run, task_id="answer").aupdate(**fields)
    await sync_to_async(async_client.force_login)(user)

    page = (await async_client.get(f"/runs/compare/?a={first.pk}&b={second.pk}")).content.decode()

    assert "<strong>1</strong> of 2 tasks differs" in page
    answer = page.split('data-task="answer"', 1)[1].split("</section>", 1)[0]
    assert 'data-same="false"' in answer and "unchanged" not in answer and named in answer
    for value in (*first_fields.values(), *second_fields.values()):
        if isinstance(value, str):
            assert value in answer  # each side's worker, version and model is shown


async def test_a_run_page_offers_the_plans_other_runs_to_compare_with(logged_in_client):
    from asgiref.sync import sync_to_async

    from orchestration.engine.scheduler import start_run
    from tests.conftest import make_plan

    plan = await sync_to_async(make_plan)("name: Twice\nparallel_execution:\n  tasks:\n    - {id: t, worker: shell, command: 'true'}\n")
    first, second = await sync_to_async(start_run)(plan), await sync_to_async(start_run)(plan)
    page = (await sync_to_async(logged_in_client.get)(f"/runs/{second.pk}/")).content.decode()
    assert 'id="compare-with"' in page and f'<option value="{first.pk}">#{first.pk}' in page
    assert f'<option value="{second.pk}">' not in page
    response = await sync_to_async(logged_in_client.get)("/runs/compare/", {"a": first.pk, "b": second.pk})
    assert response.status_code == 200
