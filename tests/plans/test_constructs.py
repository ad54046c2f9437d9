"""Review loops, best-of-N candidates and gates in a plan file: loaded into the plan's type,
exported back, and every mistake refused with its line and how to fix it."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestration.plans.errors import PlanInvalid
from orchestration.plans.exporter import spec_to_yaml
from orchestration.plans.loader import load_plan
from orchestration.plans.spec import Choice, Gate, Loop

SEED = Path(__file__).parent / "seed_examples"

GOOD = """\
name: constructs
parallel_execution:
  tasks:
    - id: api
      worker: codex
      description: Build the API.
    - id: ui
      candidates: [claude, codex, gemini]
      choose: {review: judge}
      description: Build the page.
    - id: judge
      worker: claude
      description: Name the best candidate.
      depends_on: [ui]
    - id: review
      worker: claude
      description: Review api and ui. Answer APPROVE, REQUEST_CHANGES or REJECT first.
      depends_on: [api, judge]
      loop: {fixes: [api], max_rounds: 2}
      gate: {approve: true, message: Look at the diff before deploying, timeout: 3600}
    - id: deploy
      worker: shell
      command: ./deploy.sh
      depends_on: [review]
      candidates: {worker: shell, n: 2}
      choose: {command: "curl -fsS http://127.0.0.1/health", timeout: 30}
