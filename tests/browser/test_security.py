"""A hostile link does nothing in an Operator's browser, the pages run under their
Content-Security-Policy without a violation, and the running installation keeps its data private."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from urllib.parse import quote

import pytest

from tests.browser.conftest import ROOT, csp_violations, log_in, start_plan

pytestmark = pytest.mark.browser


def manage_shell(stack, code: str) -> str:
    """Run Python in `manage.py shell` on the stack's installation; return what it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env["MAGICBOX_DATA_DIR"] = str(stack.data_dir)
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "shell", "-v0", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_hostile_diff_link_runs_no_script_in_an_operators_browser(browser, page, stack, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.com"], ["config", "user.name", "T"]):
        subprocess.run(["git", *args], cwd=repo, check=True, timeout=60)
    (repo / "app.py").write_text("print('old')\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, timeout=60)
    subprocess.run(["git", "commit", "-q", "-m", "base"], cwd=repo, check=True, timeout=60)
    start_plan(page, stack.url, tmp_path, {"name": "XSS target", "workspace": {"repository": str(repo), "base": "main"},
                                           "parallel_execution": {"tasks": [{"id": "edit", "worker": "shell", "command": [
                                               "python", "-c", "open('app.py', 'w').write(\"print('new')\\n\")"]}]}})
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    run_path = page.url.removeprefix(stack.url)
    task_run = page.locator(".task-row[data-task=edit]").get_attribute("id").removeprefix("task-")
    plan_id = page.locator("#run-header h1 a").get_attribute("href").strip("/").split("/")[-1]
    runs_before = manage_shell(stack, "from orchestration.models import Run; print(Run.objects.count())")

    manage_shell(stack, "from django.contrib.auth.models import Group, User; from orchestration.roles import ensure_groups; "
                        "ensure_groups(); u = User.objects.create_user('olga', password='olga-password-123'); "
                        "u.groups.add(Group.objects.get(name='Operators'))")
    operator = browser.new_context()
    violations = csp_violations(operator)
    tab = operator.new_page()
    log_in(tab, stack.url, "olga", "olga-password-123")
    # The payload would start a run as whoever opens the link, and mark the page.
    payload = ("<script>window.__pwned = 1; fetch('/plans/%s/start/', {method: 'POST', headers: {'X-CSRFToken': "
               "document.cookie.match(/csrftoken=([^;]+)/)[1]}})</script><img src=x onerror=\"window.__pwned = 2\">" % plan_id)
    response = tab.goto(f"{stack.url}{run_path}tasks/{task_run}/diff/?file={quote(payload)}")
    assert response.status == 400 and "script-src 'self'" in response.headers["content-security-policy"]
    assert "changed no file named <script>window.__pwned = 1" in tab.inner_text("body"), "shown as text"
    assert tab.evaluate("window.__pwned") is None
    assert tab.locator("script, img").count() == 0

    # Markup that got in some other way would still not run: the policy refuses inline code.
    tab.goto(f"{stack.url}/runs/")
    with tab.expect_console_message(lambda message: "CSP violation: script-src" in message.text):
        tab.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=\"window.__pwned = 3\">')")
    assert tab.evaluate("window.__pwned") is None
    assert violations and all("script-src" in v for v in violations), violations
    operator.close()
    assert manage_shell(stack, "from orchestration.models import Run; print(Run.objects.count())") == runs_before


def test_the_run_page_live_and_the_plan_editor_raise_no_policy_violation(page, stack, tmp_path):
    # The `page` fixture fails the test on any violation; here the pages' scripts are made to work.
    page.click("#new-plan")  # the editor: htmx validation as you type, the DAG drawn beside it
    page.fill("input[name=name]", "Policy check")
    page.fill("input[name=tasks-0-id]", "hello")
    page.fill("[name=tasks-0-command]", "python -c \"print('hello under a policy')\"")
    page.locator("svg.dag g.dag-node[data-task=hello]").wait_for()
    page.click("#save-plan")
    page.wait_for_selector("text=Saved revision 1 of Policy check")
    page.locator("svg.dag g.dag-node[data-task=hello]").wait_for()  # the plan page's DAG
    page.click("#start-run")
    page.wait_for_selector("body[data-socket=open]")  # the websocket under connect-src 'self'
    page.locator("#run-header[data-state=succeeded]").wait_for(timeout=60_000)
    page.locator("pre.log", has_text="hello under a policy").wait_for()


def test_the_running_installation_keeps_its_data_directory_private(stack):
    data = stack.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("magicbox.sqlite3", "magicbox.sqlite3-wal", "magicbox.sqlite3-shm", "redis.sock", "admin-password.txt",
                 "secret-key", "serve.json", "redis.log"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
