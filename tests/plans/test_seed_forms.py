"""Every form the seed writes plans in imports, and exports to YAML that re-imports to the same plan."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestration.plans.errors import PlanInvalid
from orchestration.plans.exporter import spec_to_yaml
from orchestration.plans.loader import load_plan

SEED = Path(__file__).with_name("seed_examples")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def round_trip(spec: dict) -> dict:
    text = spec_to_yaml(spec)
    assert text.startswith("# yaml-language-server: $schema=/schema/plan.json\n")
    return load_plan(text, "exported.yaml")


@pytest.mark.parametrize("path", [SEED / "output-format.yaml", SEED / "with-contracts.yaml", SEED / "phased.yaml",
                                  EXAMPLES / "login-feature.yaml", EXAMPLES / "repo-checks.yaml"], ids=lambda p: p.name)
def test_a_seed_form_round_trips_through_export(path):
    spec = load_plan(path.read_text(), path.name, path.parent)
    assert round_trip(spec) == spec


def test_the_seeds_contract_names_its_tasks_with_a_note():
    spec = load_plan((SEED / "with-contracts.yaml").read_text())
    contract = spec.contracts["auth_api"]
    assert (contract.provider, contract.consumer) == ("task_2", "task_1")
    assert contract.specification["request"]["properties"]["password"] == {"type": "string", "minLength": 8}


def test_the_seeds_phased_example_is_reported_at_its_line_with_how_to_fix_it():
    with pytest.raises(PlanInvalid) as caught:
        load_plan((SEED / "phased-as-in-seed.yaml").read_text(), "phased-as-in-seed.yaml")
    report = caught.value.report()
    assert report.startswith("phased-as-in-seed.yaml:18:5: not valid YAML")
    assert "put the list under its own key (for example `tasks:`)" in report


def test_the_corrected_phased_example_becomes_tasks_with_ids_phases_and_dependencies():
    spec = load_plan((SEED / "phased.yaml").read_text())
    assert spec.name == "User Profile Page"
    by_id = {t.id: t for t in spec.tasks}
    assert list(by_id) == [
        "research-profile-ux-patterns", "research-profile-api-best-practices", "build-profile-api-endpoint",
        "build-profile-react-component", "integration-test", "security-audit", "write-api-docs",
    ]
    assert by_id["integration-test"].depends_on == ["build-profile-api-endpoint", "build-profile-react-component"]
    assert by_id["write-api-docs"].depends_on == ["integration-test", "security-audit"]
    assert by_id["build-profile-api-endpoint"].description == "Build profile API endpoint"
    assert {t.phase for t in spec.tasks} == {"phase_1", "phase_2", "phase_3", "phase_4"}
    assert spec.contracts["phase_2"].phase == "phase_2"
    assert spec.contracts["phase_2"].specification["endpoint"] == "GET /api/users/:id"


def test_a_phased_task_gets_its_contract_in_its_prompt():
    from orchestration.engine.prompts import compose_prompt

    spec = load_plan((SEED / "phased.yaml").read_text())
    task = next(t for t in spec.tasks if t.id == "build-profile-react-component")
    assert "Contract 'phase_2' (shared by every task of phase_2" in compose_prompt(task, spec, {})


def test_faults_in_a_phased_plan_are_located_in_the_phased_text():
    text = textwrap.dedent("""\
        feature: Broken
        parallel_execution:
          phase_1:
            - task: Build it
              worker: codx
          phase_2:
            - task: Check it
              worker: codex
              depends_on: [phase_9]
        """)
    with pytest.raises(PlanInvalid) as caught:
        load_plan(text, "broken.yaml")
    report = caught.value.report()
    assert "broken.yaml:5:15: parallel_execution.phase_1[0].worker: unknown worker 'codx'. Did you mean 'codex'?" in report
    assert "broken.yaml:9:20: parallel_execution.phase_2[0].depends_on[0]: 'phase_9' is not a phase of this plan. Phases: phase_1, phase_2." in report


def test_a_generated_fifty_task_plan_round_trips():
    tasks = []
    for i in range(50):
        task = {"id": f"t{i:02d}", "worker": ["claude", "codex", "gemini", "shell"][i % 4],
                "depends_on": [f"t{j:02d}" for j in (i - 1, i - 7) if j >= 0 and i % 3], "timeout": 30 + i, "retries": i % 3}
        if task["worker"] == "shell":
            task["command"] = ["python", "-c", f"print({i})"]
        else:
            task["description"] = f"Step {i}: do part {i} of the work"
        tasks.append(task)
    import json

    spec = load_plan(json.dumps({"name": "fifty", "parallel_execution": {"total_tasks": 50, "tasks": tasks}}))
    assert len(spec.tasks) == 50 and round_trip(spec) == spec


@pytest.mark.parametrize("name", ["output-format.yaml", "with-contracts.yaml", "phased.yaml"])
def test_the_served_schema_accepts_every_seed_form_as_an_editor_would_see_it(name):
    import jsonschema
    import yaml

    from orchestration.plans.loader import editor_schema

    jsonschema.Draft202012Validator.check_schema(editor_schema())
    jsonschema.validate(yaml.safe_load((SEED / name).read_text()), editor_schema())


def test_the_served_schema_rejects_what_the_loader_rejects():
    import jsonschema

    from orchestration.plans.loader import editor_schema

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"parallel_execution": {"phase_1": [{"task": "x"}]}}, editor_schema())  # no worker


def test_workspace_push_is_loaded_and_exported_and_an_unknown_value_is_refused():
    text = "name: p\nworkspace: {repository: 'https://host/r.git', push: %s}\nparallel_execution: {tasks: [{id: a, worker: shell, command: 'true'}]}\n"
    spec = load_plan(text % "true", "p.yaml")
    assert spec.workspace.push is True and "push: true" in spec_to_yaml(spec)
    assert load_plan(text % "false", "p.yaml").workspace.push is False
    with pytest.raises(PlanInvalid, match="push"):
        load_plan(text % "'yes'", "p.yaml")