"""


def report(text: str) -> str:
    with pytest.raises(PlanInvalid) as caught:
        load_plan(textwrap.dedent(text), "p.yaml")
    return caught.value.report()


def test_loops_candidates_and_gates_load_typed_and_export_back_the_same():
    spec = load_plan(GOOD, "p.yaml")
    ui, review, deploy = spec.task("ui"), spec.task("review"), spec.task("deploy")
    assert ui.worker == "claude" and ui.candidates.workers == ["claude", "codex", "gemini"]
    assert ui.candidates.choose == Choice(review="judge") and ui.candidates.choose.way == "review"
    assert review.loop == Loop(fixes=["api"], max_rounds=2)
    assert review.gate == Gate(approve=True, message="Look at the diff before deploying", timeout=3600)
    assert deploy.candidates.workers == ["shell", "shell"]
    assert deploy.candidates.choose.command == ["curl", "-fsS", "http://127.0.0.1/health"]
    assert spec.downstream("review") == ["deploy"] and spec.upstream("review") == ["api", "judge"]
    assert load_plan(spec_to_yaml(spec), "exported.yaml") == spec


@pytest.mark.parametrize("name, text, fragments", [
    ("a loop fixing a task the review does not wait for", """\
        parallel_execution:
          tasks:
            - {id: a, worker: shell, command: "true"}
            - {id: b, worker: shell, command: "true"}
            - id: r
              worker: shell
              command: "true"
              depends_on: [a]
              loop: {fixes: [a, b]}
        """, ["p.yaml:9:25: parallel_execution.tasks[2].loop.fixes[1]", "b is not upstream of r", "Add b to r's depends_on"]),
    ("max_rounds of 0", """\
        parallel_execution:
          tasks:
            - {id: a, worker: shell, command: "true"}
            - {id: r, worker: shell, command: "true", depends_on: [a], loop: {fixes: [a], max_rounds: 0}}
        """, ["p.yaml:4:", "loop.max_rounds", "max_rounds must be from 1 to 20"]),
    ("a choose review that is not downstream of the candidates", """\
        parallel_execution:
          tasks:
            - {id: judge, worker: claude, description: pick}
            - id: ui
              candidates: [claude, codex]
              choose: {review: judge}
              description: build
        """, ["p.yaml:6:24: parallel_execution.tasks[1].choose.review", "judge does not wait for ui", "add ui to judge's depends_on"]),
    ("candidates without a way to choose", """\
        parallel_execution:
          tasks:
            - id: ui
              candidates: [claude, codex]
              description: build
        """, ["p.yaml:4:7:", "say how the winner of ui's candidates is chosen", "choose: person"]),
    ("an unknown candidate worker", """\
        parallel_execution:
          tasks:
            - {id: ui, candidates: [claude, codx], choose: person, description: build}
        """, ["p.yaml:3:37:", "unknown worker 'codx'", "Did you mean 'codex'?"]),
    ("a gate that is neither kind", """\
        parallel_execution:
          tasks:
            - {id: a, worker: shell, command: "true", gate: {aprove: true}}
            - {id: b, worker: shell, command: "true", depends_on: [a]}
        """, ["p.yaml:3:", "tasks[0].gate", "a gate is `{approve: true", "unknown key 'aprove'"]),
    ("a task named like another task's candidate", """\
        parallel_execution:
          tasks:
            - {id: ui, candidates: [claude, codex], choose: person, description: build}
            - {id: ui.2, worker: shell, command: "true"}
        """, ["p.yaml:4:12:", "'ui.2' is the name of candidate 2 of ui in a run: give this task another id."]),
    ("a gate on a task with candidates", """\
        parallel_execution:
          tasks:
            - {id: ui, candidates: [claude, codex], choose: person, description: build, gate: {approve: true}}
            - {id: ship, worker: shell, command: "true", depends_on: [ui]}
        """, ["p.yaml:3:", "put the gate on a task that depends on ui"]),
    ("a task with neither worker nor candidates", """\
        parallel_execution:
          tasks:
            - {id: a, command: "true"}
        """, ["p.yaml:3:", "missing required key 'worker'"]),
])
def test_a_mistake_in_a_loop_candidates_or_gate_is_located_with_its_fix(name, text, fragments):
    text = report(text)
    for fragment in fragments:
        assert fragment in text, (name, text)


def test_a_gate_on_a_task_nothing_waits_for_is_a_warning_shown_with_the_plan():
    spec = load_plan(textwrap.dedent("""\
        parallel_execution:
          tasks:
            - {id: a, worker: shell, command: "true"}
            - {id: b, worker: shell, command: "true", depends_on: [a], gate: {command: "make check"}}
        """), "p.yaml")
    assert spec.task("b").gate == Gate(command=["make", "check"])
    [notice] = spec.notices
    assert (notice.line, notice.field) == (4, "parallel_execution.tasks[1].gate")
    assert "nothing waits for b, so its gate holds nothing back" in notice.message


def test_the_orchestrators_decomposition_form_imports_with_readable_ids_gates_and_its_notices():
    spec = load_plan((SEED / "decomposition.yaml").read_text(), "answer.yaml")
    assert spec.ids[0] == "design-profile-api"
    assert spec.task("build-profile-api").depends_on == ["design-profile-api"]
    gates = {t.id: t.gate for t in spec.tasks if t.gate}
    assert any(g.command for g in gates.values()) and any(g.approve for g in gates.values()), gates
    assert "Keep the public API stable" in spec.task("build-profile-api").prompt
    assert any("1 → design-profile-api" in n.message for n in spec.notices), spec.notices


def test_a_cycle_in_the_decomposition_forms_dependencies_is_reported_at_its_line():
    text = report("""\
        task_analysis: {goal: Ship it}
        subtasks:
          - {id: 1, name: One, worker: shell, description: one, dependencies: [2], command: "true"}
          - {id: 2, name: Two, worker: shell, description: two, dependencies: [1], command: "true"}
        """)
    assert "p.yaml:3:" in text and "dependency cycle" in text and "subtasks[0].dependencies" in text, text


def test_importing_the_decomposition_form_says_it_warned_and_the_plan_page_shows_the_mapping(logged_in_client, db):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("answer.yaml", (SEED / "decomposition.yaml").read_bytes())
    response = logged_in_client.post("/plans/import/", {"file": upload}, follow=True)
    page = response.content.decode()
    assert "warning" in page and "see below" in page
    assert "task ids made from the subtasks&#x27; names: 1 → design-profile-api" in page
    assert 'id="plan-warnings"' in page and "line " in page
