"""A watching page heals by itself: when the web server or Redis dies and `serve` restarts it,
the page reconnects, catches up, and goes on showing the run live, without a reload."""
from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import children_of, wait_until

pytestmark = pytest.mark.browser


def kill_child(serve_pid: int, needle: str) -> None:
    """SIGKILL serve's child whose command line has `needle`, and wait for serve to restart it."""
    victim = wait_until(lambda: next((p for p, cmd in children_of(serve_pid).items() if needle in cmd), None), 30,
                        f"serve's {needle}")
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: any(needle in cmd and p != victim for p, cmd in children_of(serve_pid).items()), 60,
               f"serve to restart its {needle}")


def test_a_watching_page_reconnects_after_the_web_server_and_redis_die_and_keeps_showing_the_run(page, stack, tmp_path):
    gates = [tmp_path / "one", tmp_path / "two"]
    plan = tmp_path / "heal.yaml"
    plan.write_text(
        "name: Heal me\n"
        "parallel_execution:\n"
        "  tasks:\n"
        "    - id: stepper\n"
        "      worker: shell\n"
        "      command:\n"
        "        - python\n"
        "        - -c\n"
        "        - |\n"
        "          import pathlib, time\n"
        "          print('step one', flush=True)\n"
        f"          while not pathlib.Path({str(gates[0])!r}).exists(): time.sleep(0.05)\n"
        "          print('step two', flush=True)\n"
        f"          while not pathlib.Path({str(gates[1])!r}).exists(): time.sleep(0.05)\n"
        "          print('all done', flush=True)\n"
    )
    page.set_input_files("input[name=file]", str(plan))
    page.click("#import button[type=submit]")
    page.wait_for_selector("text=Imported Heal me")
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")
    page.evaluate("window.__sameDocument = true")
    page.locator("pre.log", has_text="step one").wait_for()

    kill_child(stack.pid, "daphne")
    page.wait_for_selector("body[data-socket=closed]")
    page.wait_for_selector("body[data-socket=open]", timeout=60_000)
    gates[0].touch()
    page.locator("pre.log", has_text="step two").wait_for(timeout=60_000)

    kill_child(stack.pid, "redis-server")
    page.wait_for_selector("body[data-socket=closed]", timeout=60_000)
    page.wait_for_selector("body[data-socket=open]", timeout=60_000)
    gates[1].touch()
    page.locator("pre.log", has_text="all done").wait_for(timeout=60_000)
    page.locator(".task-row[data-task=stepper][data-state=succeeded]").wait_for(timeout=60_000)
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert page.locator("pre.log", has_text="step one").count() == 1
    assert page.inner_text("pre.log").count("step two") == 1, "nothing shown twice after reconnecting"
