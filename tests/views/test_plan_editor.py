"""Writing plans in web forms: validated as you type, never saved broken, nothing typed is lost."""
from __future__ import annotations

import re

import pytest

from orchestration.models import Plan
from orchestration.plans.editor import EditorState, PointRow, TaskRow, apply_action, validate
from tests.conftest import make_plan

pytestmark = pytest.mark.django_db


def form(name="Pipeline", tasks=(), **extra) -> dict:
    data = {"name": name, "tasks-count": str(len(tasks)), "contracts-count": "0", "points-count": "0", "criteria": ""}
    for n, task in enumerate(tasks):
        for key, value in task.items():
            data[f"tasks-{n}-{key}"] = value
    data.update(extra)
    return data


BUILD = {"id": "build", "worker": "shell", "command": "python -c 'print(1)'"}
TEST = {"id": "test", "worker": "shell", "command": "python -c 'print(2)'", "depends_on": ["0"]}


def test_a_valid_form_saves_a_plan_with_its_dependency(logged_in_client):
    response = logged_in_client.post("/plans/new/", form(tasks=[BUILD, TEST], action="save"))
    plan = Plan.objects.get(name="Pipeline")
    assert response.status_code == 302 and response.url == f"/plans/{plan.pk}/"
    tasks = plan.latest_revision.spec.tasks
    assert [(t.id, t.depends_on, t.command) for t in tasks] == [
        ("build", [], ["python", "-c", "print(1)"]), ("test", ["build"], ["python", "-c", "print(2)"])]


def test_a_broken_form_is_not_saved_and_everything_typed_comes_back(logged_in_client):
    cycle = dict(BUILD, depends_on=["1"])
    response = logged_in_client.post("/plans/new/", form(tasks=[cycle, TEST], action="save", description="keep this text"))
    page = response.content.decode()
    assert response.status_code == 400 and not Plan.objects.exists()
    assert "dependency cycle: build → test → build" in page
    assert "keep this text" in page and "python -c &#x27;print(2)&#x27;" in page


@pytest.mark.parametrize("tasks, slot, message", [
    ([BUILD, dict(TEST, id="build")], "err-tasks-1-id", "duplicate task id &#x27;build&#x27;"),
    ([dict(BUILD, command="")], "err-tasks-0-command", "the shell worker needs a `command:`"),
    ([dict(BUILD, timeout="1e400")], "err-tasks-0-timeout", "not a number a plan can hold"),
    ([dict(BUILD, timeout="soon")], "err-tasks-0-timeout", "must be a number"),
    ([dict(BUILD, command="echo 'unbalanced")], "err-tasks-0-command", "cannot split the command into arguments"),
])
def test_errors_appear_beside_their_field_as_you_type(logged_in_client, tasks, slot, message):
    page = logged_in_client.post("/plans/new/", form(tasks=tasks, action="validate")).content.decode()
    start = page.index(f'id="{slot}"')
    assert message in page[start:page.index("</ul>", start)]


def error_lists(page: str) -> dict[str, str]:
    """The error lists in an editor reply: {"err-tasks-0-id": "<li>…</li>", …}."""
    return dict(re.findall(r'<ul class="field-errors" id="(err-[\w-]+)">(.*?)</ul>', page))


def test_a_dependency_that_is_no_task_position_is_left_out_without_a_problem(logged_in_client):
    response = logged_in_client.post("/plans/new/", form(tasks=[dict(BUILD, depends_on=["²", "-1"])], action="validate"))
    assert response.status_code == 200 and error_lists(response.content.decode()) == {"err-plan": ""}


