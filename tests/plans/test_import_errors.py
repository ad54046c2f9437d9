"""Every kind of bad plan is rejected with a message naming its line and field; nothing is stored."""
from __future__ import annotations

import textwrap

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import Plan, PlanRevision
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_plan

# (name, YAML, [fragments the report must contain]) — line numbers are the 1-based lines of the
# dedented text below, counted from its first line.
BAD_PLANS = [
    (
        "malformed YAML",
        """\
        parallel_execution:
          tasks:
            - id: a
             worker: shell
        """,
        ["bad.yaml:4:", "not valid YAML", "indentation"],
    ),
    (
        "unknown key",
        """\
        parallel_execution:
          tasks:
            - id: a
              worker: shell
              command: "true"
              depends: [b]
        """,
        ["bad.yaml:6:7:", "parallel_execution.tasks[0].depends", "unknown key 'depends'", "Did you mean 'depends_on'?"],
    ),
    (
        "duplicate task ids",
        """\
        parallel_execution:
          tasks:
            - {id: build, worker: shell, command: "true"}
            - {id: build, worker: shell, command: "true"}
        """,
        ["bad.yaml:4:", "parallel_execution.tasks[1].id", "duplicate task id 'build': task 1 (line 3) already has it"],
    ),
    (
        "depends_on names a missing task",
        """\
        parallel_execution:
          tasks:
            - {id: backend, worker: shell, command: "true"}
            - id: docs
              worker: shell
              command: "true"
              depends_on: [backnd]
        """,
        ["bad.yaml:7:", "parallel_execution.tasks[1].depends_on[0]", "'backnd' is not a task of this plan", "Did you mean 'backend'?"],
    ),
    (
        "dependency cycle",
        """\
        parallel_execution:
          tasks:
            - {id: a, worker: shell, command: "true", depends_on: [c]}
            - {id: b, worker: shell, command: "true", depends_on: [a]}
            - {id: c, worker: shell, command: "true", depends_on: [b]}
        """,
        ["bad.yaml:3:", "dependency cycle: a → c → b → a"],
    ),
    (
        "unknown worker",
        """\
        parallel_execution:
          tasks:
            - id: a
              worker: gpt-engineer
              description: build it
        """,
        ["bad.yaml:4:15:", "parallel_execution.tasks[0].worker", "unknown worker 'gpt-engineer'", "claude, codex, gemini, shell"],
    ),
    (
        "total_tasks disagrees with the list",
        """\
        parallel_execution:
          total_tasks: 3
          tasks:
            - {id: a, worker: shell, command: "true"}
        """,
        ["bad.yaml:2:16:", "parallel_execution.total_tasks", "total_tasks is 3 but the plan lists 1 tasks"],
    ),
    (
        "shell task without a command",
        """\
        parallel_execution:
          tasks:
            - {id: a, worker: shell}
        """,
        ["bad.yaml:3:", "the shell worker needs a `command:`"],
    ),
    (
        "not a plan at all",
        """\
        - just
        - a list
        """,
        ["bad.yaml:1:1:", "must be a mapping, not a list"],
    ),
]


@pytest.mark.parametrize("name, text, fragments", BAD_PLANS, ids=[b[0] for b in BAD_PLANS])
def test_loader_names_the_line_and_field_of_the_fault(name, text, fragments):
    with pytest.raises(PlanInvalid) as caught:
        load_plan(textwrap.dedent(text), "bad.yaml")
    report = caught.value.report()
    for fragment in fragments:
        assert fragment in report, f"{fragment!r} missing from:\n{report}"


@pytest.mark.django_db
@pytest.mark.parametrize("name, text, fragments", BAD_PLANS, ids=[b[0] for b in BAD_PLANS])
def test_importplan_rejects_the_file_and_stores_nothing(name, text, fragments, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(CommandError, match="rejected; nothing was stored"):
        call_command("importplan", str(path))
    assert fragments[-1] in capsys.readouterr().err
    assert Plan.objects.count() == 0 and PlanRevision.objects.count() == 0


def test_every_problem_of_a_file_is_reported_at_once():
    text = textwrap.dedent(
        """\
        parallel_execution:
          total_tasks: 5
          tasks:
            - {id: a, worker: shel, command: "true"}
            - {id: b, worker: shell, command: "true", depends_on: [zz]}
        """
    )
    with pytest.raises(PlanInvalid) as caught:
        load_plan(text, "two.yaml")
    fields = [p.field for p in caught.value.problems]
    assert fields == ["parallel_execution.total_tasks", "parallel_execution.tasks[0].worker", "parallel_execution.tasks[1].depends_on[0]"]


def test_a_command_string_is_split_like_a_shell_would_but_never_run_by_one():
    spec = load_plan(
        textwrap.dedent(
            """\
            parallel_execution:
              tasks:
                - {id: a, worker: shell, command: "grep -rn 'two words' src; rm -rf /"}
            """
        )
    )
    assert spec.tasks[0].command == ["grep", "-rn", "two words", "src;", "rm", "-rf", "/"]


@pytest.mark.django_db
def test_a_valid_file_imports_once_and_reimporting_it_reuses_the_revision(tmp_path, capsys):
    path = tmp_path / "ok.yaml"
    path.write_text("name: Lint\nparallel_execution:\n  tasks:\n    - {id: lint, worker: shell, command: [python, -V]}\n")
    call_command("importplan", str(path))
    call_command("importplan", str(path))
    out = capsys.readouterr().out
    assert "imported plan 'Lint' revision 1 (1 tasks)" in out and "unchanged plan 'Lint' revision 1" in out
    assert PlanRevision.objects.count() == 1


def test_an_invalid_json_schema_in_a_contract_is_named_by_its_pointer():
    text = textwrap.dedent(
        """\
        parallel_execution:
          tasks:
            - {id: api, worker: shell, command: "true"}
            - {id: ui, worker: shell, command: "true"}
        contracts:
          auth_api:
            provider: api
            consumer: ui
            specification:
              response:
                success:
                  type: object
                  properties:
                    token: {type: strng}
        """
    )
    with pytest.raises(PlanInvalid) as caught:
        load_plan(text, "c.yaml")
    report = caught.value.report()
    assert "c.yaml:14:27: contracts.auth_api.specification.response.success.properties.token.type" in report
    assert "not a valid JSON Schema at /contracts/auth_api/specification/response/success/properties/token/type" in report
