"""Hostile posts to the gate and choose endpoints: each decides only what it is for."""

import json

import pytest
from asgiref.sync import async_to_sync

from orchestration.engine.scheduler import rerun_selection, start_run
from orchestration.models import Run, TaskRun
from tests.conftest import drain_engine, make_plan, py, user_in

CANDIDATES = {"id": "ui", "description": "x", "command": py("print('candidate')"), "candidates": {"worker": "shell", "n": 2}}
DOWNSTREAM = {"id": "d", "worker": "shell", "command": py("print('d')"), "depends_on": ["ui"]}


def start(tasks):
    return start_run(make_plan(json.dumps({"name": "p", "parallel_execution": {"tasks": tasks}})))


@pytest.mark.django_db(transaction=True)
def test_the_gate_endpoint_refuses_a_task_without_a_gate_that_waits_for_a_persons_choice(client, django_user_model):
    """POST gate/ approve on the task run of a task with candidates (waiting for an Operator to
    pick a winner) makes it succeed with no winner: empty result, no branch, and what waits for
    it is queued. gates.decide never checks that the task has an approval gate."""
    run = start([{**CANDIDATES, "choose": "person"}, DOWNSTREAM])
    async_to_sync(drain_engine)()
    ui = TaskRun.objects.get(run=run, task_id="ui")
    assert ui.state == "waiting"
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    client.post(f"/runs/{run.pk}/tasks/{ui.pk}/gate/", {"decision": "approve"})
    ui.refresh_from_db()
    assert (ui.state, TaskRun.objects.get(run=run, task_id="d").state) == ("waiting", "pending"), (ui.state, ui.state_reason)


@pytest.mark.django_db(transaction=True)
def test_the_gate_endpoint_cannot_approve_a_check_gate(client, django_user_model):
    """A `gate: {command}` is decided by its check; the page shows no Approve button for it, but a
    POST of decision=approve approves it all the same, before (or instead of) its check."""
    run = start([{"id": "b", "worker": "shell", "command": py("print(1)"), "gate": {"command": ["false"]}},
                 {"id": "d", "worker": "shell", "command": py("print(1)"), "depends_on": ["b"]}])
    TaskRun.objects.filter(run=run, task_id="b").update(state="waiting")
    b = TaskRun.objects.get(run=run, task_id="b")
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    client.post(f"/runs/{run.pk}/tasks/{b.pk}/gate/", {"decision": "approve"})
    b.refresh_from_db()
    assert b.state == "waiting", b.state_reason


@pytest.mark.django_db(transaction=True)
def test_the_choose_endpoint_refuses_a_task_whose_winner_a_review_chooses(client, django_user_model):
    """choose: {review: judge} — the judge decides; a POST to choose/ overrides it (choosing.choose
    never checks that the task's choose is `person`), and the judge's answer is then ignored."""
    run = start([{**CANDIDATES, "choose": {"review": "judge"}},
                 {"id": "judge", "worker": "shell", "depends_on": ["ui"], "command": py("print('2')")}])
    TaskRun.objects.filter(run=run, candidate_of="ui").update(state="succeeded", result="r")
    TaskRun.objects.filter(run=run, task_id="ui").update(state="waiting")
    ui = TaskRun.objects.get(run=run, task_id="ui")
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    client.post(f"/runs/{run.pk}/tasks/{ui.pk}/choose/", {"winner": "ui.1"})
    ui.refresh_from_db()
    assert ui.state == "waiting", ui.state_reason


@pytest.mark.django_db(transaction=True)
def test_a_gate_comment_with_a_nul_character_is_stored_without_it(client, django_user_model):
    """Everything else a person or a worker writes goes through output.storable (NUL -> U+FFFD):
    PostgreSQL refuses NUL in text, so there this POST is a 500 and the gate cannot be decided
    with that comment. The comment goes into state_reason, History and the audit trail as is."""
    run = start([{"id": "b", "worker": "shell", "command": py("print(1)"), "gate": {"approve": True}}])
    TaskRun.objects.filter(run=run, task_id="b").update(state="waiting")
    b = TaskRun.objects.get(run=run, task_id="b")
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    client.post(f"/runs/{run.pk}/tasks/{b.pk}/gate/", {"decision": "approve", "comment": "ok\x00then"})
    b.refresh_from_db()
    assert b.state == "succeeded" and "\x00" not in b.state_reason, repr(b.state_reason)


@pytest.mark.django_db(transaction=True)
def test_a_task_id_of_100_characters_with_candidates_can_run():
    """Task ids may have 100 characters (the schema); a candidate's task run id adds '.N', but
    TaskRun.task_id holds 100: SQLite stores it anyway, PostgreSQL refuses start_run (DataError).
    Either the plan is refused at import or its candidate ids fit their column."""
    from orchestration.plans.errors import PlanInvalid

    long_id = "u" * 100
    try:
        run = start([{**CANDIDATES, "id": long_id, "choose": "person"}])
    except PlanInvalid:
        return
    limit = TaskRun._meta.get_field("task_id").max_length
    assert all(len(t) <= limit for t in TaskRun.objects.filter(run=run).values_list("task_id", flat=True))




@pytest.mark.django_db(transaction=True)
def test_retry_of_a_failed_candidate_offered_on_the_run_page_redoes_something(client, django_user_model):
    """ui.2 failed (ui.1 won). The run page offers "Retry ui.2 and what waits for it…" on the
    candidate, but rerun_selection maps ui.2 through spec.ids, which has no ui.2: the re-run
    redoes nothing and copies every task as it ended."""
    run = start_run(make_plan(json.dumps({"name": "p", "parallel_execution": {"tasks": [
        {"id": "ui", "description": "x", "command": py("import os, sys; sys.exit(os.environ['MAGICBOX_TASK_ID'] == 'ui.2')"),
         "candidates": {"worker": "shell", "n": 2}, "choose": {"command": py("print(1)")}},
        {"id": "d", "worker": "shell", "command": py("import sys; sys.exit(1)"), "depends_on": ["ui"]}]}})))
    async_to_sync(drain_engine)()
    run = Run.objects.get(pk=run.pk)
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    ui2 = run.task_runs.get(task_id="ui.2")
    page = client.get(f"/runs/{run.pk}/?task=ui.2").content.decode()
    if 'id="retry-task"' not in page:
        return  # not offered: fine
    try:
        redo = rerun_selection(run, "ui.2")
    except ValueError:
        return  # refused with a message: fine
    assert redo, f"'Retry {ui2.task_id}' is offered but the re-run redoes nothing"