def test_fixed_problems_leave_the_page_and_only_fields_with_problems_get_a_list(logged_in_client):
    """As you type, the reply first removes every shown error list, then adds one beside each
    field that has a problem now: a fixed field's list goes, and nothing is sent for the others."""
    page = logged_in_client.post("/plans/new/", form(tasks=[BUILD, dict(TEST, timeout="soon")], action="validate")).content.decode()
    assert page.index('hx-swap-oob="delete:#editor .field-errors"') < page.index('id="err-plan"')
    assert error_lists(page) == {"err-plan": "", "err-tasks-1-timeout": "<li>must be a number</li>"}
    assert 'hx-swap-oob="afterend:#editor label:has(&gt; [name=&quot;tasks-1-timeout&quot;])"' in page
    fixed = logged_in_client.post("/plans/new/", form(tasks=[BUILD, TEST], action="validate")).content.decode()
    assert 'hx-swap-oob="delete:#editor .field-errors"' in fixed and error_lists(fixed) == {"err-plan": ""}


def test_an_invalid_contract_schema_is_named_by_its_pointer_beside_the_specification(logged_in_client):
    data = form(tasks=[BUILD, TEST], action="validate", **{
        "contracts-count": "1", "contracts-0-name": "api", "contracts-0-provider": "build", "contracts-0-consumer": "test",
        "contracts-0-specification": '{"response": {"type": "objekt"}}'})
    page = logged_in_client.post("/plans/new/", data).content.decode()
    start = page.index('id="err-contracts-0-specification"')
    assert "/contracts/api/specification/response/type" in page[start:page.index("</ul>", start)]


def test_adding_a_task_keeps_what_was_typed(logged_in_client):
    page = logged_in_client.post("/plans/new/", form(tasks=[BUILD], action="add-task")).content.decode()
    assert 'name="tasks-1-id"' in page and 'value="build"' in page and 'name="tasks-count" value="2"' in page


def test_editing_saves_a_new_revision_and_a_rename_keeps_the_plan(logged_in_client):
    plan = make_plan("name: Old\nparallel_execution:\n  tasks:\n    - {id: build, worker: shell, command: 'true'}\n")
    page = logged_in_client.get(f"/plans/{plan.pk}/edit/").content.decode()
    assert 'value="build"' in page and 'value="Old"' in page
    logged_in_client.post(f"/plans/{plan.pk}/edit/", form(name="New", tasks=[BUILD], action="save", base_revision="1"))
    plan.refresh_from_db()
    assert plan.name == "New" and plan.revisions.count() == 2


def test_a_save_over_someone_elses_newer_revision_is_refused_and_keeps_the_edits(logged_in_client):
    plan = make_plan("name: Shared\nparallel_execution:\n  tasks:\n    - {id: build, worker: shell, command: 'true'}\n")
    make_plan("name: Shared\nparallel_execution:\n  tasks:\n    - {id: build, worker: shell, command: 'false'}\n")
    response = logged_in_client.post(f"/plans/{plan.pk}/edit/", form(name="Shared", tasks=[BUILD], action="save", base_revision="1",
                                                           description="my edit"))
    page = response.content.decode()
    assert response.status_code == 400 and "was changed since you opened it (revision 2" in page and "my edit" in page
    assert plan.revisions.count() == 2


@pytest.mark.parametrize("path", ["examples/login-feature.yaml", "examples/repo-checks.yaml", "tests/plans/seed_examples/phased.yaml"])
def test_saving_an_unchanged_plan_changes_nothing(logged_in_client, path):
    from pathlib import Path

    from orchestration.plans.store import import_file

    revision, _ = import_file(Path(__file__).resolve().parents[2] / path)
    page = logged_in_client.get(f"/plans/{revision.plan_id}/edit/").content.decode()
    data = scrape_form(page)
    data["action"] = "save"
    response = logged_in_client.post(f"/plans/{revision.plan_id}/edit/", data, follow=True)
    assert "Nothing changed" in response.content.decode(), response.content.decode()[-3000:]
    assert revision.plan.revisions.count() == 1


