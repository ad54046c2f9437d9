"""An Operator decides gates in the browser: the waiting run shows the gate live, Approve lets
what waits start, Reject skips it naming the gate, and History keeps the decision."""
from __future__ import annotations

import pytest

from tests.browser.conftest import start_plan

pytestmark = pytest.mark.browser


def gated(name: str) -> dict:
    return {"name": name, "parallel_execution": {"tasks": [
        {"id": "build", "worker": "shell", "command": ["python", "-c", "print('built')"],
         "gate": {"approve": True, "message": "Is the build good?"}},
        {"id": "deploy", "worker": "shell", "command": ["python", "-c", "print('deployed')"], "depends_on": ["build"]},
        # Ends while the comment is typed: the live update it brings must not wipe the comment.
        {"id": "slow", "worker": "shell", "command": ["sleep", "2"]}]}}


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_an_operator_approves_or_rejects_a_gate_on_the_live_run_page(page, stack, tmp_path, decision):
    start_plan(page, stack.url, tmp_path, gated(f"Gate to {decision}"))
    page.wait_for_selector("body[data-socket=open]")
    page.locator(".task-row[data-task=build][data-state=waiting]").wait_for()
    page.locator(".gate-waiting", has_text="Is the build good?").wait_for()  # the header says so, live
    page.click(".task-row[data-task=build]")
    assert "Who can decide: admin." in page.inner_text("#gate-approvers")
    done = {"approve": "approved", "reject": "rejected"}[decision]
    page.fill("#gate-comment", f"{done} in the browser")
    page.locator(".task-row[data-task=slow][data-state=succeeded]").wait_for()
    page.locator(".task-row[data-task=build]").click()  # its detail, re-rendered live
    assert page.input_value("#gate-comment") == f"{done} in the browser", "a live update wiped the typed comment"
    page.click(f"#gate-{decision}")
    if decision == "approve":
        page.locator("#run-header[data-state=succeeded]").wait_for()
        page.locator(".task-row[data-task=deploy][data-state=succeeded]").wait_for()
    else:
        page.locator("#run-header[data-state=failed]").wait_for()
        page.click(".task-row[data-task=deploy]")
        page.locator("#task-detail[data-task=deploy] .reason", has_text="the gate after 'build' was rejected").wait_for()
    page.click("#run-tabs a[data-tab=history]")
    assert f"{done} a gate" in page.inner_text("#audit") and f"build: {done} in the browser" in page.inner_text("#audit")
