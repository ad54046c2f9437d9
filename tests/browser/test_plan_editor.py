"""A user writes a plan in the browser's forms, sees its picture, saves it and runs it."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def fill_task(page, n: int, task_id: str, command: str) -> None:
    page.fill(f"input[name=tasks-{n}-id]", task_id)
    page.fill(f"input[name=tasks-{n}-command]", command)


def test_a_three_task_plan_is_built_in_the_forms_and_runs(page, stack):
    page.click("#new-plan")
    page.fill("input[name=name]", "Built in the browser")
    fill_task(page, 0, "fetch", "python -c \"print('fetched 3 rows')\"")
    page.click("#add-task")
    page.wait_for_selector("input[name=tasks-1-id]")
    assert page.input_value("input[name=tasks-0-id]") == "fetch", "typed text was lost"
    fill_task(page, 1, "process", "python -c \"print('processed')\"")
    page.click("#add-task")
    page.wait_for_selector("input[name=tasks-2-id]")
    fill_task(page, 2, "report", "python -c \"import os; print(open(os.environ['MAGICBOX_UPSTREAM_DIR'] + '/process.result').read())\"")
    page.check("#task-form-1 input[name=tasks-1-depends_on][value='0']")
    page.check("#task-form-2 input[name=tasks-2-depends_on][value='1']")

    # A mistake shows beside its field as it is typed, and goes away when fixed.
    page.fill("input[name=tasks-2-id]", "fetch")
    page.locator("#err-tasks-2-id", has_text="duplicate task id 'fetch'").wait_for()
    page.fill("input[name=tasks-2-id]", "report")
    page.locator("#err-tasks-2-id:empty").wait_for(state="attached")
    page.locator("svg.dag g.dag-node[data-task=report]").wait_for()
    assert page.locator("svg.dag path.dag-edge").count() == 2

    page.click("#save-plan")
    page.wait_for_selector("text=Saved revision 1 of Built in the browser")
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    page.locator("pre.log", has_text="processed").first.wait_for()
    report = page.locator(".task-row[data-task=report]")
    assert report.get_attribute("data-state") == "succeeded"
