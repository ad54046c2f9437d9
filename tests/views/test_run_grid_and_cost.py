"""A plan's recent runs as a grid of task states, and costs summed per run and per plan."""
from __future__ import annotations

import re

import pytest

from orchestration.engine.scheduler import start_run
from orchestration.models import Run, TaskRun
from orchestration.review.cost import task_cost
from tests.conftest import make_plan

pytestmark = pytest.mark.django_db

PLAN = ("name: Grid\nparallel_execution:\n  tasks:\n    - {id: build, worker: shell, command: [python, -V]}\n"
        "    - {id: review, worker: claude, description: Review it, depends_on: [build]}\n"
        "    - {id: api, worker: codex, description: Build the API}\n")


def finished_run(plan, states: dict, **usage) -> Run:
    run = start_run(plan)
    for task_id, state in states.items():
        TaskRun.objects.filter(run=run, task_id=task_id).update(state=state, **usage.get(task_id, {}))
    Run.objects.filter(pk=run.pk).update(state="failed" if "failed" in states.values() else "succeeded")
    return run


def test_the_plan_page_shows_recent_runs_as_a_grid_of_task_states(logged_in_client):
    plan = make_plan(PLAN)
    first = finished_run(plan, {"build": "failed", "review": "skipped", "api": "succeeded"})
    second = finished_run(plan, {"build": "succeeded", "review": "succeeded", "api": "succeeded"})
    page = logged_in_client.get(f"/plans/{plan.pk}/").content.decode()
    grid = page.split('id="run-grid"', 1)[1].split("</table>", 1)[0]
    assert grid.index(f"#{first.pk}") < grid.index(f"#{second.pk}"), "oldest on the left, as in a grid view"
    build = grid.split('data-task="build"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'data-state="(\w+)"', build) == ["failed", "succeeded"]
    listing = logged_in_client.get(f"/runs/?plan={plan.pk}").content.decode()
    assert "Runs of" in listing and listing.count("/runs/compare/?a=") == 1
    assert 'id="run-grid"' in listing and 'data-state="failed"' in listing


def test_costs_are_reported_or_estimated_from_tokens_and_summed_per_run_and_plan(logged_in_client, settings):
    settings.MAGICBOX_TOKEN_PRICES = {"codex": {"input": 2.0, "output": 10.0}}
    assert task_cost("codex", None, 1_000_000, 100_000).usd == pytest.approx(3.0)
    assert task_cost("codex", None, 1_000_000, 100_000).estimated
    assert task_cost("claude", 0.5, 10, 10).usd == 0.5 and not task_cost("claude", 0.5, 10, 10).estimated
    assert task_cost("shell", None, None, None).usd is None

    plan = make_plan(PLAN)
    usage = {"review": {"cost_usd": 0.25, "input_tokens": 1000, "output_tokens": 50},
             "api": {"input_tokens": 1_000_000, "output_tokens": 100_000}}
    run = finished_run(plan, {"build": "succeeded", "review": "succeeded", "api": "succeeded"}, **usage)
    finished_run(plan, {"build": "succeeded", "review": "succeeded", "api": "succeeded"}, **usage)
    page = logged_in_client.get(f"/runs/{run.pk}/").content.decode()
    assert "≈$3.0000" in page and "$0.2500" in page
    assert re.search(r'id="run-cost">cost <strong>≈\$3\.2500</strong> \(1001000 tokens in, 100050 out\)', page)
    plan_page = logged_in_client.get(f"/plans/{plan.pk}/").content.decode()
    assert re.search(r'id="plan-cost">cost of all runs <strong>≈\$6\.5000</strong>', plan_page)
