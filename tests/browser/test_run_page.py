"""The task-focused run page: a task chosen from the list, the graph, a timeline bar or a deep
link shows its detail in place; log lines have links; viewers who came at different moments
end up seeing the same page."""
from __future__ import annotations

import copy

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import csp_violations, start_plan

pytestmark = pytest.mark.browser

PICK = {"name": "Pick a task", "parallel_execution": {"tasks": [
    {"id": "prepare", "worker": "shell", "command": ["python", "-c", "for i in range(1, 41): print(f'prepare line {i}')"]},
    {"id": "broken", "worker": "shell", "command": ["python", "-c", "import sys; print('about to fail'); sys.exit(3)"],
     "depends_on": ["prepare"]},
    {"id": "report", "worker": "shell", "command": ["python", "-c", "print('report line')"], "depends_on": ["prepare"]}]}}


def shown(page, task: str) -> None:
    """Wait until the detail shows `task`, with its log."""
    page.locator(f"#task-detail[data-task={task}] pre.log").wait_for()


def test_a_task_is_shown_from_the_list_the_graph_the_timeline_and_a_deep_link_without_a_reload(page, stack, tmp_path):
    start_plan(page, stack.url, tmp_path, PICK)
    page.wait_for_selector("body[data-socket=open]")
    page.locator("#run-header[data-state=failed]").wait_for()
    run_url = page.url.split("?", 1)[0]

    page.goto(run_url)  # a run that failed opens on its failed task, and says why
    page.wait_for_selector("body[data-socket=open]")
    shown(page, "broken")
    expect(page.locator("#task-error")).to_contain_text("exited with code 3")
    expect(page.locator("#task-detail pre.log")).to_have_class("log log-failed")
    page.evaluate("window.__sameDocument = true")

    page.click(".task-row[data-task=report]")  # from the list
    shown(page, "report")
    page.locator("#task-detail pre.log", has_text="report line").wait_for()
    assert page.url == f"{run_url}?task=report"
    expect(page.locator(".task-row[data-task=report]")).to_have_attribute("aria-current", "true")

    page.click(".pane-views button[data-view=timeline]")  # from a timeline bar
    page.click(".tl-row[data-task=prepare] .tl-track")
    shown(page, "prepare")

    page.click(".pane-views button[data-view=graph]")  # from the graph
    page.locator("svg.dag g.dag-node[data-task=broken]").click()
    shown(page, "broken")
    assert page.url == f"{run_url}?task=broken"

    page.go_back()  # the browser's Back goes to the task shown before
    shown(page, "prepare")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    # A line of the log: click it for its link; the link opens the task at that line.
    log = page.locator("#task-detail pre.log")
    log.locator("text=prepare line 7").wait_for()
    number = page.evaluate("""() => {
        const log = document.querySelector('#task-detail pre.log');
        return Number(log.dataset.firstLine) + log.textContent.split('\\n').indexOf('prepare line 7');
    }""")
    # Bring the line into view (the log follows its end) and find a point on it; measured again
    # until the point really is on that line (the page may still be settling).
    box = page.wait_for_function("""() => {
        const log = document.querySelector('#task-detail pre.log');
        const walker = document.createTreeWalker(log, NodeFilter.SHOW_TEXT);
        let node;
        while ((node = walker.nextNode())) {
            const at = node.nodeValue.indexOf('prepare line 7\\n');
            if (at < 0) continue;
            const range = document.createRange();
            range.setStart(node, at + 3); range.setEnd(node, at + 4);
            let r = range.getBoundingClientRect();
            log.scrollTop += r.top - log.getBoundingClientRect().top - 20;
            r = range.getBoundingClientRect();
            window.scrollBy(0, r.top - window.innerHeight / 2);
            r = range.getBoundingClientRect();
            const x = r.x + r.width / 2, y = r.y + r.height / 2, p = document.caretPositionFromPoint(x, y);
            const onIt = p && p.offsetNode === node && p.offset >= at && p.offset <= at + 14;
            return onIt ? {x, y} : null;
        }
        return null;
    }""").json_value()
    page.mouse.click(box["x"], box["y"])
    page.wait_for_url(f"{run_url}?task=prepare#L{number}")  # Playwright learns of history changes a moment later
    expect(page.locator("#line-note")).to_have_text(f"line {number} (linked)")

    other = page.context.new_page()
    other.goto(f"{run_url}?task=prepare#L{number}")
    shown(other, "prepare")
    expect(other.locator("#line-note")).to_have_text(f"line {number} (linked)")
    other.close()


