"""Completion criteria and contract checks get a verdict with evidence at the end of a run."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.scheduler import start_run
from orchestration.models import Verdict
from tests.conftest import make_plan, run_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

SCHEMA = {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}


def shell(task_id, code, **extra):
    return {"id": task_id, "worker": "shell", "command": ["python", "-c", code], **extra}


async def verdicts_of(tasks, criteria, contracts=None):
    doc = {"name": "v", "parallel_execution": {"tasks": tasks, "completion_criteria": criteria}}
    if contracts:
        doc["contracts"] = contracts
    run, _ = await run_plan(json.dumps(doc))
    rows = await sync_to_async(list)(Verdict.objects.filter(run=run).order_by("kind", "position"))
    return run, {v.name: v for v in rows}


async def test_built_in_and_command_criteria_pass_and_the_run_is_green():
    run, v = await verdicts_of([shell("a", "print('ok')")], [
        "All tasks completed", "Looks good to me",
        {"name": "tests pass", "command": ["python", "-c", "print('3 passed')"]}])
    assert v["All tasks completed"].state == "passed" and v["tests pass"].state == "passed"
    assert "3 passed" in v["tests pass"].evidence and v["Looks good to me"].state == "unverified"
    assert run.state == "succeeded"


async def test_a_failing_command_criterion_fails_a_run_whose_tasks_all_succeeded():
    run, v = await verdicts_of([shell("a", "print('ok')")], [
        {"name": "tests pass", "command": ["python", "-c", "import sys; print('1 failed'); sys.exit(1)"]}])
    assert v["tests pass"].state == "failed" and v["tests pass"].summary == "exited with code 1"
    assert run.state == "failed" and "all 1 tasks succeeded, but 1 check(s) failed: tests pass (exited with code 1)" in run.state_reason


async def test_a_review_task_decides_by_its_verdict():
    run, v = await verdicts_of([shell("qc", "print('REQUEST_CHANGES: the form posts `mail`, the API wants `email`')")], [
        {"name": "review", "review": "qc"}, "All tasks completed"])
    assert v["review"].state == "failed" and v["review"].summary == "qc: REQUEST_CHANGES" and "`email`" in v["review"].evidence
    assert v["All tasks completed"].state == "passed" and run.state == "failed"


async def test_a_contract_check_passes_or_fails_with_the_pointer_of_the_fault():
    contract = {"provider": "api", "consumer": "ui", "specification": {"response": {"success": SCHEMA}}, "checks": [
        {"name": "login answers with a token", "against": "response.success",
         "command": ["python", "-c", "import json; print(json.dumps({'token': 'abc'}))"]},
        {"name": "token missing", "against": "response.success",
         "command": ["python", "-c", "import json; print(json.dumps({'user': 1}))"]}]}
    run, v = await verdicts_of([shell("api", "print(1)"), shell("ui", "print(2)")],
                               ["Integration points verified"], {"auth_api": contract})
    assert v["login answers with a token"].state == "passed"
    assert v["token missing"].state == "failed" and "/: 'token' is a required property" in v["token missing"].summary
    assert v["Integration points verified"].state == "failed" and run.state == "failed"


async def test_the_all_tasks_criterion_names_the_tasks_that_did_not_succeed():
    run, v = await verdicts_of([shell("a", "import sys; sys.exit(2)"), shell("b", "print(1)", depends_on=["a"])],
                               ["All tasks completed"])
    assert v["All tasks completed"].state == "failed" and "a failed" in v["All tasks completed"].evidence
    assert "b skipped" in v["All tasks completed"].evidence


async def test_an_outputs_check_validates_what_provider_and_consumer_produced():
    contract = {"provider": "api", "consumer": "ui", "specification": {"response": {"success": SCHEMA}}, "checks": [
        {"name": "both agree", "against": "response.success", "outputs": "both"}]}
    run, v = await verdicts_of([shell("api", "print('{\"token\": \"abc\"}')"), shell("ui", "print('{\"token\": 5}')")],
                               ["Integration points verified"], {"auth_api": contract})
    assert v["both agree"].state == "failed" and "consumer ui /token: 5 is not of type 'string'" in v["both agree"].summary
    assert "provider" not in v["both agree"].summary.split("consumer")[0]
    assert run.state == "failed"


async def test_checks_are_shown_pending_from_the_start_of_a_run():
    from orchestration.models import Run

    plan = await sync_to_async(make_plan)(json.dumps({"name": "p", "parallel_execution": {
        "tasks": [shell("a", "print(1)")], "completion_criteria": ["All tasks completed"]}}))
    run = await sync_to_async(start_run)(plan)
    states = await sync_to_async(lambda: list(Run.objects.get(pk=run.pk).verdicts.values_list("state", flat=True)))()
    assert states == ["pending"]


async def test_integration_points_are_verified_when_every_contract_check_passes():
    contract = {"provider": "api", "consumer": "ui", "specification": {"response": {"success": SCHEMA}}, "checks": [
        {"against": "response.success", "command": ["python", "-c", "print('{\"token\": \"abc\"}')"]}]}
    run, v = await verdicts_of([shell("api", "print(1)"), shell("ui", "print(2)")],
                               ["Integration points verified"], {"auth_api": contract})
    assert v["Integration points verified"].state == "passed" and v["auth_api: response.success"].state == "passed"
    assert run.state == "succeeded"


async def test_an_approving_review_task_meets_its_criterion():
    run, v = await verdicts_of([shell("qc", "print('APPROVE - form and API agree on {email, password}')")],
                               [{"name": "quality control", "review": "qc"}])
    assert v["quality control"].state == "passed" and run.state == "succeeded"


async def test_check_commands_wait_until_every_task_has_ended(tmp_path):
    marker = tmp_path / "built"
    run, v = await verdicts_of(
        [shell("build", f"import time, pathlib; time.sleep(1); pathlib.Path({str(marker)!r}).write_text('ok')")],
        [{"name": "artefact exists", "command": ["python", "-c", f"import os, sys; sys.exit(0 if os.path.exists({str(marker)!r}) else 1)"]}])
    assert v["artefact exists"].state == "passed" and run.state == "succeeded"


async def test_a_check_reads_json_from_stdout_only_and_a_program_that_cannot_start_is_a_verdict(tmp_path):
    contract = {"provider": "api", "consumer": "ui", "specification": {"response": {"success": SCHEMA}}, "checks": [
        {"name": "noisy", "against": "response.success",
         "command": ["python", "-c", "import sys; print('warning: slow', file=sys.stderr); print('{\"token\": \"t\"}')"]}]}
    run, v = await verdicts_of([shell("api", "print(1)"), shell("ui", "print(2)")],
                               [{"name": "a directory", "command": [str(tmp_path)]}], {"auth_api": contract})
    assert v["noisy"].state == "passed" and "warning: slow" in v["noisy"].evidence
    assert v["a directory"].state == "failed" and v["a directory"].summary.startswith("could not start")
