"""The real claude and codex CLIs write files in their tasks' worktrees (fake model server):
their changes are captured, collisions flagged and the branches integrated."""
from __future__ import annotations


import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.integration import request_integration
from orchestration.models import Integration, Run
from tests.conftest import drain_engine, run_tasks
from tests.fakes.model_server import WriteFile
from tests.conftest import git

pytestmark = [pytest.mark.cli, pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def run_agents(repo, check=None):
    workspace = {"repository": str(repo), "base": "main", **({"check": check} if check else {})}
    return await run_tasks([
        {"id": "ui", "worker": "claude", "description": "Build the page"},
        {"id": "api", "worker": "codex", "description": "Build the API"},
    ], name="agents", workspace=workspace)


async def integrate(run: Run) -> Integration:
    integration = await sync_to_async(request_integration)(run)
    await drain_engine()
    return await Integration.objects.aget(pk=integration.pk)


async def test_two_agents_changing_different_files_integrate_cleanly_and_pass_the_check(model, repo):
    model.when("Build the page", WriteFile("web/page.html", "<h1>Login</h1>\n"))
    model.when("Build the API", WriteFile("api/login.py", "def login():\n    return 'token'\n"))
    run, t = await run_agents(repo, check=["python", "-c", "import pathlib; assert pathlib.Path('web/page.html').exists() and pathlib.Path('api/login.py').exists(); print('both present')"])
    assert run.state == "succeeded", {k: v.error for k, v in t.items()}
    assert [f["path"] for f in t["ui"].change.files] == ["web/page.html"]
    assert [f["path"] for f in t["api"].change.files] == ["api/login.py"]

    integration = await integrate(run)
    assert integration.state == "succeeded", integration.state_reason
    assert integration.merged == ["ui", "api"] and integration.check_exit_code == 0 and "both present" in integration.check_output
    tree = git(repo, "ls-tree", "-r", "--name-only", integration.branch)
    assert "web/page.html" in tree and "api/login.py" in tree


async def test_two_agents_writing_the_same_file_are_flagged_and_integration_stops_at_the_conflict(model, repo, client, user):
    # A new file both write (claude's Write tool refuses to overwrite a file it has not read).
    model.when("Build the page", WriteFile("config.py", "MODE = 'the page version'\n"))
    model.when("Build the API", WriteFile("config.py", "MODE = 'the API version'\n"))
    run, t = await run_agents(repo)
    assert run.state == "succeeded"
    conflicts = {**t["ui"].change.merge_conflicts, **t["api"].change.merge_conflicts}
    assert list(conflicts.values()) == [["config.py"]]

    await sync_to_async(client.force_login)(user)
    page = (await sync_to_async(client.get)(f"/runs/{run.pk}/")).content.decode()
    assert 'data-collision="ui api"' in page and "do not merge" in page and "<code>config.py</code> (conflict)" in page

    integration = await integrate(run)
    assert integration.state == "failed" and integration.merged == ["ui"]
    assert integration.state_reason.startswith("stopped at api: merging its branch conflicts in config.py (both added, 1 conflicting hunk")
    [conflicted] = integration.conflict["files"]
    assert conflicted["path"] == "config.py" and "MODE = 'the page version'" in conflicted["hunks"][0]
    assert "MODE = 'the API version'" in conflicted["hunks"][0]
