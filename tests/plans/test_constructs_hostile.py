"""Hostile numbers and sizes in plans with loops, candidates and decompositions: refused with a message, never
a crash, and warnings kept bounded."""

import json
import time

import pytest

from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_plan

BIG = "1" + "0" * 400  # a whole number YAML reads fine, too large for a float


def test_a_huge_max_rounds_is_refused_not_a_crash():
    """_schema_problems formats the out-of-range value with {:g}: an int beyond a float's range
    raises OverflowError out of load_plan (a 500 on the import page and in the editor)."""
    text = ("parallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: 'true'}\n"
            f"    - {{id: r, worker: shell, command: 'true', depends_on: [a], loop: {{fixes: [a], max_rounds: {BIG}}}}}\n")
    with pytest.raises(PlanInvalid) as caught:
        load_plan(text, "p.yaml", workers=["shell"])
    assert "max_rounds must be from 1 to 20" in caught.value.report()


@pytest.mark.django_db
def test_the_editor_refuses_a_huge_loop_rounds_with_a_message(logged_in_client):
    from tests.views.test_plan_editor import form

    tasks = [{"id": "a", "worker": "shell", "command": "true"},
             {"id": "r", "worker": "shell", "command": "true", "depends_on": ["0"], "loop_fixes": "a", "loop_rounds": BIG}]
    response = logged_in_client.post("/plans/new/", form("Huge", tasks, action="validate"))
    assert response.status_code in (200, 400) and "max_rounds" in response.content.decode()


def decomposition_chain(n: int) -> dict:
    subtasks = [{"id": i, "name": f"step {i}", "worker": "shell", "command": "true", "dependencies": [i - 1] if i > 1 else []}
                for i in range(1, n + 1)]
    return {"subtasks": subtasks, "execution_plan": {"parallel_groups": [{"group": 1, "tasks": list(range(1, n + 1))}]}}


def test_a_decomposition_with_one_big_parallel_group_gives_bounded_warnings():
    """2,000 chained subtasks put in one parallel group (a 190 KB file): each subtask's warning
    lists every subtask it waits for, so the plan carries ~25 million characters of notices,
    stored in its revision (PlanRevision.spec) and shown on the plan page."""
    text = json.dumps(decomposition_chain(2000))
    started = time.monotonic()
    spec = load_plan(text, "d.yaml", workers=["shell"])
    took = time.monotonic() - started
    noticed = sum(len(n.message) for n in spec.notices)
    assert noticed < 1_000_000, f"{noticed} characters of warnings for a {len(text)}-byte file (loaded in {took:.1f} s)"


def test_a_decomposition_subtask_with_candidates_needs_no_worker():
    """The canonical form lets a task with candidates leave out `worker` (its candidates name
    them), and the decomposition form passes candidates on; but it demands a worker first."""
    doc = {"subtasks": [
        {"id": 1, "name": "Build the page", "description": "Build it.", "candidates": ["claude", "codex"], "choose": {"review": 2}},
        {"id": 2, "name": "Pick", "worker": "claude", "description": "Pick the best.", "dependencies": [1]}]}
    spec = load_plan(json.dumps(doc), "d.yaml", workers=["claude", "codex", "shell"])
    assert spec.task("build-the-page").candidates.choose.review == "pick"


@pytest.mark.django_db
def test_the_editor_refuses_a_candidates_count_of_5000_digits_with_a_message(logged_in_client):
    """editor._constructs_from_row reads "shell x<digits>" with int() outside any try: past
    4300 digits Python raises ValueError, a 500 instead of the field's message."""
    from tests.views.test_plan_editor import form

    tasks = [{"id": "w", "worker": "shell", "command": "true", "candidates": "shell x" + "9" * 5000, "choose": "person"}]
    response = logged_in_client.post("/plans/new/", form("Many", tasks, action="validate"))
    assert response.status_code in (200, 400) and 'id="err-tasks-0-candidates"' in response.content.decode()


def test_a_5000_digit_number_in_a_plan_file_is_refused_not_a_crash():
    """PyYAML's int constructor hits Python's 4300-digit limit: ValueError escapes load_plan
    (LocatedYaml catches YAMLError, TooLarge and RecursionError only), a 500 on import."""
    text = "parallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: 'true'}\n" \
           f"    - {{id: r, worker: shell, command: 'true', depends_on: [a], loop: {{fixes: [a], max_rounds: {'9' * 5000}}}}}\n"
    with pytest.raises(PlanInvalid):
        load_plan(text, "p.yaml", workers=["shell"])
