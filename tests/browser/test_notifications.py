"""A viewer asks to be notified: the browser asks for permission, then notifies when the run waits
for a person and when it ends, with the tab in the background."""
from __future__ import annotations

import pytest

from tests.browser.conftest import start_plan
from tests.conftest import wait_until

pytestmark = pytest.mark.browser

# Records every notification the page shows (Chromium headless shows none of its own).
# Like a browser, it keeps the permission given and the notifications shown across page loads.
RECORD = """window.Notification = class {
  constructor(title, options) { var notes = JSON.parse(sessionStorage.getItem('notes') || '[]');
    notes.push(title + ' | ' + (options && options.body)); sessionStorage.setItem('notes', JSON.stringify(notes)); }
  static get permission() { return sessionStorage.getItem('permission') || 'default'; }
  static requestPermission() { window.__asked = true; sessionStorage.setItem('permission', window.__answer);
    return Promise.resolve(window.__answer); } };"""
NOTES = "JSON.parse(sessionStorage.getItem('notes') || '[]')"


@pytest.mark.parametrize("answer", ["granted", "denied"])
def test_the_permission_flow_then_a_notification_when_the_run_needs_someone_and_when_it_ends(page, stack, tmp_path, answer):
    page.context.add_init_script(RECORD + f"window.__answer = '{answer}';")
    start_plan(page, stack.url, tmp_path, {"name": f"Notify {answer}", "parallel_execution": {"tasks": [
        {"id": "build", "worker": "shell", "command": ["sleep", "2"], "gate": {"approve": True}},
        {"id": "ship", "worker": "shell", "command": ["true"], "depends_on": ["build"]}]}})
    page.wait_for_selector("body[data-socket=open]")
    page.click("#notify-me")
    if answer == "denied":
        page.locator("#notify-status", has_text="Notifications are blocked for this site").wait_for()
        assert page.evaluate("window.__asked") is True and page.get_attribute("#notify-me", "aria-pressed") == "false"
        return
    page.locator("#notify-me[aria-pressed=true]").wait_for()
    page.evaluate("Object.defineProperty(document, 'visibilityState', {value: 'hidden'}); document.dispatchEvent(new Event('visibilitychange'))")
    notes = wait_until(lambda: page.evaluate(NOTES), 30, "a notification that the run needs someone")
    assert notes[0].startswith("Run #") and "needs you | build waits for a decision" in notes[0]
    page.click(".task-row[data-task=build]")
    page.click("#gate-approve")
    wait_until(lambda: any("succeeded" in n for n in page.evaluate(NOTES)), 30, "a notification that the run ended")
