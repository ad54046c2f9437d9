"""A user writes a plan in the browser's forms, sees its picture, saves it and runs it."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def fill_task(page, n: int, task_id: str, command: str) -> None:
    page.fill(f"input[name=tasks-{n}-id]", task_id)
    page.fill(f"[name=tasks-{n}-command]", command)


def pick(page, n: int, search: str, task_id: str) -> None:
    """In task n's "Depends on" picker, type `search` and pick `task_id` from what it offers."""
    picker = page.locator(f"#task-form-{n}").get_by_role("combobox", name="Depends on")  # the search box has the label
    picker.focus()
    page.keyboard.type(search)
    page.locator(".ts-dropdown.multi .option", has_text=task_id).click()
    page.keyboard.press("Escape")
    page.locator(f"#task-form-{n} .ts-control .item", has_text=task_id).wait_for()


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
    pick(page, 1, "fet", "fetch")
    pick(page, 2, "proc", "process")

    # A mistake shows beside its field as it is typed, and goes away when fixed.
    page.fill("input[name=tasks-2-id]", "fetch")
    page.locator("#err-tasks-2-id", has_text="duplicate task id 'fetch'").wait_for()
    page.fill("input[name=tasks-2-id]", "report")
    page.locator("#err-tasks-2-id").wait_for(state="detached")
    page.locator("svg.dag g.dag-node[data-task=report]").wait_for()
    assert page.locator("svg.dag path.dag-edge").count() == 2

    page.click("#save-plan")
    page.wait_for_selector("text=Saved revision 1 of Built in the browser")
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    page.click(".task-row[data-task=process]")
    page.locator("#task-detail pre.log", has_text="processed").wait_for()
    report = page.locator(".task-row[data-task=report]")
    assert report.get_attribute("data-state") == "succeeded"


def test_dependencies_are_searched_picked_and_removed_in_their_picker_and_saved(page, stack, tmp_path):
    import yaml

    steps = "".join(f"    - {{id: step_{i:02d}, worker: shell, command: 'true'}}\n" for i in range(30))
    source = tmp_path / "picker.yaml"
    source.write_text("name: Picker\nparallel_execution:\n  tasks:\n" + steps +
                      "    - {id: report, worker: shell, command: 'true', depends_on: [step_03, step_07]}\n")
    page.set_input_files("input[name=file]", str(source))
    page.click("#import button[type=submit]")
    page.wait_for_selector("text=Imported Picker")
    page.click("#edit-plan")
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

    # The picker offers tasks by the ids as typed now, not as the page was sent.
    page.fill("input[name=tasks-17-id]", "collect")
    report = page.locator("#task-form-30")  # far below: its picker is made when it is scrolled to
    report.scroll_into_view_if_needed()
    picked = report.locator(".ts-control .item")
    expect(picked).to_have_text(["step_03×", "step_07×"])

    picked.filter(has_text="step_03").get_by_title("Remove this task").click()
    box = report.get_by_role("combobox", name="Depends on")
    box.focus()
    page.keyboard.type("coll")
    expect(page.locator(".ts-dropdown.multi .option")).to_have_text(["collect"])
    page.keyboard.press("Enter")  # picked by the keyboard
    page.keyboard.type("step_2")
    expect(page.locator(".ts-dropdown.multi .option")).to_have_count(10)  # step_20 … step_29
    page.locator(".ts-dropdown.multi .option", has_text="step_25").click()
    box.fill("report")
    expect(page.locator(".ts-dropdown.multi .option")).to_have_count(0)  # a task cannot wait for itself
    page.keyboard.press("Escape")
    expect(picked).to_have_text(["step_07×", "collect×", "step_25×"])

    # A pick is checked as you type: a cycle shows, and goes when the pick is taken back.
    step_07 = page.locator("#task-form-7")
    step_07.scroll_into_view_if_needed()
    step_07.get_by_role("combobox", name="Depends on").focus()
    page.keyboard.type("report")
    page.keyboard.press("Enter")
    page.locator("#editor .field-errors", has_text="dependency cycle").wait_for()
    page.keyboard.press("Backspace")  # removes the last pick
    page.locator("#editor .field-errors", has_text="dependency cycle").wait_for(state="detached")

    # The folded fields are there when opened, and are saved.
    report.get_by_text("Prompt, output, integration, files").click()
    report.get_by_label("Writes (one path or glob a line)").fill("out/report.txt")
    page.click("#save-plan")
    page.wait_for_selector("text=Saved revision 2 of Picker")

    saved = yaml.safe_load(page.request.get(page.url.rstrip("/") + "/export.yaml").text())
    tasks = {t["id"]: t for t in saved["parallel_execution"]["tasks"]}
    assert tasks["report"]["depends_on"] == ["step_07", "collect", "step_25"]
    assert tasks["report"]["writes"] == ["out/report.txt"]
    assert "depends_on" not in tasks["step_07"] and "collect" in tasks
    assert console_errors == []


