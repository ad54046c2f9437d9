"""The runs list is live (a teammate's new run appears without a reload) and its filters live in the URL."""
from __future__ import annotations

import uuid

import pytest

from tests.browser.conftest import log_in, start_plan

pytestmark = pytest.mark.browser


def import_and_start(page, url: str, name: str, tmp_path) -> None:
    start_plan(page, url, tmp_path, {"name": name, "parallel_execution": {"tasks": [
        {"id": "quick", "worker": "shell", "command": ["python", "-c", "print(1)"]}]}})
    page.wait_for_url(f"{url}/runs/*/")


def test_a_teammates_run_appears_in_an_open_filtered_list_without_a_reload(page, stack, browser, tmp_path):
    tag = uuid.uuid4().hex[:8]
    page.goto(f"{stack.url}/runs/?q={tag}-wanted")
    page.wait_for_selector("body[data-socket=open]")
    page.evaluate("window.__sameDocument = true")
    assert page.locator("#runs tbody", has_text="No runs match these filters.").count() == 1
    assert page.input_value("#id_q") == f"{tag}-wanted", "the filter in the URL fills the form"

    teammate = browser.new_context().new_page()
    teammate.set_default_timeout(30_000)
    log_in(teammate, stack.url, "admin", stack.password)
    import_and_start(teammate, stack.url, f"{tag}-other", tmp_path)
    import_and_start(teammate, stack.url, f"{tag}-wanted", tmp_path)
    wanted_run = teammate.url.rstrip("/").rsplit("/", 1)[1]
    teammate.context.close()

    row = page.locator(f'#runs tr[data-run="{wanted_run}"]')
    row.wait_for()
    row.locator(".state-succeeded").wait_for()  # its state changes arrive too
    row.locator('.seg[data-state="succeeded"]').wait_for()
    assert page.locator("#runs tbody tr", has_text=f"{tag}-other").count() == 0, "the filter still applies"
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    page.goto(f"{stack.url}/runs/?q={tag}")
    assert page.locator("#runs tbody tr[data-run]").count() == 2
    page.select_option("#id_state", "succeeded")
    page.fill("#id_q", f"{tag}-other")
    page.click("#run-filters button[type=submit]")
    page.wait_for_url(f"**/runs/?*q={tag}-other*")
    assert "state=succeeded" in page.url
    assert page.locator("#runs tbody tr[data-run]").count() == 1
    assert page.locator("#runs tbody tr", has_text=f"{tag}-other").count() == 1
