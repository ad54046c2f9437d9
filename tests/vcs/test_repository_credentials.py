"""Credentials written into a workspace repository URL reach git and nothing else: pages, the
editor, exports, audit entries, errors and task output show them masked."""
from __future__ import annotations

import base64
import functools
import http.server
import io
import zipfile

import pytest
import yaml
from asgiref.sync import async_to_sync, sync_to_async

from orchestration.engine.scheduler import start_run
from orchestration.models import Plan
from tests.conftest import streamed_body, git, local_http_server, make_plan, run_to_end, user_in
from tests.views.test_plan_editor import scrape_form

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TOKEN = "ghp_s3cretTok3n4242"


@pytest.fixture
def git_server(repo, tmp_path):
    """A bare copy of `repo` served over git's plain ("dumb") HTTP at /app.git, only to requests
    carrying ada:TOKEN; .authorised counts those."""
    served = tmp_path / "served"
    served.mkdir()
    git(served, "clone", "-q", "--bare", str(repo), "app.git")
    git(served / "app.git", "update-server-info")
    expected = "Basic " + base64.b64encode(f"ada:{TOKEN}".encode()).decode()
    authorised: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            authorised.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    with local_http_server(functools.partial(Handler, directory=str(served))) as server:
        server.url = f"http://ada:{TOKEN}@127.0.0.1:{server.server_port}"
        server.authorised = authorised
        yield server


def plan_text(repository: str) -> str:
    return yaml.safe_dump({"name": "private", "workspace": {"repository": repository, "base": "main"},
                           "parallel_execution": {"tasks": [{"id": "remote", "worker": "shell", "command": ["git", "remote", "-v"]}]}})


async def test_git_gets_the_credentials_and_the_task_sees_them_masked(git_server):
    plan = await sync_to_async(make_plan)(plan_text(f"{git_server.url}/app.git"))
    run = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    task = await sync_to_async(run.task_runs.get)()
    output = await sync_to_async(task.output_text)()
    assert run.state == "succeeded", output
    assert any("info/refs" in path for path in git_server.authorised)
    assert f"origin\thttp://***@127.0.0.1:{git_server.server_port}/app.git (fetch)" in output and TOKEN not in output
    again = await run_to_end((await sync_to_async(start_run)(plan)).pk)  # fetched with the real URL again
    assert again.state == "succeeded"


async def test_a_failed_clone_says_why_without_the_credentials(git_server):
    plan = await sync_to_async(make_plan)(plan_text(f"{git_server.url}/missing.git"))
    run = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    task = await sync_to_async(run.task_runs.get)()
    output = await sync_to_async(task.output_text)()
    assert task.state == "failed" and "git clone" in task.error and "***@127.0.0.1" in task.error + output
    assert TOKEN not in task.error + output + run.state_reason


async def test_pages_the_editor_exports_and_the_audit_trail_never_show_them(git_server, client, django_user_model):
    plan = await sync_to_async(make_plan)(plan_text(f"{git_server.url}/app.git"))
    run = await run_to_end((await sync_to_async(start_run)(plan)).pk)

    def look() -> None:
        viewer = user_in(django_user_model, "vic", "Viewers")
        author = user_in(django_user_model, "ada", "Authors", "Operators")
        client.force_login(viewer)
        pages = {url: client.get(url) for url in [f"/plans/{plan.pk}/", f"/plans/{plan.pk}/export.yaml", f"/plans/{plan.pk}/revisions/",
                                                  f"/runs/{run.pk}/", f"/runs/{run.pk}/summary.json", "/runs/"]}
        for url, response in pages.items():
            assert response.status_code == 200 and TOKEN not in response.content.decode(), url
        assert f"http://***@127.0.0.1:{git_server.server_port}/app.git" in pages[f"/plans/{plan.pk}/"].content.decode()
        assert "http://***@" in pages[f"/plans/{plan.pk}/export.yaml"].content.decode()
        archive = zipfile.ZipFile(io.BytesIO(async_to_sync(streamed_body)(client.get(f"/runs/{run.pk}/export.zip"))))
        assert all(TOKEN.encode() not in archive.read(name) for name in archive.namelist())

        client.force_login(author)
        page = client.get(f"/plans/{plan.pk}/edit/").content.decode()
        assert TOKEN not in page and "http://***@" in page
        data = scrape_form(page)
        data["action"] = "validate"
        assert TOKEN not in client.post(f"/plans/{plan.pk}/edit/", data).content.decode()
        data["action"] = "save"
        assert "Nothing changed" in client.post(f"/plans/{plan.pk}/edit/", data, follow=True).content.decode()
        data["description"] = "edited"
        client.post(f"/plans/{plan.pk}/edit/", data)
        stored = Plan.objects.get(pk=plan.pk).latest_revision
        assert stored.number == 2 and stored.spec.workspace.repository == f"{git_server.url}/app.git"
        assert TOKEN not in stored.source_text
        assert all(TOKEN not in event.detail for event in plan.audit_events.all())

    await sync_to_async(look)()