def test_a_gate_and_a_review_loop_are_built_in_the_editor_and_run(page, stack):
    page.click("#new-plan")
    page.fill("input[name=name]", "Loop and gate from the editor")
    fill_task(page, 0, "write", "python -c \"import os; print('v2' if 'Review findings' in os.environ['MAGICBOX_PROMPT'] else 'v1')\"")
    page.click("#add-task")
    page.wait_for_selector("input[name=tasks-1-id]")
    fill_task(page, 1, "review", "python -c \"import os; print('APPROVE' if 'v2' in os.environ['MAGICBOX_PROMPT'] else 'REQUEST_CHANGES: say v2')\"")
    pick(page, 1, "wri", "write")
    page.click("details[data-more='1'] > summary")  # its loop, candidates and gate fields
    page.fill("input[name=tasks-1-loop_fixes]", "writ")  # a mistake, shown beside the loop as it is typed
    page.locator("#err-tasks-1-loop", has_text="'writ' is not a task of this plan").wait_for()
    page.fill("input[name=tasks-1-loop_fixes]", "write")
    page.locator("#err-tasks-1-loop").wait_for(state="detached")
    page.fill("input[name=tasks-1-loop_rounds]", "3")
    page.select_option("select[name=tasks-1-gate]", "approve")
    page.fill("input[name=tasks-1-gate_message]", "Read the review")
    page.click("#add-task")  # the gate must hold something back
    page.wait_for_selector("input[name=tasks-2-id]")
    assert page.input_value("input[name=tasks-1-loop_fixes]") == "write", "typed text was lost"
    fill_task(page, 2, "ship", "python -c \"print('shipped')\"")
    pick(page, 2, "rev", "review")
    page.click("#save-plan")
    page.wait_for_selector("text=Saved revision 1 of Loop and gate from the editor")
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")
    page.locator(".task-row[data-task=review][data-state=waiting]").wait_for(timeout=60_000)
    page.click(".task-row[data-task=review]")
    # The row and the task's detail are live updates of their own: the second round shows a moment later.
    page.locator("#loop-rounds", has_text="2 rounds").wait_for()
    assert "REQUEST_CHANGES" in page.inner_text("#loop-rounds")
    page.click("#gate-approve")
    page.locator("#run-header[data-state=succeeded]").wait_for()


def test_candidates_built_in_the_editor_race_and_an_operator_picks_the_winner(page, stack):
    page.click("#new-plan")
    page.fill("input[name=name]", "Candidates from the editor")
    fill_task(page, 0, "guess", "python -c \"import os; print('guess', os.environ['MAGICBOX_TASK_ID'])\"")
    page.click("details[data-more='0'] > summary")
    page.fill("input[name=tasks-0-candidates]", "shell x3")
    page.locator("#err-tasks-0-candidates", has_text="say how the winner of guess").wait_for()  # as it is typed
    page.select_option("select[name=tasks-0-choose]", "person")
    page.locator("#err-tasks-0-candidates").wait_for(state="detached")
    page.click("#save-plan")
    page.wait_for_selector("text=Saved revision 1 of Candidates from the editor")
    assert "3 candidates (shell, shell, shell), chosen by an Operator" in page.inner_text("table.grid")
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")
    page.locator(".task-row[data-task=guess][data-state=waiting]").wait_for(timeout=60_000)
    page.click(".task-row[data-task=guess]")
    page.locator("#task-detail[data-task=guess] #candidates table.side-by-side th code", has_text="guess.3").wait_for()
    assert page.locator("#candidates table.side-by-side th code").all_inner_texts() == ["guess.1", "guess.2", "guess.3"]
    page.select_option("#choose-winner-select", "guess.2")
    page.click("#choose-winner")
    page.locator("#run-header[data-state=succeeded]").wait_for()
    page.locator("#task-detail[data-task=guess] .winner").wait_for()
    assert "guess guess.2" in page.inner_text("#task-detail[data-task=guess]")
