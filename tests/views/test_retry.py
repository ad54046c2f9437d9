"""Retry means "this task and what waits for it": the person sees what will run again (and what it
may cost) before it starts, nothing else runs, and History names exactly what was re-run."""
from __future__ import annotations

import re

import pytest
from django.utils import timezone

from orchestration.engine.scheduler import start_run
from orchestration.models import AuditEvent, Run, TaskRun
from tests.conftest import make_plan

PLAN = """
name: Mixed
parallel_execution:
  tasks:
    - {id: lint, worker: shell, command: [python, -c, "print('lint ok')"]}
    - {id: flaky, worker: shell, command: [python, -c, "import sys; sys.exit(1)"]}
    - {id: summary, worker: claude, description: Summarise the results, depends_on: [flaky]}
    - {id: sleeper, worker: shell, command: [sleep, "60"]}
    - {id: after_sleep, worker: shell, command: [python, -c, "print('woke')"], depends_on: [sleeper]}
"""


def ended(run: Run, states: dict[str, tuple[str, str]], costs: dict[str, float] | None = None) -> Run:
    """Make `run` look as if it had ended with these {task: (state, reason)} and costs in dollars."""
    now = timezone.now()
    for task_id, (state, reason) in states.items():
        TaskRun.objects.filter(run=run, task_id=task_id).update(
            state=state, state_reason=reason, finished_at=now, cost_usd=(costs or {}).get(task_id),
            error="exit code 1" if state == "failed" else "")
    Run.objects.filter(pk=run.pk).update(state="failed", finished_at=now)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_retrying_a_failed_task_reruns_only_it_and_what_waits_for_it_after_showing_what_and_the_cost(logged_in_client, user):
    plan = make_plan(PLAN)
    # Two earlier runs in which summary cost $0.02 and $0.04: one more attempt is estimated at $0.03.
    for usd in (0.02, 0.04):
        ended(start_run(plan, user), {t: ("succeeded", "") for t in ("lint", "flaky", "summary", "sleeper", "after_sleep")},
              {"summary": usd})
    run = ended(start_run(plan, user), {
        "lint": ("succeeded", ""), "flaky": ("failed", ""), "summary": ("skipped", "upstream task 'flaky' did not succeed"),
        "sleeper": ("cancelled", "cancelled by ada"), "after_sleep": ("cancelled", "upstream task 'sleeper' was cancelled")})

    page = logged_in_client.get(f"/runs/{run.pk}/").content.decode()
    assert f'action="/runs/{run.pk}/rerun/"' in page and 'name="task" value="flaky"' in page

    confirm = logged_in_client.get(f"/runs/{run.pk}/rerun/", {"task": "flaky"}).content.decode()
    assert Run.objects.count() == 3, "looking at what a retry would do starts nothing"
    listed = re.findall(r'<tr data-task="([^"]+)">', confirm)
    assert listed == ["flaky", "summary"]
    summary_row = confirm.split('<tr data-task="summary">', 1)[1].split("</tr>", 1)[0]
    assert "$0.0300" in summary_row and "average of 2 earlier runs" in summary_row
    assert "Estimated cost: <strong>$0.0300</strong>" in confirm
    assert "The other 3 tasks are kept as they ended" in confirm

    response = logged_in_client.post(f"/runs/{run.pk}/rerun/", {"task": "flaky"})
    new = Run.objects.get(rerun_of=run)
    assert response.url == f"/runs/{new.pk}/"
    states = {t.task_id: (t.state, t.state_reason) for t in new.task_runs.all()}
    assert states == {
        "lint": ("succeeded", f"kept from run #{run.pk}"),
        "flaky": ("queued", ""),
        "summary": ("pending", ""),
        "sleeper": ("cancelled", f"kept from run #{run.pk}: cancelled by ada"),
        "after_sleep": ("cancelled", f"kept from run #{run.pk}: upstream task 'sleeper' was cancelled"),
    }
    event = AuditEvent.objects.filter(run=new).get()
    assert event.get_action_display() == "retried a task"
    assert event.detail == f"flaky of run #{run.pk}: redoing flaky, summary; every other task kept as it ended"
    new_page = logged_in_client.get(f"/runs/{new.pk}/").content.decode()
    assert "redoing flaky, summary" in new_page


@pytest.mark.django_db
def test_rerunning_failed_and_skipped_tasks_confirms_first_and_an_agent_task_never_paid_for_has_no_estimate(logged_in_client, user):
    plan = make_plan(PLAN)
    run = ended(start_run(plan, user), {
        "lint": ("succeeded", ""), "flaky": ("failed", ""), "summary": ("skipped", "upstream task 'flaky' did not succeed"),
        "sleeper": ("succeeded", ""), "after_sleep": ("succeeded", "")})

    confirm = logged_in_client.get(f"/runs/{run.pk}/rerun/").content.decode()
    assert re.findall(r'<tr data-task="([^"]+)">', confirm) == ["flaky", "summary"]
    summary_row = confirm.split('<tr data-task="summary">', 1)[1].split("</tr>", 1)[0]
    assert "no estimate" in summary_row
    assert 'name="task"' not in confirm

    logged_in_client.post(f"/runs/{run.pk}/rerun/")
    new = Run.objects.get(rerun_of=run)
    assert dict(new.task_runs.values_list("task_id", "state")) == {
        "lint": "succeeded", "flaky": "queued", "summary": "pending", "sleeper": "succeeded", "after_sleep": "succeeded"}
    assert AuditEvent.objects.get(run=new).detail == f"of run #{run.pk}: redoing flaky, summary"


@pytest.mark.django_db
def test_retrying_a_task_the_run_does_not_have_says_which_it_has(logged_in_client, user):
    run = ended(start_run(make_plan(PLAN), user), {"flaky": ("failed", "")})
    response = logged_in_client.get(f"/runs/{run.pk}/rerun/", {"task": "nope"}, follow=True)
    assert "run #%d has no task &#x27;nope&#x27;: retry one of after_sleep, flaky, lint, sleeper, summary" % run.pk in \
        response.content.decode()
    assert Run.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_retry_runs_timeline_and_summary_leave_out_nothing_and_show_kept_tasks_off_its_clock(logged_in_client):
    import asyncio
    from datetime import timedelta

    from orchestration.review.timeline import timeline
    from tests.conftest import run_to_end

    plan = make_plan(PLAN)
    first = start_run(plan)
    long_ago = timezone.now() - timedelta(minutes=30)
    TaskRun.objects.filter(run=first, task_id="sleeper").update(started_at=long_ago, queued_at=long_ago)
    first = ended(first, {"lint": ("succeeded", ""), "flaky": ("failed", "exit 1"), "summary": ("skipped", "upstream"),
                          "sleeper": ("cancelled", "cancelled by ada"), "after_sleep": ("cancelled", "cancelled by ada")})
    logged_in_client.post(f"/runs/{first.pk}/rerun/", {"task": "flaky"})
    second = Run.objects.exclude(pk=first.pk).get()
    second = asyncio.run(run_to_end(second.pk))
    rows = list(second.task_runs.order_by("position"))
    picture = timeline(second, rows)
    assert {bar.task_run.task_id for bar in picture["bars"]} <= {"flaky", "summary"}  # the others ran in run #1
    assert picture["span"] < 600, "a kept task's 30 minutes are not on this run's clock"
    assert "2 cancelled" in second.state_reason, second.state_reason
