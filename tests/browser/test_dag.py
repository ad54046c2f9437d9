"""A plan's DAG: drawn simplified when large, fitting its box; on a run page its task nodes select
a task, and its critical path follows the run's."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import import_plan, start_plan
from tests.large_plans import layered_plan

pytestmark = pytest.mark.browser

DRAWN = 20_000  # ms a 2,000-task DAG may take on a busy machine (bench/dag_draw.py measures the real time)

# Every text of a node that reaches outside the node's box: [task or group, text].
TEXTS_OUTSIDE_THEIR_NODES = """() => [...document.querySelectorAll("svg.dag g.dag-node")].flatMap((node) => {
  const box = node.querySelector(".dag-box").getBoundingClientRect();
  return [...node.querySelectorAll("text")].filter((t) => {
    const r = t.getBoundingClientRect();
    return r.width && (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5);
  }).map((t) => [node.dataset.task || node.dataset.group, t.textContent]);
})"""

# How far the drawing reaches past its box, and the page past the window, sideways (px).
SIDEWAYS = """() => {
  const wrap = document.querySelector(".dag-wrap"), svg = wrap.querySelector("svg.dag");
  return [svg.getBoundingClientRect().right - wrap.getBoundingClientRect().right, wrap.scrollWidth - wrap.clientWidth,
          document.documentElement.scrollWidth - document.documentElement.clientWidth];
}"""


def group_labels(page) -> list[str]:
    return page.locator("svg.dag g.dag-group").evaluate_all("els => els.map(e => e.dataset.group)")


def test_a_2000_task_plan_is_drawn_as_its_phases_and_a_phase_opens_to_its_layers_and_tasks(page, stack, tmp_path):
    import_plan(page, stack.url, tmp_path, layered_plan(2000, phases=8, name="Two thousand in phases"))
    groups = page.locator("svg.dag g.dag-group")
    groups.first.wait_for(timeout=DRAWN)
    expect(page.locator(".dag-wrap .dag-caption")).to_contain_text("Simplified: 2,000 tasks drawn as 8 phases")
    assert group_labels(page) == [f"phase_{n}" for n in range(1, 9)]
    assert page.locator("svg.dag g.dag-node[data-task]").count() == 0
    expect(groups.first.locator("text.dag-worker")).to_have_text("250 tasks")
    assert page.locator("svg.dag path.dag-group-edge").count() == 7  # phase_1 → phase_2 → … → phase_8
    assert page.evaluate(TEXTS_OUTSIDE_THEIR_NODES) == []
    right, scrolled, page_scrolled = page.evaluate(SIDEWAYS)
    assert right <= 1 and scrolled <= 0 and page_scrolled <= 0

    # A phase of 250 tasks is still too many: it opens to its 10 layers, and a layer to its tasks.
    page.click("svg.dag g.dag-group[data-group=phase_3]")
    expect(page.locator(".dag-caption strong")).to_have_text("phase_3 · 250 tasks")
    assert group_labels(page) == [f"layer {n}" for n in range(21, 31)]
    page.focus("svg.dag g.dag-group[data-group='layer 21']")
    page.keyboard.press("Enter")  # by the keyboard too
    expect(page.locator(".dag-caption strong")).to_have_text("layer 21 · 25 tasks")
    tasks = page.locator("svg.dag g.dag-node[data-task]")
    expect(tasks).to_have_count(25)
    assert sorted(tasks.evaluate_all("els => els.map(e => e.dataset.task)")) == [f"task_{i:04d}" for i in range(500, 525)]
    # On a plan page a task node is no button.
    assert tasks.first.get_attribute("tabindex") is None

    page.locator(".dag-caption").get_by_role("button", name="phase_3").click()  # one step back
    expect(groups).to_have_count(10)
    page.locator(".dag-caption").get_by_role("button", name="All tasks").click()
    expect(groups).to_have_count(8)


def test_a_2000_task_plan_without_phases_is_drawn_in_bands_of_layers_that_fit_a_phone(page, stack, tmp_path):
    page.set_viewport_size({"width": 390, "height": 844})
    import_plan(page, stack.url, tmp_path, layered_plan(2000, name="Two thousand in layers"))
    page.locator("svg.dag g.dag-group").first.wait_for(timeout=DRAWN)
    expect(page.locator(".dag-wrap .dag-caption")).to_contain_text("Simplified: 2,000 tasks drawn as 16 bands of layers")
    labels = group_labels(page)
    assert labels[:2] == ["layers 1–5", "layers 6–10"] and len(labels) == 16
    expect(page.locator("svg.dag g.dag-group").first.locator("text.dag-worker")).to_have_text("125 tasks")
    assert page.evaluate(TEXTS_OUTSIDE_THEIR_NODES) == []
    right, scrolled, page_scrolled = page.evaluate(SIDEWAYS)
    assert right <= 1 and scrolled <= 0 and page_scrolled <= 0, "no sideways scrolling on a phone"

    # A band's 125 tasks, too wide for a phone, are scaled down to its width, not cut.
    page.click("svg.dag g.dag-group[data-group='layers 1–5']")
    expect(page.locator("svg.dag g.dag-node[data-task]")).to_have_count(125)
    view_box_width = page.evaluate("() => document.querySelector('svg.dag').viewBox.baseVal.width")
    shown = page.evaluate("() => document.querySelector('svg.dag').getBoundingClientRect().width")
    assert shown < view_box_width
    right, scrolled, page_scrolled = page.evaluate(SIDEWAYS)
    assert right <= 1 and scrolled <= 0 and page_scrolled <= 0


def test_a_run_pages_task_node_is_clicked_or_entered_to_select_its_task(page, stack, tmp_path):
    long_id = "prepare-the-inputs-for-a-really-rather-long-step"
    start_plan(page, stack.url, tmp_path, {"name": "Selectable", "parallel_execution": {"tasks": [
        {"id": long_id, "worker": "shell", "command": ["python", "-c", "print('ready')"]},
        {"id": "then", "worker": "shell", "command": ["python", "-c", "print('done')"], "depends_on": [long_id]}]}})
    page.click(".pane-views button[data-view=graph]")
    then = page.locator("svg.dag g.dag-node[data-task=then]")
    then.wait_for()
    page.evaluate("""() => { window.picked = [];
      document.addEventListener("magicbox:select-task", (e) => window.picked.push(e.detail.task)); }""")

    then.click()
    page.wait_for_function("(n) => window.picked.length === n", arg=1)
    page.focus(f"svg.dag g.dag-node[data-task='{long_id}']")
    page.keyboard.press("Enter")
    page.wait_for_function("(n) => window.picked.length === n", arg=2)
    assert page.evaluate("() => window.picked") == ["then", long_id]

    # The long id is cut to its node, with the whole of it in the node's title.
    first = page.locator(f"svg.dag g.dag-node[data-task='{long_id}']")
    assert first.locator("text.dag-id").text_content().endswith("…")
    assert first.locator("title").text_content().startswith(long_id)
    assert page.evaluate(TEXTS_OUTSIDE_THEIR_NODES) == []

    # The task shown (the last one picked) is marked, with an outline unlike the critical path's dashes.
    page.locator(f"#task-detail[data-task='{long_id}']").wait_for()
    page.click(".pane-views button[data-view=list]")
    page.click(".task-row[data-task=then]")
    page.locator("#task-detail[data-task=then]").wait_for()
    page.click(".pane-views button[data-view=graph]")
    selected = page.locator("svg.dag g.dag-node.dag-selected")
    expect(selected).to_have_count(1)
    expect(selected).to_have_attribute("data-task", "then")
    expect(selected).to_have_attribute("aria-current", "true")
    halo = selected.locator(".dag-halo")
    expect(halo).to_have_css("stroke-dasharray", "none")
    assert halo.evaluate("e => getComputedStyle(e).stroke") not in ("none", "")
    critical_box = page.locator("svg.dag g.dag-node.dag-critical-node .dag-box").first
    expect(critical_box).not_to_have_css("stroke-dasharray", "none")
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    expect(selected).to_have_count(1)  # kept while the states change
    expect(then).to_have_attribute("data-state", "succeeded")

    # A page that shows only some task rows: a task without one keeps its state.
    page.evaluate("""() => { document.querySelector(".task-row[data-task=then]").remove();
      document.dispatchEvent(new Event("htmx:wsAfterMessage")); }""")
    expect(then).to_have_attribute("data-state", "succeeded")
    expect(then.locator("text.dag-worker")).to_have_text("shell · succeeded")


def test_a_run_pages_dag_follows_the_runs_critical_path_as_it_changes(page, stack, tmp_path):
    def gated(gate) -> list[str]:
        return ["python", "-c", f"import pathlib, time\nwhile not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)"]

    first, long = tmp_path / "first", tmp_path / "long"
    # By task count the longest chain is a → c → d; by time it becomes a → b once b outlasts c and d.
    start_plan(page, stack.url, tmp_path, {"name": "Shifting", "parallel_execution": {"tasks": [
        {"id": "a", "worker": "shell", "command": gated(first)},
        {"id": "b", "worker": "shell", "command": gated(long), "depends_on": ["a"]},
        {"id": "c", "worker": "shell", "command": ["python", "-c", "print(3)"], "depends_on": ["a"]},
        {"id": "d", "worker": "shell", "command": ["python", "-c", "print(4)"], "depends_on": ["c"]}]}})
    page.click(".pane-views button[data-view=graph]")
    page.locator("svg.dag g.dag-node[data-task=d]").wait_for()
    page.wait_for_selector("body[data-socket=open]")
    page.evaluate("window.sameDocument = true")
    outlined = "() => [...document.querySelectorAll('svg.dag g.dag-critical-node')].map(e => e.dataset.task).sort().join(' ')"
    assert "b" not in page.evaluate(outlined).split()  # a → c → d by count, or a alone while it runs
    first.touch()
    page.locator(".task-row[data-task=d][data-state=succeeded]").wait_for(state="attached")
    long.touch()
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    page.wait_for_function("(expected) => [...document.querySelectorAll('svg.dag g.dag-critical-node')]"
                           ".map(e => e.dataset.task).sort().join(' ') === expected", arg="a b")
    assert page.locator("#timeline").get_attribute("data-critical") == "a b"
    dashed = page.locator("svg.dag path.dag-edge.dag-critical")
    expect(dashed).to_have_count(1)  # a → b
    assert page.evaluate("window.sameDocument") is True, "updated without a reload"
