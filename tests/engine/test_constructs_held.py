"""Attacks on gates, choices and loops that must keep holding: refusals after a cancel, one decision for
concurrent approvals, permissions, escaping, re-runs, odd review answers."""

import json
import threading

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from orchestration.engine import choosing, gates
from orchestration.engine.scheduler import cancel_run, rerun, start_run
from orchestration.models import AuditEvent, Run, TaskRun
from tests.conftest import drain_engine, make_plan, py, user_in

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def start(tasks):
    return start_run(make_plan(json.dumps({"name": "p", "parallel_execution": {"tasks": tasks}})))


def gated():
    run = start([{"id": "b", "worker": "shell", "command": py(f"print({XSS!r})"), "gate": {"approve": True, "message": XSS}},
                 {"id": "d", "worker": "shell", "command": py("print(1)"), "depends_on": ["b"]}])
    async_to_sync(drain_engine)()
    return run, TaskRun.objects.get(run=run, task_id="b")


def person_choice():
    run = start([{"id": "ui", "description": "x", "command": py(f"print({XSS!r})"), "candidates": {"worker": "shell", "n": 2},
                  "choose": "person"}, {"id": "d", "worker": "shell", "command": py("print(1)"), "depends_on": ["ui"]}])
    async_to_sync(drain_engine)()
    return run, TaskRun.objects.get(run=run, task_id="ui")


@pytest.mark.django_db(transaction=True)
def test_cancelled_while_waiting_then_approve_or_choose_is_refused(client, django_user_model):
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    run, b = gated()
    cancel_run(run.pk, "stop")
    client.post(f"/runs/{run.pk}/tasks/{b.pk}/gate/", {"decision": "approve"})
    assert TaskRun.objects.get(pk=b.pk).state == "cancelled" and Run.objects.get(pk=run.pk).state == "cancelled"
    run, ui = person_choice()
    cancel_run(run.pk, "stop")
    client.post(f"/runs/{run.pk}/tasks/{ui.pk}/choose/", {"winner": "ui.1"})
    assert TaskRun.objects.get(pk=ui.pk).state == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_two_approvals_at_once_decide_once(django_user_model):
    run, b = gated()
    users = [user_in(django_user_model, f"op{i}", "Operators") for i in range(4)]
    results = []

    def approve(user):
        from django.db import connection
        try:
            results.append(gates.decide_by(TaskRun.objects.get(pk=b.pk), user, True, "go"))
        except Exception as error:  # noqa: BLE001
            results.append(repr(error))
        finally:
            connection.close()
    threads = [threading.Thread(target=approve, args=(u,)) for u in users]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(map(str, results)) == ["False", "False", "False", "True"], results
    assert AuditEvent.objects.filter(action="gate_approved").count() == 1


@pytest.mark.django_db(transaction=True)
def test_viewers_anonymous_and_csrf_less_posts_change_nothing(client, django_user_model):
    run, ui = person_choice()
    client.force_login(user_in(django_user_model, "vic", "Viewers"))
    assert client.post(f"/runs/{run.pk}/tasks/{ui.pk}/choose/", {"winner": "ui.1"}).status_code == 403
    assert Client().post(f"/runs/{run.pk}/tasks/{ui.pk}/choose/", {"winner": "ui.1"}).status_code == 302
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user_in(django_user_model, "olga", "Operators"))
    assert strict.post(f"/runs/{run.pk}/tasks/{ui.pk}/choose/", {"winner": "ui.1"}).status_code == 403
    assert TaskRun.objects.get(pk=ui.pk).state == "waiting"


@pytest.mark.django_db(transaction=True)
def test_hostile_text_is_escaped_on_the_run_page(client, django_user_model):
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    run, b = gated()
    page = client.get(f"/runs/{run.pk}/?task=b").content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    client.post(f"/runs/{run.pk}/tasks/{b.pk}/gate/", {"decision": "reject", "comment": XSS})
    for tab in ("tasks", "history"):
        page = client.get(f"/runs/{run.pk}/?task=b&tab={tab}").content.decode()
        assert "<script>alert(1)" not in page and "<img src=x" not in page
    run, ui = person_choice()
    page = client.get(f"/runs/{run.pk}/?task=ui").content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
    client.post(f"/runs/{run.pk}/tasks/{ui.pk}/choose/", {"winner": "ui.1", "comment": XSS})
    page = client.get(f"/runs/{run.pk}/?task=ui&tab=history").content.decode()
    assert "<script>alert(1)" not in page


@pytest.mark.django_db(transaction=True)
def test_choosing_a_winner_that_is_not_a_succeeded_candidate_is_refused(client, django_user_model):
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    run, ui = person_choice()
    for winner in ("ui", "ui.3", "ui.0", "d", "", "ui.1 ", "UI.1", "ui.1\x00"):
        assert not choosing.choose_by(TaskRun.objects.get(pk=ui.pk), None, winner)
    assert TaskRun.objects.get(pk=ui.pk).state == "waiting"


@pytest.mark.django_db(transaction=True)
def test_a_rerun_of_a_run_with_a_rejected_gate_and_candidates_runs_them_again(django_user_model):
    run, b = gated()
    gates.decide_by(b, None, False, "no")
    async_to_sync(drain_engine)()
    new = rerun(Run.objects.get(pk=run.pk))
    async_to_sync(drain_engine)()
    assert TaskRun.objects.get(run=new, task_id="b").state == "waiting"
    run, ui = person_choice()
    cancel_run(run.pk, "stop")
    new = rerun(Run.objects.get(pk=run.pk))
    async_to_sync(drain_engine)()
    assert TaskRun.objects.get(run=new, task_id="ui").state == "waiting"
    assert set(TaskRun.objects.filter(run=new, candidate_of="ui").values_list("attempt", flat=True)) == {1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("answer, verdict", [
    ("import sys; sys.stdout.buffer.write(b'\\x00APPROVE\\n' + b'x' * 1000)", "APPROVE"),
    ("import sys; sys.stdout.buffer.write(b'\\xed\\xa0\\x80 **Request changes**\\n- do it')", "REQUEST_CHANGES"),
    ("print('')", ""),
])
def test_a_review_answering_oddly_ends_its_loop_cleanly(answer, verdict):
    from orchestration.models import LoopRound

    run = start([{"id": "fix", "worker": "shell", "command": py("print('w')")},
                 {"id": "review", "worker": "shell", "command": py(answer), "depends_on": ["fix"], "loop": {"fixes": ["fix"], "max_rounds": 1}}])
    async_to_sync(drain_engine)()
    run = Run.objects.get(pk=run.pk)
    assert run.state == ("succeeded" if verdict == "APPROVE" else "failed"), run.state_reason
    assert LoopRound.objects.get(run=run).verdict == verdict
