"""A planner's decomposition form (analysis, numbered subtasks, execution plan) becomes a canonical
plan, and everything said about it points at the planner's own lines."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestration.plans import graph
from orchestration.plans.decomposition import (
    DecompositionPlan,
    classify_check,
    decomposition_problems,
    decomposition_warnings,
    is_decomposition,
)
from orchestration.plans.loader import plan_schema
from orchestration.plans.yaml_source import LocatedYaml

SEED = Path(__file__).with_name("seed_examples")


def convert(text: str) -> tuple[DecompositionPlan, LocatedYaml]:
    """The plan, and the document located through it (as the loader wires it)."""
    doc = LocatedYaml(textwrap.dedent(text))
    plan = DecompositionPlan(doc.data)
    doc.data, doc.translate = plan.data, plan.original_path
    return plan, doc


def line_of(text: str, fragment: str) -> int:
    """1-based number of the first line of the dedented `text` containing `fragment`."""
    return next(n for n, line in enumerate(textwrap.dedent(text).splitlines(), 1) if fragment in line)


def problems(plan: DecompositionPlan, doc: LocatedYaml) -> dict[str, tuple[int, str]]:
    return {p.field: (p.line, p.message) for p in decomposition_problems(plan, doc.locate)}


def warnings(plan: DecompositionPlan, doc: LocatedYaml) -> list:
    return [w for w in decomposition_warnings(plan, doc.locate) if not w.message.startswith("task ids made")]


def test_the_example_answer_becomes_tasks_with_readable_ids_prompts_and_gates():
    plan, doc = convert((SEED / "decomposition.yaml").read_text())
    assert plan.problems == [] and warnings(plan, doc) == []
    assert plan.ids == {1: "design-profile-api", 2: "build-profile-api", 3: "build-profile-page", 4: "review-the-feature"}
    notice = decomposition_warnings(plan, doc.locate)[0]
    assert notice.message.startswith("task ids made from the subtasks' names: 1 → design-profile-api, 2 → build-profile-api")
    assert notice.line == line_of((SEED / "decomposition.yaml").read_text(), "- id: 1")

    data = plan.data
    assert data["name"] == data["description"] == (
        "Add a user profile page where signed-in users see and edit their name, avatar and bio")
    tasks = {t["id"]: t for t in data["parallel_execution"]["tasks"]}
    assert tasks["review-the-feature"]["depends_on"] == ["build-profile-api", "build-profile-page"]
    assert tasks["build-profile-api"]["worker"] == "codex"
    design = tasks["design-profile-api"]
    assert design["description"].startswith("Specify GET and PATCH /api/users/:id/profile")
    assert "Type: design · complexity: medium" in design["description"]
    assert "Context needed:\n- existing user model\n- the API style guide" in design["prompt"]
    assert "Output expected:\nAn OpenAPI snippet for both endpoints" in design["prompt"]
    for task in tasks.values():
        assert "Goal: Add a user profile page" in task["prompt"]
        assert "Constraints:\n- Keep the public API stable: only add endpoints\n- No new dependencies" in task["prompt"]
        assert "Notes:\nFrontend and backend can proceed in parallel" in task["prompt"]
    assert tasks["build-profile-api"]["gate"] == {"command": "pytest -q", "message": "pytest -q"}
    assert tasks["build-profile-page"]["gate"] == {"approve": True, "message": "A person confirms the UI matches the mockup"}
    assert "gate" not in design


def test_the_converted_document_is_a_canonical_plan():
    plan, _ = convert((SEED / "decomposition.yaml").read_text())
    document = json.loads(json.dumps(plan.data))
    for task in document["parallel_execution"]["tasks"]:
        task.pop("gate", None)  # gates: checked by the canonical loader once its schema has them
    jsonschema.validate(document, plan_schema())


def test_json_answers_work_too():
    answer = json.dumps({
        "task_analysis": {"goal": "Ship it"},
        "subtasks": [{"id": 1, "name": "Write code", "worker": "codex"},
                     {"id": 2, "name": "Run tests", "worker": "shell", "command": "pytest -q", "dependencies": [1]}],
    }, indent=2)
    plan, doc = convert(answer)
    assert plan.problems == []
    tasks = plan.data["parallel_execution"]["tasks"]
    assert [(t["id"], t.get("depends_on")) for t in tasks] == [("write-code", None), ("run-tests", ["write-code"])]
    assert tasks[1]["command"] == "pytest -q" and "prompt" not in tasks[1]  # a shell task runs its command
    assert doc.locate(["parallel_execution", "tasks", 1, "depends_on", 0]) == (line_of(answer, "dependencies") + 1, 9)


CYCLE = """\
    task_analysis: {goal: Round and round}
    subtasks:
      - id: 1
        name: Write the parser
        worker: codex
        dependencies: [3]
      - id: 2
        name: Write the printer
        worker: codex
        dependencies: [1]
      - id: 3
        name: Test both
        worker: codex
        dependencies: [2]
    """


def test_a_dependency_cycle_is_reported_at_the_subtasks_dependencies_line():
    plan, doc = convert(CYCLE)
    assert plan.problems == []  # cycles are the canonical checks' to find, as for any plan
    tasks = doc.data["parallel_execution"]["tasks"]
    cycle = graph.find_cycle({t["id"]: t["depends_on"] for t in tasks})
    assert cycle == ["write-the-parser", "test-both", "write-the-printer", "write-the-parser"]
    index = next(i for i, t in enumerate(tasks) if t["id"] == cycle[0])
    path = ["parallel_execution", "tasks", index, "depends_on"]  # where the loader reports a cycle
    assert doc.locate(path) == (line_of(CYCLE, "dependencies: [3]"), 19)
    assert doc.field_name(path) == "subtasks[0].dependencies"
    assert doc.field_name([*path, 0]) == "subtasks[0].dependencies[0]"


def test_canonical_fields_point_back_at_the_planners_lines():
    text = (SEED / "decomposition.yaml").read_text()
    plan, doc = convert(text)
    task = ["parallel_execution", "tasks", 1]
    assert doc.locate([*task, "worker"])[0] == line_of(text, "worker: codex")
    assert doc.locate([*task, "description"])[0] == line_of(text, "Implement both endpoints")
    assert doc.locate([*task, "id"])[0] == line_of(text, 'name: "Build profile API"')
    assert doc.locate([*task, "gate", "command"])[0] == line_of(text, 'check: "pytest -q"')
    assert doc.field_name([*task, "gate"]) == "execution_plan.quality_gates[0]"
    assert doc.locate([*task, "prompt"])[0] == line_of(text, "- id: 2")
    assert plan.original_path(["name"]) == (["task_analysis", "goal"], False)


def test_an_unknown_subtask_key_is_left_for_the_canonical_checks_at_the_subtasks_line():
    text = """\
        subtasks:
          - id: 1
            name: Build
            worker: codex
            timeot: 30
        """
    plan, doc = convert(text)
    assert plan.data["parallel_execution"]["tasks"][0]["timeot"] == 30
    path = ["parallel_execution", "tasks", 0, "timeot"]
    assert doc.field_name(path) == "subtasks[0].timeot"
    assert doc.locate(path, at_key=True) == (line_of(text, "timeot"), 5)


def test_unknown_self_and_quoted_dependencies_are_located():
    text = """\
        subtasks:
          - id: 1
            name: Design
            worker: claude
            dependencies: [1]
          - id: 2
            name: Build
            worker: codex
            dependencies: [1, 7, "Design", "1"]
        """
    plan, doc = convert(text)
    found = problems(plan, doc)
    line = line_of(text, "dependencies: [1, 7")
    assert found["subtasks[0].dependencies[0]"] == (line_of(text, "dependencies: [1]"), "subtask 1 depends on itself. Remove this entry.")
    assert found["subtasks[1].dependencies[1]"] == (line, "no subtask has id 7. Subtask ids: 1, 2.")
    assert found["subtasks[1].dependencies[2]"][1].endswith("not 'Design'. Did you mean 1 (Design)?")
    assert found["subtasks[1].dependencies[3]"][1].endswith("Write it without quotes: 1.")
    build = plan.data["parallel_execution"]["tasks"][1]
    assert build["depends_on"] == ["design"]
    assert doc.field_name(["parallel_execution", "tasks", 1, "depends_on", 0]) == "subtasks[1].dependencies[0]"


def test_duplicate_and_non_integer_subtask_ids_are_located():
    text = """\
        subtasks:
          - {id: 1, name: Build, worker: codex}
          - {id: 1, name: Build, worker: codex}
          - {id: "3", name: Test, worker: codex}
          - {id: first, name: Docs, worker: gemini}
        """
    plan, doc = convert(text)
    found = problems(plan, doc)
    assert found["subtasks[1].id"] == (3, "duplicate subtask id 1: the 1st subtask already has it. Give each subtask its own id.")
    assert found["subtasks[2].id"] == (4, "a subtask's id is a whole number (1, 2, 3, …), not '3'. Write it without quotes: id: 3.")
    assert found["subtasks[3].id"][0] == 5
    assert [t["id"] for t in plan.data["parallel_execution"]["tasks"]] == ["build", "build-2", "test", "docs"]
    assert plan.ids == {1: "build"}


def test_ids_are_unique_and_fall_back_to_the_number_when_the_name_has_no_letters():
    plan, _ = convert("""\
        subtasks:
          - {id: 4, name: "???", worker: codex}
          - {id: 5, name: "Fix bug", worker: codex}
          - {id: 6, name: "Fix: bug!", worker: codex}
        """)
    assert plan.ids == {4: "task-4", 5: "fix-bug", 6: "fix-bug-2"}


def test_faults_of_the_form_say_where_and_how_to_fix_them():
    text = """\
        task_analysis:
          goal: [not, text]
          deadline: friday
        subtasks:
          - id: 1
            description: no name, no worker
            dependencies: 2
          - just text
        execution_plan:
          quality_gates:
            - {after_task: 9, check: "pytest"}
            - {after_task: 1}
        """
    plan, doc = convert(text)
    found = problems(plan, doc)
    assert found["task_analysis.goal"] == (2, "the goal is text: one sentence saying what the plan achieves.")
    assert found["task_analysis.deadline"] == (3, "unknown key 'deadline' in task_analysis: it holds `goal:` (one sentence) "
                                                  "and `constraints:` (a list).")
    assert [p.column for p in decomposition_problems(plan, doc.locate) if p.field == "task_analysis.deadline"] == [3]
    assert found["subtasks[0].dependencies"] == (7, "dependencies is a list of subtask ids, e.g. [1, 2] ([] when the "
                                                    "subtask waits for none), not 2.")
    assert found["subtasks[1]"] == (8, 'a subtask is a mapping such as `{id: 1, name: "Build the API", worker: codex}`.')
    messages = [p.message for p in decomposition_problems(plan, doc.locate) if p.field == "subtasks[0]"]
    assert any("needs a `name:`" in m for m in messages) and any("needs a `worker:`" in m for m in messages)
    assert found["execution_plan.quality_gates[0].after_task"] == (11, "no subtask has id 9. Subtask ids: 1.")
    assert found["execution_plan.quality_gates[1]"][1].startswith("a quality gate needs `check:`")


def test_a_document_without_subtasks_is_not_this_form_and_an_empty_list_is_a_fault():
    assert is_decomposition({"subtasks": [{"id": 1}]})
    assert not is_decomposition({"subtasks": [], "parallel_execution": {}})
    assert not is_decomposition({"subtasks": "1, 2"}) and not is_decomposition(["subtasks"])
    plan, doc = convert("task_analysis: {goal: x}\nsubtasks: []\n")
    assert problems(plan, doc)["subtasks"][0] == 2


GROUPS = """\
    subtasks:
      - {id: 1, name: Design, worker: claude}
      - {id: 2, name: Build API, worker: codex, dependencies: [1]}
      - {id: 3, name: Build UI, worker: gemini}
      - {id: 4, name: Test, worker: codex, dependencies: [2]}
    execution_plan:
      parallel_groups:
        - group: 1
          tasks: [1]
        - group: 2
          tasks: [2, 4]
        - group: 3
          tasks: [3, 8]
    """


def test_parallel_groups_that_contradict_the_dependencies_are_warned_at_their_lines():
    plan, doc = convert(GROUPS)
    assert plan.problems == []
    found = {(w.line, w.column): w.message for w in warnings(plan, doc)}
    assert found[(line_of(GROUPS, "tasks: [2, 4]"), 18)] == (
        "subtask 4 (test) waits for subtask 2 (build-api), yet group 2 holds them together: they cannot run at the same "
        "time. Magic Box runs by the dependencies: test starts once they have finished.")
    assert found[(line_of(GROUPS, "tasks: [3, 8]"), 15)] == (
        "the groups put subtasks 1 (design), 2 (build-api), 4 (test) before subtask 3 (build-ui), but it does not depend "
        "on them: the groups imply an order the dependencies do not. Magic Box runs by the dependencies, so build-ui may "
        "start before they finish; add them to its dependencies if it must wait.")
    assert found[(line_of(GROUPS, "tasks: [3, 8]"), 18)].startswith("no subtask has id 8. Subtask ids: 1, 2, 3, 4. The groups are out of step")
    assert len(found) == 3  # 2 and 4 follow 1 through their dependencies: nothing to say


def test_groups_in_the_opposite_order_of_the_dependencies_are_warned():
    text = """\
        subtasks:
          - {id: 1, name: Build, worker: codex}
          - {id: 2, name: Test, worker: codex, dependencies: [1]}
        execution_plan:
          parallel_groups:
            - {group: 1, tasks: [2]}
            - {group: 2, tasks: [1]}
        """
    plan, doc = convert(text)
    [warning] = warnings(plan, doc)
    assert (warning.line, warning.field) == (line_of(text, "tasks: [1]"), "execution_plan.parallel_groups[1].tasks[0]")
    assert warning.message == ("the groups put subtask 2 (test) before subtask 1 (build), which it waits for: Magic Box "
                               "runs by the dependencies, so build runs first.")


def test_warnings_are_located_the_same_whether_or_not_the_document_translates():
    doc = LocatedYaml(textwrap.dedent(GROUPS))
    plan = DecompositionPlan(doc.data)
    before = decomposition_warnings(plan, doc.locate)
    doc.data, doc.translate = plan.data, plan.original_path
    assert decomposition_warnings(plan, doc.locate) == before


@pytest.mark.parametrize("check, command", [
    ("pytest -q", "pytest -q"),
    ("`make check`", "make check"),
    ("```\nnpm run test:unit\n```", "npm run test:unit"),
    ("All tests pass: `cargo test --workspace`", "cargo test --workspace"),
    ("./scripts/check.sh --fast", "./scripts/check.sh --fast"),
    ("ruff check .", "ruff check ."),
    ("make all", "make all"),
    ("All tests pass", None),
    ("make sure all tests pass", None),
    ("Make the UI match the mockup", None),
    ("pytest passes", None),
    ("Confirm `README.md` describes the new flag", None),
    ("Don't break the API", None),
    ("test -f dist/app.js", "test -f dist/app.js"),
    ("test coverage above 80%", None),
    ("Users can sign in", None),
])
def test_a_check_is_a_command_only_when_it_reads_as_one(check, command):
    assert classify_check(check) == (command, "")


@pytest.mark.parametrize("check", ["pytest -q && ruff check .", "`pytest | tee log`", "Run `pytest` then `ruff check .`"])
def test_a_check_a_gate_cannot_run_becomes_an_approval_with_a_reason(check):
    command, reason = classify_check(check)
    assert command is None and reason


def test_several_gates_after_one_task_become_one_approval_listing_every_check():
    text = """\
        subtasks:
          - {id: 1, name: Build, worker: codex}
        execution_plan:
          quality_gates:
            - {after_task: 1, check: "pytest -q"}
            - {after_task: 1, check: "The changelog mentions the fix"}
            - {after_task: 1, check: "pytest -q && ruff check ."}
        """
    plan, doc = convert(text)
    gate = plan.data["parallel_execution"]["tasks"][0]["gate"]
    assert gate == {"approve": True, "message": "1. pytest -q\n2. The changelog mentions the fix\n3. pytest -q && ruff check ."}
    [warning] = warnings(plan, doc)
    assert warning.line == line_of(text, "changelog")
    assert warning.message.startswith("quality gates 1, 2, 3 all follow task build, and a task has one gate: they become "
                                      "one approval in which a person confirms every check")


def test_a_lone_shell_line_check_becomes_an_approval_with_a_warning():
    text = """\
        subtasks:
          - {id: 1, name: Build, worker: codex}
        execution_plan:
          quality_gates:
            - {after_task: 1, check: "pytest -q && ruff check ."}
        """
    plan, doc = convert(text)
    assert plan.data["parallel_execution"]["tasks"][0]["gate"] == {"approve": True, "message": "pytest -q && ruff check ."}
    [warning] = warnings(plan, doc)
    assert warning.field == "execution_plan.quality_gates[0].check"
    assert "without a shell" in warning.message


def test_a_subtask_with_its_own_gate_and_a_quality_gate_is_a_fault():
    plan, doc = convert("""\
        subtasks:
          - {id: 1, name: Build, worker: codex, gate: {approve: true, message: Look}}
        execution_plan:
          quality_gates: [{after_task: 1, check: pytest}]
        """)
    assert problems(plan, doc)["execution_plan.quality_gates[0].after_task"][1].startswith("subtask 1 has its own `gate:`")
    assert plan.data["parallel_execution"]["tasks"][0]["gate"] == {"approve": True, "message": "Look"}


def test_loops_and_review_choices_may_name_subtasks_by_number():
    plan, doc = convert("""\
        subtasks:
          - {id: 1, name: Build, worker: codex, candidates: [claude, codex], choose: {review: 2}}
          - {id: 2, name: Review, worker: claude, dependencies: [1], loop: {fixes: [1, 5], max_rounds: 2}}
        """)
    build, review = plan.data["parallel_execution"]["tasks"]
    assert build["choose"] == {"review": "review"} and build["candidates"] == ["claude", "codex"]
    assert review["loop"] == {"fixes": ["build", 5], "max_rounds": 2}
    assert problems(plan, doc)["subtasks[1].loop.fixes[1]"] == (3, "no subtask has id 5. Subtask ids: 1, 2.")


def test_a_long_goal_makes_a_short_name_and_a_given_name_wins():
    goal = "Rebuild the billing pipeline " + "so that every invoice is reconciled " * 10
    plan, _ = convert(yaml.safe_dump({"task_analysis": {"goal": goal}, "subtasks": [{"id": 1, "name": "a", "worker": "codex"}]}))
    name = plan.data["name"]
    assert len(name) <= 200 and name.endswith("…") and name.startswith("Rebuild the billing pipeline")
    assert plan.data["description"] == goal.strip()
    plan, _ = convert(yaml.safe_dump({"name": "Billing", "task_analysis": {"goal": goal},
                                      "subtasks": [{"id": 1, "name": "a", "worker": "codex"}]}))
    assert plan.data["name"] == "Billing" and plan.original_path(["name"]) == (["name"], True)
