"""End-to-end fixtures: the whole Magic Box stack as a user starts it, and Debian's Chromium."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls then.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@dataclass
class Stack:
    url: str
    password: str
    data_dir: Path
    log: Path
    pid: int  # of `manage.py serve`


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """`manage.py serve` (daphne, a worker process, the embedded Redis) on a fresh data dir."""
    data_dir = tmp_path_factory.mktemp("stack")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env["MAGICBOX_DATA_DIR"] = str(data_dir)
    # Tests hand files to their tasks through their tmp_path (the data directory stays hidden).
    env["MAGICBOX_SANDBOX_WRITABLE"] = str(tmp_path_factory.getbasetemp())
    log = data_dir / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port), "--workers", "1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    branches_before = _magicbox_branches()
    deadline = time.monotonic() + 60
    while True:  # wait for the server to answer (a condition, not a fixed sleep)
        try:
            urllib.request.urlopen(f"{url}/schema/plan.json", timeout=2)
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"manage.py serve did not come up:\n{log.read_text()}")
            time.sleep(0.1)
    try:
        yield Stack(url=url, password=(data_dir / "admin-password.txt").read_text().strip(), data_dir=data_dir, log=log,
                    pid=proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # The example plan works on this checkout: leave it with the branches it had.
        made = sorted(_magicbox_branches() - branches_before)
        if made:
            subprocess.run(["git", "branch", "-D", "-q", *made], cwd=ROOT, check=False, timeout=60)
            subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False, timeout=60)


def _magicbox_branches() -> set[str]:
    """The magicbox/* branches of this checkout (runs of the example plan make them)."""
    listed = subprocess.run(["git", "branch", "--list", "--format=%(refname:short)", "magicbox/*"], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=60)
    return set(listed.stdout.split())


@pytest.fixture(scope="module")
def browser():
    """Chromium through Playwright's sync API. Module scope: the sync API keeps an event loop
    running in this thread while it is open, which would break later tests' asyncio.run()."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"The browser tests need Debian's Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield browser
        browser.close()


# Reports every Content-Security-Policy violation of a page to its console (Playwright injects
# this itself, so the policy does not stop it).
REPORT_CSP_VIOLATIONS = """document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline code") + " at " + e.sourceFile + ":" + e.lineNumber);
});"""


def csp_violations(context) -> list[str]:
    """The Content-Security-Policy violations every page of `context` reports, as they happen."""
    found: list[str] = []
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    context.on("console", lambda message: found.append(message.text)
               if message.type == "error" and ("CSP violation" in message.text or "Content Security Policy" in message.text) else None)
    return found


def log_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/plans/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/plans/")


def import_plan(page, url: str, tmp_path, spec: dict) -> None:
    """Import plan `spec` (a dict) through the plans page; the page is then on the plan's page."""
    import json

    plan = tmp_path / f"{spec['name'].replace(' ', '-')}.json"
    plan.write_text(json.dumps(spec))
    page.goto(f"{url}/plans/")
    page.set_input_files("input[name=file]", str(plan))
    page.click("#import button[type=submit]")
    page.wait_for_selector(f"text=Imported {spec['name']}")


def start_plan(page, url: str, tmp_path, spec: dict) -> None:
    """Import plan `spec` (a dict) through the plans page and start a run of it; the page is then
    on the run page."""
    import_plan(page, url, tmp_path, spec)
    page.click("#start-run")


@pytest.fixture
def page(browser, stack):
    """A page logged in as the admin. Any Content-Security-Policy violation fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    violations = csp_violations(context)
    page = context.new_page()
    page.set_default_timeout(30_000)
    log_in(page, stack.url, "admin", stack.password)
    yield page
    context.close()
    assert violations == [], "the Content-Security-Policy refused something a page needs"
