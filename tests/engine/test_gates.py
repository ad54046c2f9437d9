"""Gates: what waits for a gated task starts only once an Operator approves (or its check
passes); rejecting skips it, naming the gate; a waiting run holds no worker slot and survives a
restart of its worker."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from orchestration.engine import gates
from orchestration.engine.runtime import Engine
from orchestration.engine.scheduler import start_run
from orchestration.models import AuditEvent, StateChange, TaskRun
from tests.conftest import drain_engine, make_plan, py, user_in


def plan_text(gate: dict) -> str:
    return json.dumps({"name": "gated", "parallel_execution": {"tasks": [
        {"id": "build", "worker": "shell", "command": py("print('built')"), "gate": gate},
        {"id": "deploy", "worker": "shell", "command": py("print('deployed')"), "depends_on": ["build"]},
        {"id": "announce", "worker": "shell", "command": py("print('announced')"), "depends_on": ["deploy"]},
    ]}})


async def start(gate: dict):
    plan = await sync_to_async(make_plan)(plan_text(gate))
    run = await sync_to_async(start_run)(plan)
    await drain_engine()
    return run


async def states(run) -> dict[str, tuple[str, str]]:
    rows = await sync_to_async(list)(TaskRun.objects.filter(run=run).values_list("task_id", "state", "state_reason"))
    return {task: (state, reason) for task, state, reason in rows}


async def history(task_id: str) -> list[tuple[str, str, str]]:
    return await sync_to_async(list)(StateChange.objects.filter(task_run__task_id=task_id).order_by("id")
                                     .values_list("from_state", "to_state", "reason"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_approval_gate_holds_what_waits_until_an_operator_approves(django_user_model):
    run = await start({"approve": True, "message": "check the build"})
    found = await states(run)
    assert found["build"][0] == "waiting" and "check the build" in found["build"][1]
    assert found["deploy"][0] == "pending" and found["announce"][0] == "pending"
    await sync_to_async(run.refresh_from_db)()
    assert run.state == "running"
    assert await sync_to_async(gates.approvers)() == []

    alice = await sync_to_async(user_in)(django_user_model, "alice", "Operators")
    assert await sync_to_async(gates.approvers)() == ["alice"]
    build = await TaskRun.objects.aget(run=run, task_id="build")
    assert await sync_to_async(gates.decide_by)(build, alice, True, "looks right")
    await drain_engine()
    await sync_to_async(run.refresh_from_db)()
    assert run.state == "succeeded", run.state_reason
    assert (await TaskRun.objects.aget(run=run, task_id="build")).result.strip() == "built"
    assert ("waiting", "succeeded", "gate approved by alice: looks right") in await history("build")
    event = await AuditEvent.objects.aget(action="gate_approved")
    assert (event.actor_name, event.detail) == ("alice", "build: looks right")
    assert not await sync_to_async(gates.decide_by)(build, alice, False), "a gate is decided once"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_rejecting_a_gate_skips_what_waits_for_it_naming_the_gate(django_user_model):
    run = await start({"approve": True})
    bob = await sync_to_async(user_in)(django_user_model, "bob", "Operators")
    build = await TaskRun.objects.aget(run=run, task_id="build")
    assert await sync_to_async(gates.decide_by)(build, bob, False, "wrong branch")
    await drain_engine()
    found = await states(run)
    assert found["build"] == ("failed", "gate rejected by bob: wrong branch")
    assert found["deploy"] == ("skipped", "the gate after 'build' was rejected")
    assert found["announce"] == ("skipped", "the gate after 'build' was rejected")
    await sync_to_async(run.refresh_from_db)()
    assert run.state == "failed" and "build failed" in run.state_reason


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("code, state", [("import sys; sys.exit(0)", "succeeded"), ("import sys; print('no'); sys.exit(3)", "failed")])
async def test_a_check_gate_decides_by_its_command_run_in_the_tasks_directory(code, state):
    run = await start({"command": ["python", "-c", f"import os; assert os.path.basename(os.getcwd()) == 'work'; {code}"]})
    found = await states(run)
    assert found["build"][0] == state, found
    if state == "succeeded":
        assert found["announce"][0] == "succeeded" and found["build"][1].startswith("gate check passed")
    else:
        assert found["build"][1] == "gate rejected: its check failed (exited with code 3)"
        assert found["deploy"] == ("skipped", "the gate after 'build' was rejected")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_gate_waits_through_a_worker_restart_and_holds_no_slot(settings, django_user_model):
    settings.MAGICBOX_MAX_PARALLEL = 1
    run = await start({"approve": True})
    other = await sync_to_async(make_plan)(json.dumps({"name": "meanwhile", "parallel_execution": {"tasks": [
        {"id": "x", "worker": "shell", "command": py("print('x')")}]}}), "other.yaml")
    meanwhile = await sync_to_async(start_run)(other)
    engine = await drain_engine(Engine())  # a new engine, as after a restart: the gate still waits
    await engine.stop()
    await sync_to_async(meanwhile.refresh_from_db)()
    assert meanwhile.state == "succeeded", "the waiting gate held no worker slot"
    assert (await states(run))["build"][0] == "waiting"
    carol = await sync_to_async(user_in)(django_user_model, "carol", "Operators")
    assert await sync_to_async(gates.decide_by)(await TaskRun.objects.aget(run=run, task_id="build"), carol, True)
    await drain_engine(Engine())
    await sync_to_async(run.refresh_from_db)()
    assert run.state == "succeeded"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_approval_gate_with_a_timeout_is_rejected_once_it_waited_that_long():
    run = await start({"approve": True, "timeout": 60})
    assert await sync_to_async(gates.expire)() == 0, "not yet"
    await TaskRun.objects.filter(run=run, task_id="build").aupdate(finished_at=timezone.now() - timedelta(seconds=61))
    assert await sync_to_async(gates.expire)() == 1
    found = await states(run)
    assert found["build"] == ("failed", "gate rejected: no decision within 60 s")
    assert found["deploy"] == ("skipped", "the gate after 'build' was rejected")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_release_example_passes_its_check_gate_then_waits_for_an_approval(django_user_model):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "examples" / "release-gate.yaml").read_text()
    run = await sync_to_async(start_run)(await sync_to_async(make_plan)(text, "release-gate.yaml"))
    await drain_engine()
    found = await states(run)
    assert found["build"][0] == "succeeded" and found["build"][1].startswith("gate check passed"), found
    assert found["test"][0] == "waiting" and found["release"][0] == "pending"
    dana = await sync_to_async(user_in)(django_user_model, "dana", "Operators")
    assert await sync_to_async(gates.decide_by)(await TaskRun.objects.aget(run=run, task_id="test"), dana, True, "ship it")
    await drain_engine()
    assert {task: state for task, (state, _) in (await states(run)).items()} == dict.fromkeys(found, "succeeded")
