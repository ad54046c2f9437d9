"""Plan inputs: declared with defaults, given at the start (browser, API, runplan), used as
{{ inputs.<name> }} in prompts and commands, checked at save time, recorded on the run."""
from __future__ import annotations

import json
import textwrap

import pytest
from django.core.management import CommandError, call_command

from orchestration.engine.scheduler import rerun, start_run
from orchestration.models import Run, TaskRun
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.exporter import spec_to_yaml
from orchestration.plans.inputs import InputsRefused
from orchestration.plans.loader import load_plan
from tests.conftest import drain_engine, make_plan, py

PLAN = json.dumps({"name": "With inputs", "inputs": {
    "branch": {"default": "main", "description": "the branch to build"},
    "ticket": {"required": True, "description": "the ticket this run is for"}},
    "parallel_execution": {"tasks": [{"id": "build", "worker": "shell", "description": "Build {{ inputs.branch }} for {{ inputs.ticket }}",
                                      "command": py("import os, sys; print(sys.argv[1], os.environ['MAGICBOX_PROMPT'].splitlines()[1])") + ["{{ inputs.branch }}"]}]}})


def test_inputs_load_export_back_and_an_undeclared_one_is_refused_where_it_is_used():
    spec = load_plan(PLAN, "p.json")
    assert spec.inputs["branch"].default == "main" and spec.inputs["ticket"].required
    assert load_plan(spec_to_yaml(spec), "again.yaml") == spec
    with pytest.raises(PlanInvalid) as caught:
        load_plan(textwrap.dedent("""\
            inputs: {branch: {default: main}}
            parallel_execution:
              tasks:
                - {id: a, worker: shell, command: "echo {{ inputs.brnch }}"}
            """), "p.yaml")
    assert "p.yaml:4:" in caught.value.report() and "{{ inputs.brnch }} names no input of this plan (its inputs: branch)" in caught.value.report()


@pytest.mark.django_db
def test_a_missing_required_input_or_an_unknown_one_is_refused_naming_it():
    plan = make_plan(PLAN)
    with pytest.raises(InputsRefused) as caught:
        start_run(plan, inputs={"branch": "dev", "colour": "red"})
    assert ("inputs.ticket", "required (the ticket this run is for): give it a value") in caught.value.problems
    assert any(field == "inputs.colour" and "no input 'colour'" in message for field, message in caught.value.problems)
    with pytest.raises(InputsRefused) as caught:
        start_run(plan, inputs={"ticket": " \t\n "})  # only white space is no value
    assert caught.value.problems == [("inputs.ticket", "required (the ticket this run is for): give it a value")]
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_run_records_its_inputs_defaults_fill_the_rest_and_tasks_get_them():
    from asgiref.sync import sync_to_async

    plan = await sync_to_async(make_plan)(PLAN)
    run = await sync_to_async(start_run)(plan, inputs={"ticket": "ABC-1"})
    assert run.inputs == {"branch": "main", "ticket": "ABC-1"}
    await drain_engine()
    build = await TaskRun.objects.aget(run=run, task_id="build")
    assert build.result.strip() == "main Build main for ABC-1", build.error
    again = await sync_to_async(rerun)(await Run.objects.aget(pk=run.pk))
    assert again.inputs == run.inputs, "a re-run keeps its run's inputs"


