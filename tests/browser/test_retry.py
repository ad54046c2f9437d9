"""A user retries a failed task: the page says what will run again, and only that runs."""
from __future__ import annotations

import pytest

from tests.browser.conftest import start_plan

pytestmark = pytest.mark.browser


def test_retry_shows_what_will_run_again_and_then_runs_only_the_task_and_what_waits_for_it(page, stack, tmp_path):
    fixed = tmp_path / "fixed"
    start_plan(page, stack.url, tmp_path, {"name": "Retry me", "parallel_execution": {"tasks": [
        {"id": "flaky", "worker": "shell", "command": [
            "python", "-c", f"import os, sys; print('flaky ran'); sys.exit(0 if os.path.exists({str(fixed)!r}) else 1)"]},
        {"id": "report", "worker": "shell", "command": ["python", "-c", "print('report ran')"], "depends_on": ["flaky"]},
        {"id": "sleeper", "worker": "shell", "command": ["sleep", "60"]},
        {"id": "after_sleep", "worker": "shell", "command": ["python", "-c", "print('woke')"], "depends_on": ["sleeper"]}]}})
    page.wait_for_selector("body[data-socket=open]")
    first_url = page.url
    page.locator(".task-row[data-task=flaky][data-state=failed]").wait_for()
    page.locator(".task-row[data-task=sleeper][data-state=running]").wait_for()
    page.click(".task-row[data-task=sleeper]")  # cancel the unrelated sleeper, from its detail
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#task-detail[data-task=sleeper] #cancel-task")
    page.locator("#run-header[data-state=failed]").wait_for()

    fixed.touch()
    page.click(".task-row[data-task=flaky]")  # its Retry appeared when the run ended: no reload
    page.locator("#task-detail[data-task=flaky] #retry-task").click()
    page.wait_for_selector("#rerun-confirm")
    assert page.locator("#rerun-tasks tbody tr").evaluate_all("rows => rows.map(r => r.dataset.task)") == ["flaky", "report"]
    assert "The other 2 tasks are kept as they ended" in page.inner_text("#rerun-confirm")
    page.click("#rerun-start")

    page.wait_for_selector("body[data-socket=open]")
    assert page.url != first_url
    page.locator("#run-header[data-state=cancelled], #run-header[data-state=failed], #run-header[data-state=succeeded]").wait_for()
    page.locator(".task-row[data-task=report][data-state=succeeded]").wait_for()
    assert page.locator(".task-row[data-task=flaky][data-state=succeeded]").count() == 1
    assert page.locator(".task-row[data-task=sleeper]").get_attribute("data-state") == "cancelled"
    page.click(".task-row[data-task=sleeper]")
    page.locator("#task-detail[data-task=sleeper] .reason", has_text="kept from run #").wait_for()
    assert page.locator(".task-row[data-task=after_sleep]").get_attribute("data-state") == "cancelled"
    page.click("#run-tabs a[data-tab=history]")
    assert "redoing flaky, report" in page.inner_text("#audit")