TWO = {"name": "Watched twice", "parallel_execution": {"tasks": [
    {"id": "first", "worker": "shell", "command": ["python", "-c", "GO"]},
    {"id": "then", "worker": "shell", "command": ["python", "-c", "print('then ran')"], "depends_on": ["first"]},
    {"id": "quick_fail", "worker": "shell", "command": ["python", "-c", "raise SystemExit(2)"]},
    {"id": "side", "worker": "shell", "command": ["python", "-c", "print('side ran')"]}]}}

PAGE_STATE = """() => ({
    header: document.querySelector('#run-header').innerText,
    tabs: document.querySelector('#run-tabs').innerText,
    rows: [...document.querySelectorAll('.task-row')].map(r => [r.dataset.task, r.dataset.state, r.innerText]),
    critical: document.querySelector('#timeline').dataset.critical,
    bars: [...document.querySelectorAll('.tl-row[data-task]')].map(r => [r.dataset.task, r.dataset.state, r.classList.contains('critical')]),
    nodes: [...document.querySelectorAll('svg.dag g.dag-node')].map(n => [n.dataset.task, n.dataset.state, n.classList.contains('dag-critical-node')]),
    summary: document.querySelector('#task-detail .task-summary').innerText,
    log: document.querySelector('#task-detail pre.log').textContent,
    checks: document.querySelector('#verdicts').innerText,
})"""


def test_two_viewers_who_came_at_different_moments_see_the_same_page_at_the_end(page, stack, tmp_path, browser):
    go = tmp_path / "go"
    spec = copy.deepcopy(TWO)
    spec["parallel_execution"]["tasks"][0]["command"][2] = (
        f"import pathlib, time\nprint('first waits', flush=True)\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\nprint('first done')")
    start_plan(page, stack.url, tmp_path, spec)
    page.wait_for_selector("body[data-socket=open]")
    page.locator(".task-row[data-task=first][data-state=running]").wait_for()
    page.click(".task-row[data-task=first]")
    shown(page, "first")

    later = browser.new_context(viewport={"width": 1280, "height": 900})
    violations = csp_violations(later)
    later.add_cookies(page.context.cookies())
    second = later.new_page()
    second.goto(page.url)
    second.wait_for_selector("body[data-socket=open]")
    second.locator(".task-row[data-task=quick_fail][data-state=failed]").wait_for()
    shown(second, "first")  # the link names the task
    second.locator("#task-detail pre.log", has_text="first waits").wait_for()

    go.touch()
    for viewer in (page, second):
        viewer.locator("#run-header[data-state=failed]").wait_for()
        viewer.locator(".task-row[data-task=then][data-state=succeeded]").wait_for()
        viewer.locator("#task-detail pre.log", has_text="first done").wait_for()
        viewer.click(".pane-views button[data-view=graph]")
        viewer.locator("svg.dag g.dag-node[data-task=then][data-state=succeeded]").wait_for()
    # Pushes coalesce: wait until both have had the last one (their timelines end).
    for viewer in (page, second):
        viewer.wait_for_function("() => document.querySelector('#timeline').dataset.end !== ''")
    mine, theirs = page.evaluate(PAGE_STATE), second.evaluate(PAGE_STATE)
    assert mine == theirs
    assert mine["critical"] == "first then" and ["first", "succeeded", True] in mine["nodes"]
    later.close()
    assert violations == []
