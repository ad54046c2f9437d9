"""The runs list: filters kept in the URL, a task-state bar, a cost and "re-run of" on each row."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestration.engine.scheduler import start_run
from orchestration.models import Run, TaskRun
from tests.conftest import make_plan, user_in

pytestmark = pytest.mark.django_db

PLAN = ("name: {name}\nparallel_execution:\n  tasks:\n    - {{id: build, worker: shell, command: [python, -V]}}\n"
        "    - {{id: review, worker: claude, description: Review it, depends_on: [build]}}\n"
        "    - {{id: api, worker: codex, description: Build the API}}\n")


def rows(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-run="(\d+)"', page)]


def test_filters_by_state_plan_person_dates_and_plan_name_narrow_the_list(logged_in_client, user, django_user_model):
    alice = user_in(django_user_model, "alice", "Operators")
    deploy, nightly = make_plan(PLAN.format(name="Deploy site")), make_plan(PLAN.format(name="Nightly"), "n.yaml")
    mine = start_run(deploy, user)
    hers = start_run(nightly, alice)
    old = start_run(deploy, alice)
    Run.objects.filter(pk=old.pk).update(state="failed", created_at=timezone.now() - timedelta(days=40))
    get = lambda query: logged_in_client.get(f"/runs/?{query}").content.decode()  # noqa: E731
    assert sorted(rows(get(""))) == sorted([mine.pk, hers.pk, old.pk])
    assert rows(get("state=failed")) == [old.pk]
    assert sorted(rows(get(f"plan={deploy.pk}"))) == sorted([mine.pk, old.pk])
    assert sorted(rows(get("started_by=alice"))) == sorted([hers.pk, old.pk])
    assert rows(get("q=nIGht")) == [hers.pk]
    since = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert sorted(rows(get(f"since={since}"))) == sorted([mine.pk, hers.pk])
    until = (timezone.localdate() - timedelta(days=39)).isoformat()
    assert rows(get(f"until={until}&started_by=alice")) == [old.pk]
    page = get("state=failed&q=Nightly")
    assert rows(page) == [] and "No runs match these filters." in page
    assert 'value="Nightly"' in page and '<option value="failed" selected>' in page, "the form shows the filters in force"


def test_a_bad_filter_is_named_and_left_out(logged_in_client, user):
    run = start_run(make_plan(PLAN.format(name="Deploy")), user)
    page = logged_in_client.get("/runs/?since=yesterday&state=exploded&until=2020-01-01").content.decode()
    errors = page.split('id="filter-errors"', 1)[1].split("</ul>", 1)[0]
    assert "since: Enter a valid date." in errors and "state: Select a valid choice." in errors
    assert "(this filter is not applied)" in errors
    assert rows(page) == [], "the valid filter (until 2020-01-01) still applies"
    page = logged_in_client.get("/runs/?since=2030-01-02&until=2030-01-01").content.decode()
    assert "until: must be on or after the From date" in page and rows(page) == []
    assert rows(logged_in_client.get("/runs/?since=2000-01-01&until=yesterday").content.decode()) == [run.pk]


def test_each_row_shows_its_task_states_its_cost_and_what_it_re_runs(logged_in_client, user):
    plan = make_plan(PLAN.format(name="Deploy"))
    first = start_run(plan, user)
    TaskRun.objects.filter(run=first, task_id="build").update(state="failed")
    TaskRun.objects.filter(run=first, task_id="review").update(state="skipped")
    TaskRun.objects.filter(run=first, task_id="api").update(state="succeeded", cost_usd=0.25)
    second = Run.objects.create(plan=plan, revision=first.revision, started_by=user, rerun_of=first)
    page = logged_in_client.get("/runs/").content.decode()
    row = page.split(f'<tr data-run="{first.pk}"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'data-state="(\w+)" data-count="(\d+)"', row) == [("succeeded", "1"), ("failed", "1"), ("skipped", "1")]
    assert "$0.2500" in row and "re-run of" not in row
    rerun_row = page.split(f'<tr data-run="{second.pk}"', 1)[1].split("</tr>", 1)[0]
    assert f're-run of <a href="/runs/{first.pk}/">#{first.pk}</a>' in rerun_row


def test_pages_keep_the_filters(logged_in_client, user):
    plan = make_plan(PLAN.format(name="Deploy"))
    for _ in range(51):
        start_run(plan, user)
    page = logged_in_client.get(f"/runs/?plan={plan.pk}&state=running").content.decode()
    assert f'href="?plan={plan.pk}&amp;state=running&amp;page=2">Older' in page
    second = logged_in_client.get(f"/runs/?plan={plan.pk}&state=running&page=2").content.decode()
    assert len(rows(second)) == 1 and "Page 2 of 2" in second


def test_a_new_installation_offers_to_run_the_example_plan_until_something_has_run(logged_in_client):
    from pathlib import Path

    from orchestration.engine.scheduler import start_run
    from orchestration.plans.store import import_file

    revision, _ = import_file(Path(__file__).resolve().parents[2] / "examples" / "repo-checks.yaml")
    page = logged_in_client.get("/runs/").content.decode()
    assert 'id="first-steps"' in page and "Magic Box repository checks" in page
    assert f'href="/plans/{revision.plan_id}/#start-run"' in page
    start_run(revision.plan)
    assert 'id="first-steps"' not in logged_in_client.get("/runs/").content.decode()
