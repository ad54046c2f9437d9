"""A user uploads a plan, starts a run and watches it live, without reloading the page."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_a_task_goes_from_running_to_succeeded_with_its_output_appearing_live(page, stack, tmp_path):
    go = tmp_path / "go"
    plan = tmp_path / "watch.yaml"
    # The task waits for a file the test creates once it has seen the task running: the test
    # controls when the task ends, so nothing depends on timing.
    plan.write_text(
        "name: Watch me\n"
        "parallel_execution:\n"
        "  tasks:\n"
        "    - id: waiter\n"
        "      worker: shell\n"
        "      command:\n"
        "        - python\n"
        "        - -c\n"
        "        - |\n"
        "          import pathlib, time\n"
        "          print('waiting for the go signal', flush=True)\n"
        f"          while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
        "          print('<i>all done</i>', flush=True)\n"
    )
    page.set_input_files("input[name=file]", str(plan))
    page.click("#import button[type=submit]")
    page.wait_for_selector("text=Imported Watch me")
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")
    page.evaluate("window.__sameDocument = true")

    row = page.locator(".task-row[data-task=waiter]")
    row.and_(page.locator("[data-state=running]")).wait_for()
    page.locator("pre.log", has_text="waiting for the go signal").wait_for()

    # A second viewer who opens the page mid-run sees the same state, and then the same end.
    second = page.context.browser.new_context().new_page()
    second.context.add_cookies(page.context.cookies())
    second.goto(page.url)
    second.wait_for_selector("body[data-socket=open]")
    second.locator(".task-row[data-task=waiter][data-state=running]").wait_for()
    second.locator("pre.log", has_text="waiting for the go signal").wait_for()

    go.touch()
    row.and_(page.locator("[data-state=succeeded]")).wait_for()
    page.locator("pre.log", has_text="<i>all done</i>").wait_for()  # shown as text, not markup
    page.locator("#run-header[data-state=succeeded]").wait_for()
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert page.locator("pre.log i").count() == 0
    second.locator(".task-row[data-task=waiter][data-state=succeeded]").wait_for()
    second.locator("pre.log", has_text="<i>all done</i>").wait_for()
    assert second.locator("pre.log", has_text="waiting for the go signal").count() == 1
    second.context.close()


def test_the_shell_example_plan_runs_to_the_end_in_the_browser(page, stack):
    # `serve` loaded the example plans; a new user finds them on the plans page.
    page.click("text=Magic Box repository checks")
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")
    page.locator("#run-header[data-state=succeeded], #run-header[data-state=failed]").wait_for(timeout=300_000)
    header = page.inner_text("#run-header")
    assert "5 of 5 tasks finished" in header
    assert page.locator("#run-header[data-state=succeeded]").count() == 1, header + page.inner_text(".tasks")
    page.locator(".task-row[data-task=summary][data-state=succeeded]").wait_for()
    page.goto(f"{stack.url}/runs/")
    assert "Magic Box repository checks" in page.inner_text("#runs")


def test_a_plan_page_draws_its_dag_with_phases_edges_and_contracts(page, stack):
    page.click("text=Login feature (seed example)")
    page.wait_for_selector("svg.dag")
    nodes = page.locator("svg.dag g.dag-node")
    assert sorted(nodes.evaluate_all("els => els.map(e => e.dataset.task)")) == ["backend", "docs", "frontend", "integration"]
    assert page.locator("svg.dag path.dag-edge").count() == 2
    assert page.locator("svg.dag path.dag-critical").count() == 1
    assert page.locator("svg.dag text.dag-contract-label", has_text="auth_api").count() == 1


def test_a_long_coloured_log_shows_its_tail_in_colour_and_loads_earlier_output_on_demand(page, stack, tmp_path):
    plan = tmp_path / "long.yaml"
    code = ("print('FIRST LINE')\n"
            "for i in range(6000): print(f'\\x1b[32mline {i:05d}\\x1b[0m ' + 'z' * 40)\n"
            "print('\\x1b]0;title\\x07done 10%\\rdone 100%')\n")
    plan.write_text(json.dumps({"name": "Long log", "parallel_execution": {"tasks": [
        {"id": "chatty", "worker": "shell", "command": ["python", "-c", code]}]}}))  # JSON is YAML
    page.set_input_files("input[name=file]", str(plan))
    page.click("#import button[type=submit]")
    page.wait_for_selector("text=Imported Long log")
    page.click("#start-run")
    page.locator("#run-header[data-state=succeeded], #run-header[data-state=failed]").wait_for()
    assert page.locator("#run-header[data-state=succeeded]").count() == 1, page.inner_text("main")
    page.reload()  # the tail as a page opened after the run shows it
    log = page.locator("pre.log").first
    assert "done 100%" in log.inner_text() and "done 10%" not in log.inner_text() and "title" not in log.inner_text()
    page.wait_for_selector("body[data-synced]")  # the socket's snapshot replaces the log once more
    expect(log.locator("span", has_text="line 05999")).to_have_css("color", "rgb(0, 170, 0)")
    assert "FIRST LINE" not in log.inner_text()
    while (button := page.locator("button", has_text="load earlier")).count():
        cursor = button.get_attribute("hx-get")
        button.click()
        page.wait_for_function("c => !document.querySelector(`button[hx-get='${c}']`)", arg=cursor)
    page.locator("text=All output is shown.").wait_for()
    text = log.inner_text()
    assert "FIRST LINE" in text and text.index("FIRST LINE") < text.index("line 00000") < text.index("line 05999")
    assert text.count("line 03000") == 1


def test_a_runs_dag_is_coloured_live_and_its_timeline_marks_the_critical_path(page, stack, tmp_path):
    def sleeper(seconds: float) -> list[str]:
        return ["python", "-c", f"import time; time.sleep({seconds})"]

    plan = tmp_path / "diamond.yaml"
    plan.write_text(json.dumps({"name": "Diamond", "parallel_execution": {"tasks": [
        {"id": "start", "worker": "shell", "command": sleeper(0.2)},
        {"id": "slow", "worker": "shell", "command": sleeper(3), "depends_on": ["start"]},
        {"id": "quick", "worker": "shell", "command": sleeper(0.1), "depends_on": ["start"]},
        {"id": "broken", "worker": "shell", "command": ["python", "-c", "raise SystemExit(3)"], "depends_on": ["start"]},
        {"id": "finish", "worker": "shell", "command": sleeper(0.1), "depends_on": ["slow", "quick"]},
    ]}}))
    page.set_input_files("input[name=file]", str(plan))
    page.click("#import button[type=submit]")
    page.wait_for_selector("text=Imported Diamond")
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")
    page.evaluate("window.__sameDocument = true")
    page.click(".pane-views button[data-view=graph]")
    page.locator("svg.dag g.dag-node[data-task=slow].state-node-running").wait_for()  # coloured live
    page.locator("#run-header[data-state=failed]").wait_for()
    assert page.evaluate("window.__sameDocument") is True
    states = page.locator("svg.dag g.dag-node").evaluate_all("els => Object.fromEntries(els.map(e => [e.dataset.task, e.dataset.state]))")
    assert states == {"start": "succeeded", "slow": "succeeded", "quick": "succeeded", "broken": "failed", "finish": "succeeded"}

    page.reload()  # a finished run's page: its critical path by the tasks' real durations
    page.click(".pane-views button[data-view=timeline]")
    page.locator("#timeline .tl-row").first.wait_for()
    assert page.locator("#timeline").inner_text().count("critical path start → slow → finish") == 1
    critical = page.locator("#timeline .tl-row.critical").evaluate_all("els => els.map(e => e.dataset.task)")
    assert critical == ["start", "slow", "finish"]
    bars = page.locator("#timeline .tl-row .tl-run").evaluate_all(
        "els => Object.fromEntries(els.map(e => [e.closest('.tl-row').dataset.task, e.getBoundingClientRect()]))")
    # Bars are as long as the tasks ran (the table shows each duration to a tenth of a second).
    shown = {task: float(page.inner_text(f".task-row[data-task={task}] .elapsed").split()[0]) for task in ("slow", "quick")}
    ratio = bars["slow"]["width"] / bars["quick"]["width"]
    assert (shown["slow"] - 0.05) / (shown["quick"] + 0.05) <= ratio <= (shown["slow"] + 0.05) / (shown["quick"] - 0.05), (ratio, shown)
    assert bars["finish"]["x"] >= bars["slow"]["x"] + bars["slow"]["width"] - 2, "finish ran after slow"
    assert page.locator("svg.dag path.dag-critical").count() == 2  # start→slow, slow→finish


def test_a_tasks_diff_shows_side_by_side_with_syntax_colours_and_inline_on_request(page, stack, tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.com"], ["config", "user.name", "T"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "app.py").write_text("def greet():\n    return 'hello'\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "base"], cwd=repo, check=True)
    edit = "import pathlib; pathlib.Path('app.py').write_text(\"def greet(name):\\n    return 'hello ' + name\\n\")"
    plan = tmp_path / "edit.yaml"
    plan.write_text(json.dumps({"name": "Edit app", "workspace": {"repository": str(repo), "base": "main"},
                                "parallel_execution": {"tasks": [{"id": "edit", "worker": "shell", "command": ["python", "-c", edit]}]}}))
    page.set_input_files("input[name=file]", str(plan))
    page.click("#import button[type=submit]")
    page.wait_for_selector("text=Imported Edit app")
    page.click("#start-run")
    page.locator("#run-header[data-state=succeeded]").wait_for()
    page.locator("#task-detail[data-task=edit] details.task-change summary").click()  # in the task's detail
    page.locator("#task-detail .d2h-file-side-diff").first.wait_for()
    page.click("#run-tabs a[data-tab=changes]")  # and with every task's, one click away
    page.locator("#change-list button", has_text="show diff").click()
    page.locator("#changes .d2h-file-side-diff").first.wait_for()  # side by side by default
    keyword = page.locator("#changes .d2h-code-side-line .hljs-keyword", has_text="def").first
    expect(keyword).not_to_have_css("color", page.evaluate("getComputedStyle(document.body).color"))
    assert page.locator(".hljs-keyword .hljs-keyword").count() == 0, "highlighted once"
    page.select_option("#changes select.diff-format", "line-by-line")
    page.locator("#changes .d2h-file-diff .d2h-code-line").first.wait_for()
    assert "return 'hello ' + name" in page.locator("#changes .d2h-file-diff").inner_text()
