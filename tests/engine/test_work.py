"""The one protocol of background work, the same for task runs, checks, plan drafts and integrations:
only the holder of a claim writes the end, and work whose worker process is gone is queued
again at once (this host) or when its lease runs out (any host), failing after a few losses."""
from __future__ import annotations

import json
import os
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestration.engine import work
from orchestration.engine.scheduler import start_run
from orchestration.models import Integration, PlanDraft, StateChange, TaskRun, Verdict
from tests.conftest import make_plan

pytestmark = pytest.mark.django_db

KINDS = ["task run", "check", "draft", "integration"]


def queued_work(kind: str):
    """One queued row of the kind (its run created as a user would)."""
    if kind == "draft":
        return PlanDraft.objects.create(goal="a login page", worker="claude")
    plan = make_plan(json.dumps({"name": f"p-{kind}", "parallel_execution": {
        "tasks": [{"id": "a", "worker": "shell", "command": ["true"]}],
        "completion_criteria": [{"name": "tests pass", "command": ["true"]}]}}))
    run = start_run(plan)
    if kind == "task run":
        return TaskRun.objects.get(run=run)
    if kind == "check":
        return Verdict.objects.get(run=run)
    return Integration.objects.create(run=run)


def state_of(row) -> str:
    return type(row).objects.values_list("state", flat=True).get(pk=row.pk)


@pytest.mark.parametrize("kind", KINDS)
def test_exactly_one_claimer_wins_and_only_it_writes_the_end(kind):
    row = queued_work(kind)
    assert work.claim(row, "here:1:1")
    assert row.attempt == 1 and row.claimed_by == "here:1:1" and row.lease_expires_at > timezone.now()
    assert not work.claim(type(row).objects.get(pk=row.pk), "there:2:1"), "the second claimer loses"
    assert not work.fail(type(row).objects.get(pk=row.pk), "there:2:1", 1, "not mine to end")
    assert not work.fail(type(row).objects.get(pk=row.pk), "here:1:1", 2, "a later attempt of mine is not this one")
    assert state_of(row) == "running"
    assert work.fail(row, "here:1:1", 1, "ended by its holder")
    assert state_of(row) == "failed"
    changes = StateChange.objects.filter(kind=row.KIND, object_id=row.pk).values_list("from_state", "to_state")
    assert list(changes)[-2:] == [(type(row).QUEUED, "running"), ("running", "failed")], "every change is recorded"


@pytest.mark.parametrize("kind", KINDS)
def test_work_whose_lease_ran_out_on_another_host_is_queued_again_without_using_an_attempt(kind):
    row = queued_work(kind)
    work.claim(row, "another-host:4242:1")
    type(row).objects.filter(pk=row.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    [recovered] = work.recover(type(row))
    assert recovered.pk == row.pk and state_of(row) == type(row).QUEUED
    row.refresh_from_db()
    assert row.worker_losses == 1 and row.attempts_used == 0 and row.claimed_by == ""
    assert row.state_reason.startswith("worker lost: another-host:4242:1 stopped renewing the lease")


@pytest.mark.parametrize("kind", KINDS)
def test_work_of_a_process_of_this_host_that_died_is_recovered_at_once(kind):
    row = queued_work(kind)
    work.claim(row, f"{socket.gethostname()}:999999999:1")  # no such process; its lease is still fresh
    assert [r.pk for r in work.recover(type(row))] == [row.pk]
    row.refresh_from_db()
    assert row.state == type(row).QUEUED and row.state_reason.startswith(f"worker lost: {socket.gethostname()}:999999999:1 is no longer running")


@pytest.mark.parametrize("kind", KINDS)
def test_live_work_is_left_alone(kind):
    elsewhere, here = queued_work(kind), queued_work(kind)
    work.claim(elsewhere, "another-host:4242:1")  # its lease is fresh
    work.claim(here, f"{socket.gethostname()}:{os.getpid()}:1")  # this very process
    assert work.recover(type(here)) == []


@pytest.mark.parametrize("kind", KINDS)
def test_work_that_keeps_losing_its_worker_fails_naming_the_cause(kind):
    row = queued_work(kind)
    for loss in range(work.MAX_WORKER_LOSSES):
        row = type(row).objects.get(pk=row.pk)
        assert work.claim(row, f"{socket.gethostname()}:999999999:{loss}")
        work.recover(type(row))
    row.refresh_from_db()
    assert row.state == "failed" and row.worker_losses == work.MAX_WORKER_LOSSES
    assert f"lost {work.MAX_WORKER_LOSSES} times" in row.state_reason and "kill or exhaust its worker process" in row.state_reason


@pytest.mark.parametrize("kind", KINDS)
def test_a_stopping_process_releases_its_work_at_once_as_an_interruption(kind):
    row = queued_work(kind)
    work.claim(row, "here:1:1")
    [released] = work.release(type(row), [row.pk], "here:1:1")
    row.refresh_from_db()
    assert row.state == type(row).QUEUED and row.interruptions == 1 and row.attempts_used == 0
    assert row.state_reason.startswith("interrupted: its worker process stopped")
    assert work.release(type(row), [row.pk], "here:1:1") == [], "nothing left to release"


def test_holding_renews_only_what_the_owner_still_holds():
    mine, cancelled = queued_work("task run"), queued_work("task run")
    for row in (mine, cancelled):
        work.claim(row, "here:1:1")
    TaskRun.objects.filter(pk__in=[mine.pk, cancelled.pk]).update(lease_expires_at=timezone.now())
    cancelled.transition("cancelled", "cancelled from the browser")
    assert work.holding(TaskRun, {mine.pk: 1, cancelled.pk: 1}, "here:1:1", renew=True) == {mine.pk}
    assert work.holding(TaskRun, {mine.pk: 2}, "here:1:1", renew=False) == set(), "another attempt of the same row"
    assert TaskRun.objects.get(pk=mine.pk).lease_expires_at > timezone.now() + timedelta(seconds=5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_state_change_stores_each_value_as_given_and_records_the_change(kind):
    # models.StateMachine.transition writes its two statements directly (orchestration.state_sql):
    # times, text, numbers, expressions and JSON must land exactly as the ORM would store them.
    from django.db.models import F

    row = queued_work(kind)
    when = timezone.now() + timedelta(minutes=5, microseconds=123)
    reason = "queued by 'ada' — ünïcode; DROP TABLE x; --"
    extra = {"merged": ["a", "b"], "conflict": {"task": "b", "files": [{"path": "x.py", "hunks": ["@@"]}]}} if kind == "integration" else {}
    assert row.transition(type(row).RUNNING, reason, expect=type(row).QUEUED, claimed_by="here:1:1", lease_expires_at=when,
                          attempt=3, interruptions=F("interruptions") + 2, **extra)
    assert row.interruptions == 2, "an expression's value is read back"
    stored = type(row).objects.get(pk=row.pk)
    assert (stored.state, stored.state_reason, stored.claimed_by, stored.lease_expires_at, stored.attempt, stored.interruptions) == (
        "running", reason, "here:1:1", when, 3, 2)
    for name, value in extra.items():
        assert getattr(stored, name) == value
    assert not row.transition(type(row).RUNNING, "again", expect=type(row).QUEUED), "a change from a state it left changes nothing"
    change = StateChange.objects.filter(kind=row.KIND, object_id=row.pk).last()
    assert (change.from_state, change.to_state, change.reason) == (type(row).QUEUED, "running", reason)
    assert abs((timezone.now() - change.at).total_seconds()) < 60
    assert change.run_id == getattr(row, "run_id", None)
    assert change.task_run_id == (row.pk if kind == "task run" else None)
