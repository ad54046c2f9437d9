"""The editor builds review loops, candidates and gates, shows them again, and puts each
mistake beside its field."""
from __future__ import annotations

import json
import re

import pytest

from orchestration.models import Plan
from orchestration.plans.spec import Choice, Gate, Loop
from tests.views.test_plan_editor import form

pytestmark = pytest.mark.django_db

WRITE = {"id": "write", "worker": "claude", "description": "Write it.", "candidates": "claude, codex", "choose": "review",
         "choose_review": "pick"}
PICK = {"id": "pick", "worker": "claude", "description": "Pick the best.", "depends_on": ["0"]}
POLISH = {"id": "polish", "worker": "codex", "description": "Polish the winner.", "depends_on": ["1"]}
REVIEW = {"id": "review", "worker": "claude", "description": "Review it.", "depends_on": ["2"], "loop_fixes": "polish",
          "loop_rounds": "2", "gate": "approve", "gate_message": "Ship it?", "gate_timeout": "3600"}
SHIP = {"id": "ship", "worker": "shell", "command": "true", "depends_on": ["3"]}


def test_the_editor_saves_a_loop_candidates_and_a_gate_and_shows_them_again(logged_in_client):
    response = logged_in_client.post("/plans/new/", form("Constructs", [WRITE, PICK, POLISH, REVIEW, SHIP], action="save"))
    assert response.status_code == 302, response.content.decode()[:3000]
    spec = Plan.objects.get(name="Constructs").latest_revision.spec
    assert spec.task("write").candidates.workers == ["claude", "codex"]
    assert spec.task("write").candidates.choose == Choice(review="pick")
    assert spec.task("review").loop == Loop(fixes=["polish"], max_rounds=2)
    assert spec.task("review").gate == Gate(approve=True, message="Ship it?", timeout=3600)
    page = logged_in_client.get(f"/plans/{Plan.objects.get(name='Constructs').pk}/edit/").content.decode()
    assert 'name="tasks-0-candidates" value="claude, codex"' in page and 'name="tasks-3-loop_fixes" value="polish"' in page
    assert '<option value="approve" selected>' in page and 'name="tasks-3-gate_message" value="Ship it?"' in page


@pytest.mark.parametrize("change, key, fragment", [
    ({"loop_fixes": "ship"}, "tasks-3-loop", "ship is not upstream of review"),
    ({"loop_rounds": "0"}, "tasks-3-loop", "max_rounds must be from 1 to 20"),
    ({"gate": "command", "gate_command": "'unclosed"}, "tasks-3-gate", "cannot split the command"),
])
def test_a_mistake_in_a_construct_is_shown_beside_its_field(logged_in_client, change, key, fragment):
    response = logged_in_client.post("/plans/new/", form("Broken", [WRITE, PICK, POLISH, {**REVIEW, **change}, SHIP], action="save"))
    assert response.status_code == 400
    page = response.content.decode()
    listed = re.search(rf'<ul class="field-errors" id="err-{key}">(.*?)</ul>', page, re.S)
    assert listed and fragment in listed.group(1), page[page.find("field-errors"):][:1500]
    assert not Plan.objects.filter(name="Broken").exists()


def test_candidates_without_a_way_to_choose_are_flagged_as_you_type(logged_in_client):
    response = logged_in_client.post("/plans/new/", form("Typing", [{**WRITE, "choose": ""}, PICK], action="validate"))
    assert "say how the winner of write&#x27;s candidates is chosen" in response.content.decode()
    assert 'id="err-tasks-0-candidates"' in response.content.decode()





def test_a_multi_line_command_survives_the_editor_unchanged(logged_in_client):
    from tests.conftest import make_plan

    code = 'import os\nprompt = os.environ["MAGICBOX_PROMPT"]\nprint(\'it\\\'s\', len(prompt))'
    plan = make_plan(json.dumps({"name": "Multi", "parallel_execution": {"tasks": [
        {"id": "a", "worker": "shell", "command": ["python", "-c", code]}]}}))
    page = logged_in_client.get(f"/plans/{plan.pk}/edit/").content.decode()
    shown = re.search(r'<textarea name="tasks-0-command"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    import html

    typed = html.unescape(shown).replace("\n", "\r\n")  # as a browser posts a textarea
    response = logged_in_client.post(f"/plans/{plan.pk}/edit/", form("Multi", [{"id": "a", "worker": "shell", "command": typed}],
                                                                   action="save", base_revision="1"))
    assert response.status_code == 302
    assert Plan.objects.get(pk=plan.pk).latest_revision.spec.task("a").command == ["python", "-c", code]


@pytest.mark.parametrize("change, key, fragment", [
    ({"choose_review": ""}, "tasks-0-choose", "name the review task that chooses"),
    ({"choose": "command", "choose_review": ""}, "tasks-0-choose", "write the command run in each candidate"),
])
def test_a_choice_missing_its_part_says_which_field_to_fill(logged_in_client, change, key, fragment):
    response = logged_in_client.post("/plans/new/", form("Half", [{**WRITE, **change}, PICK], action="save"))
    listed = re.search(rf'<ul class="field-errors" id="err-{key}">(.*?)</ul>', response.content.decode(), re.S)
    assert listed and fragment in listed.group(1)


@pytest.mark.parametrize("change, fragment", [
    ({"gate": "command", "gate_command": ""}, "write the check that must pass"),
    ({"gate_timeout": "-5"}, "more than 0, or empty for no limit"),
    ({"loop_fixes": ""}, "name the tasks this review sends back"),
])
def test_a_gate_or_loop_missing_its_part_says_which_field_to_fill(logged_in_client, change, fragment):
    response = logged_in_client.post("/plans/new/", form("Half", [WRITE, PICK, POLISH, {**REVIEW, **change}, SHIP], action="save"))
    assert response.status_code == 400 and fragment in response.content.decode()
