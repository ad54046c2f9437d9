"""What a page owes every reader: state badges legible to WCAG AA, computed by the browser from
the stylesheet the pages use."""
from __future__ import annotations

import pytest

from tests.browser.conftest import start_plan

pytestmark = pytest.mark.browser

STATES = ["queued", "pending", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped",
          "passed", "unverified"]

CONTRAST = """(states) => {
  const luminance = (rgb) => {
    const [r, g, b] = rgb.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((c) => {
      c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const out = {};
  for (const state of states) {
    const badge = document.createElement("span");
    badge.className = `state state-${state}`;
    badge.textContent = state;
    document.body.appendChild(badge);
    const style = getComputedStyle(badge);
    const [a, b] = [luminance(style.color), luminance(style.backgroundColor)];
    out[state] = { ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), background: style.backgroundColor };
    badge.remove();
  }
  return out;
}"""


def test_every_state_badge_has_its_own_colour_and_aa_contrast(page, stack):
    page.goto(f"{stack.url}/runs/")
    found = page.evaluate(CONTRAST, STATES)
    low = {state: round(v["ratio"], 2) for state, v in found.items() if v["ratio"] < 4.5}
    assert not low, f"badges below WCAG AA (4.5:1): {low}"
    task_states = ["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped"]
    colours = [found[state]["background"] for state in task_states]
    assert len(set(colours)) == len(colours), dict(zip(task_states, colours))


def test_state_changes_are_announced_to_screen_readers(page, stack, tmp_path):
    gate = tmp_path / "gate"
    start_plan(page, stack.url, tmp_path, {"name": "Announced", "parallel_execution": {"tasks": [
        {"id": "waiter", "worker": "shell", "command": ["python", "-c",
         f"import pathlib, time\nwhile not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)"]}]}})
    page.locator(".task-row[data-task=waiter][data-state=running]").wait_for()
    page.wait_for_selector("body[data-synced=true]", state="attached")
    gate.touch()
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    announcer = page.locator("#announcer[role=status][aria-live=polite]")
    page.wait_for_function("() => document.getElementById('announcer').textContent.includes('run: succeeded')")
    assert "task waiter: succeeded" in announcer.text_content()


def test_the_run_page_runs_list_and_plans_fit_a_phone_without_sideways_scrolling(browser, stack, tmp_path):
    from tests.browser.conftest import log_in

    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    log_in(page, stack.url, "admin", stack.password)
    start_plan(page, stack.url, tmp_path, {"name": "On a phone", "parallel_execution": {"tasks": [
        {"id": "a-task-with-a-rather-long-name", "worker": "shell", "command": ["python", "-c", "print('x' * 300)"]},
        {"id": "then", "worker": "shell", "command": ["python", "-c", "print('done')"],
         "depends_on": ["a-task-with-a-rather-long-name"]}]}})
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    pane, detail = (page.locator(where).bounding_box() for where in (".task-pane", "#task-detail"))
    assert detail["y"] >= pane["y"] + pane["height"] - 1, "on a phone the task's detail comes below the tasks"
    for where in (page.url, f"{stack.url}/runs/", f"{stack.url}/plans/"):
        page.goto(where)
        # Elements past the right edge, except inside boxes that scroll by themselves.
        wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                           && !e.closest('pre, .dag-wrap, table.grid'))
            .slice(0, 5).map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0 and not wide, f"{where}: {overflow}px of sideways scroll; too wide: {wide}"
    context.close()
