"""The shape of a plan: critical path, width, ideal speed-up, and what must not run in parallel."""
from __future__ import annotations

import json

from orchestration.plans.loader import load_plan
from orchestration.plans.shape import analyse, dag_data


def plan(*tasks: dict) -> dict:
    full = [{"worker": "shell", "command": "true", **t} for t in tasks]
    return load_plan(json.dumps({"name": "p", "parallel_execution": {"tasks": full}}))


def test_figures_count_tasks_and_the_longest_chain():
    spec = plan({"id": "a"}, {"id": "b", "depends_on": ["a"]}, {"id": "c", "depends_on": ["a"]},
                {"id": "d", "depends_on": ["b"]}, {"id": "e"})
    shape = analyse(spec)
    assert (shape.tasks, shape.critical_path, shape.width) == (5, ["a", "b", "d"], 2)  # most tasks at one depth
    assert shape.critical_seconds is None and round(shape.speedup, 2) == round(5 / 3, 2)


def test_seconds_come_from_past_runs_then_timeouts():
    spec = plan({"id": "a", "timeout": 100}, {"id": "b", "depends_on": ["a"], "timeout": 100}, {"id": "c", "timeout": 50})
    shape = analyse(spec, past={"a": 10.0})
    assert shape.critical_seconds == 110 and shape.critical_path == ["a", "b"]
    assert shape.estimated_from == "timeouts and past runs"
    assert shape.speedup == (10 + 100 + 50) / 110


def test_tasks_that_may_run_together_and_write_the_same_files_are_named():
    spec = plan({"id": "ui", "writes": ["src/app/*.tsx"]}, {"id": "api", "writes": ["src/app/login.tsx"]},
                {"id": "docs", "writes": ["src/app/login.tsx"], "depends_on": ["ui", "api"]})
    warnings = analyse(spec).warnings
    assert warnings == ["ui and api may run at the same time and both write src/app/*.tsx, src/app/login.tsx: "
                        "make one depend on the other, or split the files."]


def test_tasks_sharing_an_exclusive_resource_are_named_unless_one_waits_for_the_other():
    spec = plan({"id": "migrate", "resources": ["staging-db"]}, {"id": "load", "resources": ["staging-db"]},
                {"id": "check", "resources": ["staging-db"], "depends_on": ["migrate", "load"]})
    assert analyse(spec).warnings == ["migrate and load may run at the same time and both use staging-db: make one depend on the other."]


def test_the_dag_data_has_nodes_edges_contracts_and_the_critical_path():
    from pathlib import Path

    seed = Path(__file__).with_name("seed_examples")
    data = dag_data(load_plan((seed / "phased.yaml").read_text()))
    assert {n["phase"] for n in data["nodes"]} == {"phase_1", "phase_2", "phase_3", "phase_4"}
    assert ["build-profile-api-endpoint", "integration-test"] in data["edges"]
    assert data["contracts"] == [{"name": "phase_2", "between": ["build-profile-api-endpoint", "build-profile-react-component"]}]
    assert data["critical"][-1] == "write-api-docs"


def test_each_node_has_its_depth_by_which_a_large_plan_is_drawn_in_layers():
    spec = plan({"id": "a"}, {"id": "b", "depends_on": ["a"]}, {"id": "c"},
                {"id": "d", "depends_on": ["b", "c"]}, {"id": "e", "depends_on": ["a"]})
    data = dag_data(spec)
    assert {n["id"]: n["depth"] for n in data["nodes"]} == {"a": 0, "b": 1, "c": 0, "d": 2, "e": 1}
    assert data["run"] is False and all(n["state"] == "" for n in data["nodes"])
    on_a_run = dag_data(spec, {"a": "succeeded"})
    assert on_a_run["run"] is True and on_a_run["nodes"][0]["state"] == "succeeded"