def test_a_plan_of_more_than_500_tasks_is_opened_and_saved_whole(logged_in_client):
    """The editor used to read back at most 500 tasks: saving a larger plan dropped the rest."""
    import json

    tasks = [{"id": f"t{i}", "worker": "shell", "command": "true", **({"depends_on": [f"t{i - 1}"]} if i else {})} for i in range(600)]
    plan = make_plan(json.dumps({"name": "Long", "parallel_execution": {"tasks": tasks}}))
    page = logged_in_client.get(f"/plans/{plan.pk}/edit/").content.decode()
    assert page.count('<fieldset class="card task-form"') == 600
    # Each task lists only the task it depends on, not every other task.
    assert '<select id="depends-599" name="tasks-599-depends_on" multiple data-task-picker="599"><option value="598" selected>t598</option></select>' in page
    data = scrape_form(page)
    response = logged_in_client.post(f"/plans/{plan.pk}/edit/", data | {"action": "save"}, follow=True)
    assert "Nothing changed" in response.content.decode()
    data["tasks-599-id"] = "last"
    logged_in_client.post(f"/plans/{plan.pk}/edit/", data | {"action": "save"})
    saved = plan.latest_revision.spec.tasks
    assert len(saved) == 600 and saved[-1].id == "last" and saved[-1].depends_on == ["t598"]


def scrape_form(page: str) -> dict:
    """The fields a browser would post from the editor page (a small HTML form reader)."""
    from html.parser import HTMLParser

    class Reader(HTMLParser):
        def __init__(self):
            super().__init__()
            self.data, self.field, self.text, self.select, self.multiple = {}, None, [], None, False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "input" and a.get("name"):
                if a.get("type") == "checkbox":
                    if "checked" in a:
                        self.data.setdefault(a["name"], []).append(a.get("value", "on"))  # a browser's default
                else:
                    self.data[a["name"]] = a.get("value", "")
            elif tag == "textarea":
                self.field, self.text = a["name"], []
            elif tag == "select":
                self.select, self.multiple = a["name"], "multiple" in a
            elif tag == "option" and self.select and "selected" in a:
                if self.multiple:  # the task pickers: a list of the picked tasks' positions
                    self.data.setdefault(self.select, []).append(a["value"])
                else:
                    self.data[self.select] = a.get("value") or ""

        def handle_data(self, data):
            if self.field:
                self.text.append(data)
            elif self.select and self.lasttag == "option" and self.data.get(self.select) == "":
                self.data[self.select] = data.strip()

        def handle_endtag(self, tag):
            if tag == "textarea" and self.field:
                self.data[self.field] = "".join(self.text)
                self.field = None
            elif tag == "select":
                self.select = None

    reader = Reader()
    reader.feed(page)
    return reader.data


def test_a_name_another_plan_has_is_refused(logged_in_client):
    make_plan("name: Taken\nparallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: 'true'}\n")
    response = logged_in_client.post("/plans/new/", form(name="Taken", tasks=[BUILD], action="save"))
    assert response.status_code == 400 and "already exists" in response.content.decode()
    assert Plan.objects.get(name="Taken").revisions.count() == 1


def test_removing_or_moving_a_task_keeps_the_dependencies_pointing_at_the_same_tasks():
    state = EditorState(name="p", tasks=[TaskRow(id="a"), TaskRow(id="b", depends_on=[0]), TaskRow(id="c", depends_on=[0, 1])],
                        points=[PointRow(between=[0, 2])])
    apply_action(state, "up-task-2")  # c moves above b
    assert [t.id for t in state.tasks] == ["a", "c", "b"]
    assert state.tasks[1].depends_on == [0, 2] and state.tasks[2].depends_on == [0] and state.points[0].between == [0, 1]
    apply_action(state, "remove-task-0")
    assert [t.id for t in state.tasks] == ["c", "b"] and state.tasks[0].depends_on == [1] and state.points[0].between == [0]


def test_a_plan_without_tasks_says_to_add_one():
    spec, errors = validate(EditorState(name="empty"))
    assert spec is None and errors[""] == ["a plan needs at least one task: add one"]


