"""Results flow downstream by name, and declared output schemas are checked, not trusted."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.runtime import Engine
from orchestration.engine.scheduler import start_run
from orchestration.models import OutputChunk, TaskRun
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_plan
from tests.conftest import make_plan, run_tasks, wait_for_task

CONTRACTS = {"auth_api": {"provider": "login", "consumer": "use", "specification": {"response": {"success": {
    "type": "object", "required": ["token", "user"],
    "properties": {"token": {"type": "string"}, "user": {"type": "object", "properties": {"id": {"type": "string"}}}}}}}}}


def py(code: str) -> list[str]:
    return ["python", "-c", code]


async def run_flow(tasks, contracts=None):
    return await run_tasks(tasks, name="flow", **({"contracts": contracts} if contracts else {}))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_field_of_an_upstream_json_result_fills_a_downstream_command_and_prompt():
    run, t = await run_flow([
        {"id": "login", "worker": "shell", "command": py('import json; print(json.dumps({"token": "abc123", "user": {"id": "u1"}}))'),
         "output_schema": "contracts.auth_api.response.success"},
        {"id": "use", "worker": "shell", "depends_on": ["login"],
         "description": "Call the API as {{ tasks.login.output.user.id }}",
         "command": ["python", "-c", "import os, sys; print(sys.argv[1], os.environ['MAGICBOX_PROMPT'].splitlines()[1])",
                     "{{ tasks.login.output.token }}"]},
    ], CONTRACTS)
    assert run.state == "succeeded", t["login"].error + t["use"].error
    assert t["use"].result.strip() == "abc123 Call the API as u1"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_result_that_breaks_the_contract_fails_with_the_pointer_of_the_fault():
    run, t = await run_flow([
        {"id": "login", "worker": "shell", "command": py('import json; print(json.dumps({"user": {"id": 7}}))'),
         "output_schema": "contracts.auth_api.response.success"},
        {"id": "use", "worker": "shell", "command": "true", "depends_on": ["login"]},
    ], CONTRACTS)
    assert t["login"].state == "failed"
    assert "the result does not match contracts.auth_api.response.success" in t["login"].error
    assert "/: 'token' is a required property" in t["login"].error and "/user/id: 7 is not of type 'string'" in t["login"].error
    assert "does not match" in await sync_to_async(t["login"].output_text)()
    assert t["use"].state == "skipped"


def test_referring_to_a_task_that_is_not_upstream_is_an_error_at_save_time():
    doc = {"parallel_execution": {"tasks": [
        {"id": "a", "worker": "shell", "command": "true"},
        {"id": "b", "worker": "claude", "description": "Use {{ tasks.a.result }} and {{ tasks.c.output.x }}"},
        {"id": "c", "worker": "shell", "command": ["echo", "{{ tasks.nobody.result }}"]}]}}
    with pytest.raises(PlanInvalid) as caught:
        load_plan(json.dumps(doc), "refs.yaml")
    report = caught.value.report()
    assert "{{ tasks.a.result }} refers to a, which is not upstream of b: add a to depends_on" in report
    assert "{{ tasks.c.output.x }} refers to c, which is not upstream of b" in report
    assert "parallel_execution.tasks[2].command[1]: {{ tasks.nobody.result }} names no task of this plan" in report


def test_an_output_schema_must_be_a_schema_or_name_one():
    doc = {"parallel_execution": {"tasks": [
        {"id": "a", "worker": "shell", "command": "true", "output_schema": {"type": "objekt"}},
        {"id": "b", "worker": "shell", "command": "true", "output_schema": "contracts.none.response"}]}}
    with pytest.raises(PlanInvalid) as caught:
        load_plan(json.dumps(doc), "s.yaml")
    report = caught.value.report()
    assert "parallel_execution.tasks[0].output_schema.type: not a valid JSON Schema at /type" in report
    assert "contracts.none.response names no schema" in report


def adapter_and_context(worker: str, tmp_path):
    """An adapter whose program is found, and a task context asking for an object."""
    from orchestration.workers.base import TaskContext
    from orchestration.workers.registry import get_adapter

    for name in ("work", "home", "tmp", "up"):
        (tmp_path / name).mkdir()
    adapter = get_adapter(worker)
    adapter.find_program = lambda program: "/bin/true"
    ctx = TaskContext(task_id="a", prompt="p", command=None, workdir=tmp_path / "work", home=tmp_path / "home",
                      tmpdir=tmp_path / "tmp", upstream_dir=tmp_path / "up", base_env={}, output_schema={"type": "object"})
    return adapter, ctx


def test_codex_is_asked_for_the_schema_natively(tmp_path):
    adapter, ctx = adapter_and_context("codex", tmp_path)
    argv = adapter.build(ctx).argv
    schema_file = argv[argv.index("--output-schema") + 1]
    assert json.loads(open(schema_file).read()) == {"type": "object"} and argv[-1] == "-"


def test_claude_is_asked_for_the_schema_natively_and_its_structured_output_is_the_result(tmp_path):
    adapter, ctx = adapter_and_context("claude", tmp_path)
    argv = adapter.build(ctx).argv
    assert json.loads(argv[argv.index("--json-schema") + 1]) == {"type": "object"}
    parser = adapter.parser()
    parser.feed_stdout(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "done",
                                   "structured_output": {"token": "abc"}}))
    assert json.loads(parser.finish(0, "").result) == {"token": "abc"}


def test_a_result_that_holds_a_reference_is_not_expanded_again():
    from orchestration.plans.references import fill

    text = fill("{{ tasks.a.b-c.result }} and {{ tasks.zz.result }}", {"a.b-c": "{{ tasks.zz.result }}", "zz": "B"}, ["a.b-c", "zz"])
    assert text == "{{ tasks.zz.result }} and B"


@pytest.mark.parametrize("bad, message", [
    ({"completion_criteria": [{"name": "q", "command": "python -c 'unbalanced"}]}, "cannot split the command into arguments"),
    ({"completion_criteria": [{"name": "blank", "command": "   "}]}, "the command is empty"),
])
def test_a_criterion_command_that_cannot_run_is_refused_at_import(bad, message):
    doc = {"parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": "true"}], **bad}}
    with pytest.raises(PlanInvalid) as caught:
        load_plan(json.dumps(doc), "c.yaml")
    assert "parallel_execution.completion_criteria[0].command" in caught.value.report() and message in caught.value.report()


def test_a_schema_that_refers_to_itself_without_end_is_refused():
    doc = {"parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": "true", "output_schema": {"$ref": "#"}}]}}
    with pytest.raises(PlanInvalid) as caught:
        load_plan(json.dumps(doc), "r.yaml")
    assert "refers to itself ($ref) without end" in caught.value.report()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_backtracking_pattern_fails_its_task_and_a_parallel_task_keeps_streaming(settings, tmp_path):
    settings.MAGICBOX_VALIDATION_TIMEOUT = 3
    checked = tmp_path / "answered"
    # ^(a+)+$ against 30 a's and a "!" backtracks for about a minute; `chatty` prints a line every 50 ms
    # until the test has seen `answer` end.
    chatty = ("import itertools, pathlib, time\n"
              f"for n in itertools.count():\n"
              f"    print('tick', n, flush=True); time.sleep(0.05)\n"
              f"    if pathlib.Path({str(checked)!r}).exists(): break\n")
    plan = await sync_to_async(make_plan)(json.dumps({"name": "bt", "parallel_execution": {"tasks": [
        {"id": "answer", "worker": "shell", "command": ["python", "-c", "print('\"' + 'a' * 30 + '!\"')"],
         "output_schema": {"type": "string", "pattern": "^(a+)+$"}},
        {"id": "fine", "worker": "shell", "command": ["python", "-c", "print('\"yes\"')"],
         "output_schema": {"type": "string", "pattern": "^y"}},
        {"id": "chatty", "worker": "shell", "command": ["python", "-c", chatty]}]}}))
    run = await sync_to_async(start_run)(plan)
    engine = Engine()
    await engine.wake()
    answer = await wait_for_task(run.pk, "answer", timeout=120)
    checked.touch()
    await asyncio.wait_for(engine.settle(), 120)
    chatty_run = await TaskRun.objects.aget(run=run, task_id="chatty")
    assert answer.state == "failed"
    assert "took longer than 3 s, so it was stopped" in answer.error and "backtracks" in answer.error
    # While the pattern was being tried (the 3 s before `answer` ended), chatty's output went
    # on being stored: the worker's event loop was free.
    stored = await sync_to_async(list)(OutputChunk.objects.filter(
        task_run=chatty_run, created_at__gte=answer.finished_at - timedelta(seconds=2.5), created_at__lte=answer.finished_at))
    assert len(stored) >= 2, "chatty's output stalled while the answer was validated"
    assert chatty_run.state == "succeeded"
    fine = await TaskRun.objects.aget(run=run, task_id="fine")
    assert fine.state == "succeeded" and fine.finished_at < answer.finished_at, "another task's check did not wait its turn"
