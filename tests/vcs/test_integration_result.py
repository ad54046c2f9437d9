"""After Integrate: the integration branch's combined diff is kept and shown, the page says how
to fetch the branch, `workspace.push: true` pushes it to the remote, and Integrate is not
offered again once it succeeded."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.integration import request_integration
from orchestration.models import Integration
from tests.conftest import drain_engine, git, py, run_tasks
from tests.vcs.test_repository_credentials import TOKEN, git_server  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TASKS = [
    {"id": "top", "worker": "shell", "command": py("import pathlib; p = pathlib.Path('app.py'); p.write_text('TOP\\n' + p.read_text())")},
    {"id": "notes", "worker": "shell", "command": py("import pathlib; pathlib.Path('NOTES.md').write_text('written by notes\\n')")},
]


async def integrated(workspace: dict) -> tuple:
    run, t = await run_tasks(TASKS, name="ws", workspace={"base": "main", **workspace})
    assert run.state == "succeeded", {k: v.error for k, v in t.items()}
    integration = await sync_to_async(request_integration)(run)
    await drain_engine()
    return run, await Integration.objects.aget(pk=integration.pk)


async def page(client, path: str) -> str:
    response = await sync_to_async(client.get)(path)
    assert response.status_code == 200
    return response.content.decode()


async def test_the_combined_diff_and_the_commands_are_shown_and_integrate_is_not_offered_again(repo, logged_in_client):
    run, integration = await integrated({"repository": str(repo)})
    assert integration.state == "succeeded", integration.state_reason
    assert integration.head_commit == git(repo, "rev-parse", integration.branch).strip()
    assert sorted(f["path"] for f in integration.files) == ["NOTES.md", "app.py"]
    assert "+TOP" in integration.file_patch("app.py") and "+written by notes" in integration.file_patch("NOTES.md")
    assert (integration.lines_added, integration.lines_deleted) == (2, 0)
    assert integration.push_state == ""

    detail = await page(logged_in_client, f"/runs/{run.pk}/")
    assert f"/runs/{run.pk}/integrations/{integration.pk}/diff/" in detail and "2 files changed against the base" in detail
    assert f"git -C {repo} switch {integration.branch}" in detail
    assert f"git fetch {repo} {integration.branch}:{integration.branch}" in detail
    assert 'id="integrated"' in detail and 'id="integrate"' not in detail, "Integrate is offered once, until it succeeds"
    with pytest.raises(ValueError, match="already integrated"):
        await sync_to_async(request_integration)(run)

    diff = await page(logged_in_client, f"/runs/{run.pk}/integrations/{integration.pk}/diff/")
    assert 'data-path="app.py"' in diff and 'data-path="NOTES.md"' in diff and integration.branch in diff
    one = await page(logged_in_client, f"/runs/{run.pk}/integrations/{integration.pk}/diff/?file=NOTES.md")
    assert 'data-path="NOTES.md"' in one and 'data-path="app.py"' not in one


async def test_a_failed_integration_still_offers_integrate(repo, logged_in_client):
    run, integration = await integrated({"repository": str(repo), "check": ["false"]})
    assert integration.state == "failed" and integration.files, "the merged branch's diff is kept for review"
    detail = await page(logged_in_client, f"/runs/{run.pk}/")
    assert 'id="integrate"' in detail and 'id="integrated"' not in detail


async def test_push_true_lands_the_branch_on_the_remote(repo, tmp_path, logged_in_client):
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    run, integration = await integrated({"repository": f"file://{remote}", "push": True})
    assert integration.state == "succeeded", integration.state_reason
    assert integration.push_state == "succeeded", integration.push_message
    assert git(remote, "rev-parse", integration.branch).strip() == integration.head_commit
    detail = await page(logged_in_client, f"/runs/{run.pk}/")
    assert f"git fetch file://{remote} {integration.branch}:{integration.branch}" in detail
    assert 'data-push="succeeded"' in detail


async def test_without_push_the_page_names_magic_boxs_clone_and_suggests_push(repo, tmp_path, logged_in_client):
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    run, integration = await integrated({"repository": f"file://{remote}"})
    assert integration.state == "succeeded" and integration.push_state == ""
    assert integration.branch not in git(remote, "branch", "--list")
    detail = await page(logged_in_client, f"/runs/{run.pk}/")
    assert "/repos/remote-" in detail and "push: true" in detail


async def test_a_refused_push_is_recorded_without_the_credentials(git_server, logged_in_client):  # noqa: F811
    run, integration = await integrated({"repository": f"{git_server.url}/app.git", "push": True})
    assert integration.state == "succeeded", integration.state_reason
    assert integration.push_state == "failed" and integration.push_message
    detail = await page(logged_in_client, f"/runs/{run.pk}/")
    assert TOKEN not in integration.push_message + detail
    assert 'data-push="failed"' in detail and "http://***@127.0.0.1" in detail

