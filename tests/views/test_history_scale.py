"""The runs list, the plan page's figures and the run page cost a fixed number of queries,
however long the history and however large the run."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestration.models import TaskRun
from orchestration.review.cost import grouped, total
from tests.conftest import make_plan
from tests.history import large_run, many_runs

pytestmark = pytest.mark.django_db

PLAN = ("name: History\nparallel_execution:\n  tasks:\n    - {id: build, worker: shell, command: [python, -V]}\n"
        "    - {id: review, worker: claude, description: Review it, depends_on: [build]}\n"
        "    - {id: api, worker: codex, description: Build the API}\n")


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_costs_summed_in_the_database_equal_costs_summed_row_by_row(settings):
    settings.MAGICBOX_TOKEN_PRICES = {"codex": {"input": 2.0, "output": 10.0}}
    plan = make_plan(PLAN)
    many_runs(plan, 6)
    TaskRun.objects.filter(task_id="api").update(input_tokens=1000, output_tokens=100, cost_usd=None)
    TaskRun.objects.filter(task_id="api", run__rerun_of__isnull=False).update(cost_usd=0.5)
    rows = TaskRun.objects.filter(run__plan=plan)
    by_run = grouped(rows, "run_id")
    for run_id in rows.values_list("run_id", flat=True).distinct():
        expected = total(rows.filter(run_id=run_id))
        assert by_run[run_id].usd == pytest.approx(expected.usd)
        assert (by_run[run_id].estimated, by_run[run_id].input_tokens) == (expected.estimated, expected.input_tokens)
    whole = grouped(rows)[None]
    assert whole.usd == pytest.approx(total(rows).usd) and whole.output_tokens == total(rows).output_tokens


def test_the_plan_page_costs_as_many_queries_at_10000_runs_as_at_3(logged_in_client):
    plan = make_plan(PLAN)
    many_runs(plan, 3)
    few = queries(logged_in_client, f"/plans/{plan.pk}/")
    many_runs(plan, 10_000 - 3)
    page = logged_in_client.get(f"/plans/{plan.pk}/").content.decode()
    assert "10000 runs" in page and 'id="plan-cost"' in page
    assert queries(logged_in_client, f"/plans/{plan.pk}/") == few


def test_the_runs_list_costs_as_many_queries_at_10000_runs_as_at_3(logged_in_client, user):
    plan = make_plan(PLAN)
    many_runs(plan, 3, user)
    urls = ["/runs/", f"/runs/?plan={plan.pk}&state=failed&started_by={user.username}&q=hist&page=2"]
    few = [queries(logged_in_client, url) for url in urls]
    many_runs(plan, 10_000 - 3, user)
    page = logged_in_client.get("/runs/").content.decode()
    assert "Page 1 of 200" in page and page.count('class="progress mini"') == 50
    assert [queries(logged_in_client, url) for url in urls] == few


def test_the_run_page_costs_as_many_queries_at_2000_tasks_as_at_50(logged_in_client):
    small, large = large_run(50, "Small"), large_run(2000)
    counts = [queries(logged_in_client, f"/runs/{run.pk}/") for run in (small, large)]
    assert counts[0] == counts[1], counts
    page = logged_in_client.get(f"/runs/{large.pk}/").content.decode()
    assert page.count('class="task-row"') == 2000  # every task in the list
    assert page.count("output line 3 of the task") == 1  # one task's log: the failed one's
    assert 'data-task="t1" data-pk' in page.split('id="task-detail"', 1)[1][:200]
    assert queries(logged_in_client, f"/runs/{large.pk}/?task=t1999") == counts[1]