@pytest.mark.django_db(transaction=True)
def test_runplan_takes_inputs_and_refuses_a_missing_required_one(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(PLAN)
    with pytest.raises(CommandError, match="inputs.ticket: required"):
        call_command("runplan", str(path))
    call_command("runplan", str(path), "--input", "ticket=XYZ-9", "--input", "branch=dev")
    assert Run.objects.latest("id").inputs == {"branch": "dev", "ticket": "XYZ-9"}


@pytest.mark.django_db
def test_the_start_form_asks_for_the_inputs_and_says_which_is_missing(logged_in_client):
    plan = make_plan(PLAN)
    page = logged_in_client.get(f"/plans/{plan.pk}/").content.decode()
    assert 'name="input_ticket"' in page and 'name="input_branch"' in page and "the ticket this run is for" in page
    assert 'name="input_ticket"' in page.split('name="input_ticket"')[0] + 'name="input_ticket"'  # (found above)
    assert " required" in page.split('name="input_ticket"', 1)[1].split(">", 1)[0], "the browser asks for it first"
    for left_out in ({"input_branch": "dev"}, {"input_ticket": "   "}):
        response = logged_in_client.post(f"/plans/{plan.pk}/start/", left_out, follow=True)
        assert ("The run was not started. inputs.ticket: required (the ticket this run is for): give it a value"
                in response.content.decode()), "the same message as the API's"
    assert not Run.objects.exists()
    logged_in_client.post(f"/plans/{plan.pk}/start/", {"input_ticket": "T-1"})
    run = Run.objects.get()
    assert run.inputs == {"branch": "main", "ticket": "T-1"}
    header = logged_in_client.get(f"/runs/{run.pk}/").content.decode().split('id="run-inputs"', 1)[1].split("</p>", 1)[0]
    assert "<code>ticket</code> = <code>T-1</code>" in header and "<code>branch</code> = <code>main</code>" in header


@pytest.mark.django_db(transaction=True)
def test_the_run_page_and_the_summary_show_the_command_as_it_ran_with_the_inputs_filled_in(logged_in_client):
    from asgiref.sync import async_to_sync

    from orchestration.review.export import summary

    run = start_run(make_plan(PLAN), inputs={"ticket": "T-7", "branch": "release/1.2"})
    async_to_sync(drain_engine)()
    build = TaskRun.objects.get(run=run, task_id="build")
    assert build.state == "succeeded" and build.command[-1] == "release/1.2", build.command
    page = logged_in_client.get(f"/runs/{run.pk}/?task=build").content.decode()
    ran = page.split("The command it ran", 1)[1].split("</pre>", 1)[0]
    assert "release/1.2" in ran and "inputs.branch" not in ran, ran
    assert summary(run)["tasks"][0]["command"][-1] == "release/1.2"


@pytest.mark.django_db
def test_compare_shows_each_runs_inputs(logged_in_client):
    plan = make_plan(PLAN)
    a, b = start_run(plan, inputs={"ticket": "T-1"}), start_run(plan, inputs={"ticket": "T-2", "branch": "dev"})
    page = logged_in_client.get(f"/runs/compare/?a={a.pk}&b={b.pk}").content.decode()
    inputs = page.split('id="compare-inputs"', 1)[1].split("</tr>", 1)[0]
    assert "T-1" in inputs and "T-2" in inputs and 'class="changed"><code>branch</code> = dev' in inputs


@pytest.mark.django_db(transaction=True)
def test_a_command_written_as_one_line_keeps_each_spaced_reference_whole():
    from asgiref.sync import async_to_sync

    plan = make_plan(textwrap.dedent("""\
        inputs: {who: {default: world}}
        parallel_execution:
          tasks:
            - {id: a, worker: shell, command: "echo first"}
            - {id: b, worker: shell, depends_on: [a], command: "echo {{ tasks.a.result }} 'and {{ inputs.who }}' {{inputs.who}}"}
        """))
    assert plan.latest_revision.spec.task("b").command == ["echo", "{{ tasks.a.result }}", "and {{ inputs.who }}", "{{inputs.who}}"]
    run = start_run(plan)
    async_to_sync(drain_engine)()
    b = TaskRun.objects.get(run=run, task_id="b")
    assert b.result.strip() == "first and world world", (b.result, b.error)


def test_an_odd_input_name_is_refused_as_an_input_and_a_needless_required_or_an_unused_input_is_warned():
    with pytest.raises(PlanInvalid) as caught:
        load_plan('inputs: {"x.y": {default: 1}}\nparallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: "true"}\n', "p.yaml")
    assert "p.yaml:1:9: inputs: 'x.y' is not a valid input name: start with a letter or '_'" in caught.value.report()
    spec = load_plan(textwrap.dedent("""\
        inputs: {a: {default: 1, required: true}, b: {}}
        parallel_execution:
          tasks:
            - {id: t, worker: shell, command: "echo {{ inputs.a }}"}
        """), "p.yaml")
    assert [(n.field, n.message.split(":")[0]) for n in spec.notices] == [
        ("inputs.a.required", "input 'a' has a default, so a run never lacks it"), ("inputs.b", "no task uses input 'b'")]
