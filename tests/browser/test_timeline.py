"""A running run's timeline grows with the clock and has a time axis, between pushes too."""
from __future__ import annotations

import pytest

from orchestration.review.timeline import ticks
from tests.browser.conftest import start_plan

pytestmark = pytest.mark.browser


def test_the_axis_ticks_are_round_steps_that_fit_the_span():
    assert ticks(9.5) == [(0.0, 0), (21.053, 2), (42.105, 4), (63.158, 6), (84.211, 8)]
    assert [seconds for _, seconds in ticks(3600)][:3] == [0, 600, 1200]
    assert all(len(ticks(span)) <= 9 for span in (0.5, 7, 61, 1000, 90_000))


def test_a_running_tasks_bar_and_the_span_grow_with_the_clock(page, stack, tmp_path):
    gate = tmp_path / "gate"
    start_plan(page, stack.url, tmp_path, {"name": "Clock", "parallel_execution": {"tasks": [
        {"id": "quick", "worker": "shell", "command": ["python", "-c", "print('done')"]},
        {"id": "long", "worker": "shell", "command": ["python", "-c",
         f"import pathlib, time\nwhile not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)"], "depends_on": ["quick"]}]}})
    page.click(".pane-views button[data-view=timeline]")
    page.locator("#timeline .tl-row[data-task=long] .tl-run").wait_for()
    first = page.locator("#timeline .tl-span").text_content()
    width = page.evaluate("parseFloat(document.querySelector('#timeline .tl-row[data-task=quick] .tl-run').style.width)")
    # With no push in between (nothing changes while `long` waits), the page's own clock moves
    # the span on and shrinks the finished task's share of it.
    page.wait_for_function("(first) => document.querySelector('#timeline .tl-span').textContent !== first", arg=first, timeout=30_000)
    page.wait_for_function("(width) => parseFloat(document.querySelector('#timeline .tl-row[data-task=quick] .tl-run').style.width) < width",
                           arg=width, timeout=30_000)
    assert page.locator("#timeline .tl-axis .tl-tick").count() >= 2
    gate.touch()
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