def test_a_duplicate_id_is_reported_on_the_task_that_repeats_it_without_imagined_cycles(logged_in_client):
    a, b = dict(BUILD, id="fetch"), dict(BUILD, id="fetch")
    merge = {"id": "merge", "worker": "shell", "command": "true", "depends_on": ["0", "1"]}
    page = logged_in_client.post("/plans/new/", form(tasks=[a, b, merge], action="validate")).content.decode()
    slot = page[page.index('id="err-tasks-1-id"'):]
    assert "duplicate task id &#x27;fetch&#x27;: task 1 already has it" in slot[:slot.index("</ul>")]
    assert "cycle" not in page and "non-unique" not in page and "line" not in slot[:slot.index("</ul>")]


def test_a_command_comes_back_as_it_was_written(logged_in_client):
    logged_in_client.post("/plans/new/", form(tasks=[dict(BUILD, command="""python -c "print('A')" """)], action="save"))
    plan = Plan.objects.get()
    page = logged_in_client.get(f"/plans/{plan.pk}/edit/").content.decode()
    assert '>python -c &quot;print(&#x27;A&#x27;)&quot;</textarea>' in page


def test_a_tasks_network_setting_survives_the_editor_and_can_be_turned_off_there(logged_in_client):
    from tests.conftest import make_plan

    plan = make_plan("""
        name: Offline
        parallel_execution:
          tasks:
            - {id: fetch, worker: shell, command: "true"}
            - {id: crunch, worker: shell, command: "true", network: false}
        """)
    data = scrape_form(logged_in_client.get(f"/plans/{plan.pk}/edit/").content.decode())
    assert data.get("tasks-1-offline") == ["on"] and "tasks-0-offline" not in data
    response = logged_in_client.post(f"/plans/{plan.pk}/edit/", {**data, "action": "save"}, follow=True)
    assert "Nothing changed" in response.content.decode()

    data["tasks-0-offline"] = ["on"]
    logged_in_client.post(f"/plans/{plan.pk}/edit/", {**data, "action": "save"})
    plan.refresh_from_db()
    assert [t.network for t in plan.latest_revision.spec.tasks] == [False, False]
    assert "network: false" in logged_in_client.get(f"/plans/{plan.pk}/export.yaml").content.decode()


def test_inputs_are_written_in_the_editor_used_by_tasks_and_kept_on_a_save(logged_in_client):
    task = dict(BUILD, command="echo {{ inputs.branch }} {{ inputs.ticket }}")
    added = logged_in_client.post("/plans/new/", form(tasks=[task], action="add-input")).content.decode()
    assert 'name="inputs-0-name"' in added and "echo {{ inputs.branch }}" in added, "what was typed comes back"
    undeclared = logged_in_client.post("/plans/new/", form(tasks=[task], action="validate")).content.decode()
    assert "names no input of this plan" in undeclared and "+ Add input" in undeclared
    inputs = {"inputs-count": "3", "inputs-0-name": "branch", "inputs-0-default": "main", "inputs-0-description": "to build",
              "inputs-1-name": "ticket", "inputs-1-required": "on", "inputs-2-name": "branch"}
    twice = logged_in_client.post("/plans/new/", form(tasks=[task], action="validate", **inputs)).content.decode()
    start = twice.index('id="err-inputs-2-name"')
    assert "another input is already named &#x27;branch&#x27;" in twice[start:twice.index("</ul>", start)]
    inputs["inputs-count"] = "2"
    response = logged_in_client.post("/plans/new/", form(tasks=[task], action="save", **inputs))
    plan = Plan.objects.get(name="Pipeline")
    assert response.status_code == 302
    spec = plan.latest_revision.spec
    assert (spec.inputs["branch"].default, spec.inputs["branch"].description, spec.inputs["ticket"].required) == ("main", "to build", True)
    page = logged_in_client.get(f"/plans/{plan.pk}/edit/").content.decode()
    data = scrape_form(page)
    assert data["inputs-0-name"] == "branch" and data["inputs-1-required"] == ["on"]
    data["action"] = "save"
    assert "Nothing changed" in logged_in_client.post(f"/plans/{plan.pk}/edit/", data, follow=True).content.decode()
