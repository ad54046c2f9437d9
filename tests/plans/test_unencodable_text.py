"""Text that cannot be encoded (a lone surrogate such as "\\ud800", written as an escape) is a
located error wherever a plan comes in, and is never stored."""
from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from orchestration.models import Plan, PlanRevision, PromptTemplate
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_plan

pytestmark = pytest.mark.django_db

# The escapes as a file holds them (backslash, u, d, 8, 0, 0): YAML and JSON read them as one
# UTF-16 code unit each, which alone is no character.
LONE = (
    'name: "Broken \\ud800 plan"\n'
    "parallel_execution:\n"
    "  tasks:\n"
    "    - id: build\n"
    "      worker: shell\n"
    '      command: ["echo", "ok \\udc00"]\n'
)


def test_a_lone_surrogate_is_a_located_error_naming_its_field():
    with pytest.raises(PlanInvalid) as caught:
        load_plan(LONE, "broken.yaml")
    report = caught.value.report()
    assert "broken.yaml:1:7: name: the text contains \\ud800, half of a UTF-16 surrogate pair without its other half" in report
    assert "broken.yaml:6:25: parallel_execution.tasks[0].command[1]: the text contains \\udc00" in report
    report.encode("utf-8")  # the report itself can be shown, printed and stored


def test_a_lone_surrogate_in_a_key_is_named_by_its_escape():
    text = json.dumps({"name": "k", "parallel_execution": {"tasks": [{"id": "a", "worker": "shell", "command": ["true"], "\ud800": 1}]}})
    with pytest.raises(PlanInvalid) as caught:
        load_plan(text, "key.json")
    assert caught.value.problems[0].field == "parallel_execution.tasks[0].\\ud800"
    assert "the text contains \\ud800" in caught.value.problems[0].message


def test_a_surrogate_pair_written_as_two_escapes_is_the_character_it_stands_for():
    text = 'name: "Smile \\ud83d\\ude00"\nparallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: ["echo", "\\ud83d\\ude80"]}\n'
    spec = load_plan(text, "pair.yaml")
    assert spec.name == "Smile 😀" and spec.tasks[0].command == ["echo", "🚀"]


def test_an_upload_or_a_paste_with_a_lone_surrogate_is_a_400_that_stores_nothing(logged_in_client):
    upload = logged_in_client.post("/plans/import/", {"file": SimpleUploadedFile("broken.yaml", LONE.encode())})
    assert upload.status_code == 400
    assert "broken.yaml:1:7: name: the text contains \\ud800" in upload.content.decode()
    pasted = logged_in_client.post("/plans/import/", {"text": LONE})
    assert pasted.status_code == 400 and "pasted plan:6:25: parallel_execution.tasks[0].command[1]" in pasted.content.decode()
    assert not Plan.objects.exists() and not PlanRevision.objects.exists()
    assert logged_in_client.get("/plans/").status_code == 200


def test_importplan_names_the_lone_surrogate_without_a_traceback(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(LONE)
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, like a terminal's
    with pytest.raises(CommandError, match="1 of 1 plan file"):
        call_command("importplan", str(path), stderr=stderr)
    stderr.seek(0)
    assert f"{path}:1:7: name: the text contains \\ud800" in stderr.read()
    assert not Plan.objects.exists()


def test_the_editor_puts_a_lone_surrogate_beside_its_field_and_saves_nothing(logged_in_client):
    data = {"name": "Edited", "tasks-count": "1", "contracts-count": "0", "points-count": "0", "criteria": "",
            "tasks-0-id": "build", "tasks-0-worker": "shell", "tasks-0-command": "true",
            "tasks-0-output_schema": '{"type": "string", "description": "\\ud800"}'}
    for action, status in (("validate", 200), ("save", 400)):
        response = logged_in_client.post("/plans/new/", {**data, "action": action})
        page = response.content.decode()
        assert response.status_code == status
        start = page.index('id="err-tasks-0-output_schema"')
        assert "the text contains \\ud800" in page[start:page.index("</ul>", start)]
    assert not Plan.objects.exists()


def test_a_prompt_form_with_bytes_that_are_no_text_stores_text_that_can_be_shown(logged_in_client):
    # Browsers cannot send a lone surrogate; raw bytes of one (ED A0 80) arrive replaced.
    response = logged_in_client.generic("POST", "/prompts/new/", b"path=prompts%2Fodd.md&body=odd+%ED%A0%80+bytes",
                                        content_type="application/x-www-form-urlencoded")
    prompt = PromptTemplate.objects.get(path="prompts/odd.md")
    assert response.status_code == 302 and prompt.body.encode("utf-8")
    assert logged_in_client.get(response.url).status_code == 200


@pytest.mark.cli
@pytest.mark.django_db(transaction=True)
def test_a_drafted_plan_with_a_lone_surrogate_fails_saying_where_and_its_page_opens(logged_in_client, model):
    import asyncio

    from orchestration.models import PlanDraft
    from tests.conftest import drain_engine
    from tests.fakes.model_server import Text

    model.when("Add a login page", Text("```yaml\n" + LONE + "```\n"))
    logged_in_client.post("/plans/draft/", {"goal": "Add a login page", "worker": "claude"})
    asyncio.run(drain_engine())
    draft = PlanDraft.objects.get()
    assert draft.state == "failed" and draft.spec is None
    assert "draft.yaml:1:7: name: the text contains \\ud800" in draft.error
    page = logged_in_client.get(f"/plans/drafts/{draft.pk}/")
    assert page.status_code == 200 and "the text contains \\ud800" in page.content.decode()
    assert not Plan.objects.exists()
