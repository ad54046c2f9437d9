"""Each task of a workspace plan works on its own branch; its changes are captured as a diff."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.scheduler import start_run
from orchestration.models import TaskRun
from tests.conftest import make_plan, py, run_tasks, run_to_end, streamed_body
from tests.conftest import git

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

EDIT = """
import os, pathlib
lines = pathlib.Path('app.py').read_text().splitlines(keepends=True)
lines[1] = 'line 2 changed by edit\\n'
pathlib.Path('app.py').write_text(''.join(lines))
os.remove('old.txt')
os.rename('moved.txt', 'renamed.txt')
pathlib.Path('logo.png').write_bytes(bytes(range(256)) * 4)
pathlib.Path('notes').mkdir()
pathlib.Path('notes/new.md').write_text('untracked and new\\n')
"""


async def run_workspace_plan(repo, tasks):
    return await run_tasks(tasks, name="ws", workspace={"repository": str(repo), "base": "main"})


async def test_a_tasks_changes_are_committed_on_its_branch_with_deleted_renamed_binary_and_new_files(repo):
    run, tasks = await run_workspace_plan(repo, [{"id": "edit", "worker": "shell", "command": py(EDIT)}])
    assert tasks["edit"].state == "succeeded", tasks["edit"].error
    change = tasks["edit"].change
    assert change.branch == f"magicbox/run-{run.pk}/edit"
    assert git(repo, "rev-parse", change.branch).strip() == change.head_commit != change.start_commit
    files = {f["path"]: f for f in change.files}
    assert files["app.py"]["status"] == "modified" and (files["app.py"]["added"], files["app.py"]["deleted"]) == (1, 1)
    assert files["old.txt"]["status"] == "deleted" and files["old.txt"]["deleted"] == 1
    assert files["renamed.txt"]["status"] == "renamed" and files["renamed.txt"]["old_path"] == "moved.txt"
    assert files["logo.png"]["binary"] and files["logo.png"]["added"] is None
    assert files["notes/new.md"]["status"] == "added"
    assert "-line 2\n+line 2 changed by edit" in change.file_patch("app.py")
    assert "GIT binary patch" in change.file_patch("logo.png"), "a patch that git apply accepts"
    assert (change.lines_added, change.lines_deleted) == (2, 2)
    assert not (repo.parent / "data").exists() or not any((repo.parent / "data").rglob("work/app.py")), "worktree removed"
    assert "logo.png" not in git(repo, "status", "--porcelain"), "the user's checkout is untouched"


async def test_a_downstream_task_starts_from_its_upstream_tasks_merged_work(repo):
    tasks = [
        {"id": "top", "worker": "shell", "command": py("import pathlib; p = pathlib.Path('app.py'); p.write_text('TOP\\n' + p.read_text())")},
        {"id": "bottom", "worker": "shell", "command": py("import pathlib; p = pathlib.Path('app.py'); p.write_text(p.read_text() + 'BOTTOM\\n')")},
        {"id": "check", "worker": "shell", "depends_on": ["top", "bottom"],
         "command": py("import pathlib; t = pathlib.Path('app.py').read_text(); print(t.startswith('TOP') and t.endswith('BOTTOM\\n'))")},
    ]
    run, t = await run_workspace_plan(repo, tasks)
    assert t["check"].state == "succeeded" and t["check"].result.strip() == "True"
    assert t["check"].change.files == [], "the merged upstream work is not counted as the task's own change"
    assert t["top"].change.merge_conflicts == {} and t["bottom"].change.merge_conflicts == {}


async def test_two_unrelated_tasks_changing_the_same_lines_are_flagged(repo):
    write = "import pathlib, sys; p = pathlib.Path('app.py'); l = p.read_text().splitlines(True); l[4] = sys.argv[1] + '\\n'; p.write_text(''.join(l))"
    tasks = [{"id": "red", "worker": "shell", "command": ["python", "-c", write, "red"]},
             {"id": "blue", "worker": "shell", "command": ["python", "-c", write, "blue"]}]
    run, t = await run_workspace_plan(repo, tasks)
    flagged = t["red"].change.merge_conflicts or t["blue"].change.merge_conflicts
    assert flagged in ({"red": ["app.py"]}, {"blue": ["app.py"]})


async def test_the_run_page_lists_each_tasks_changes_and_loads_a_large_files_diff_on_demand(repo, async_client, user):
    big = "import pathlib; pathlib.Path('big.txt').write_text(''.join(f'row {i}\\n' for i in range(3000)))"
    run, t = await run_workspace_plan(repo, [{"id": "edit", "worker": "shell", "command": py(EDIT)},
                                             {"id": "bulk", "worker": "shell", "command": py(big)}])
    await sync_to_async(async_client.force_login)(user)
    page = (await async_client.get(f"/runs/{run.pk}/")).content.decode()
    assert 'id="change-list"' in page and f"magicbox/run-{run.pk}/edit" in page and "+3000" in page
    assert 'id="collisions"' not in page, "the two tasks changed different files"

    diff = (await async_client.get(f"/runs/{run.pk}/tasks/{t['edit'].pk}/diff/")).content.decode()
    assert 'data-path="renamed.txt"' in diff and "moved.txt → renamed.txt" in diff and "binary file" in diff
    assert 'data-diff="diff --git a/app.py b/app.py' in diff
    bulk = (await async_client.get(f"/runs/{run.pk}/tasks/{t['bulk'].pk}/diff/")).content.decode()
    assert "load the diff (3006 lines)" in bulk and "data-diff=" not in bulk
    one = (await async_client.get(f"/runs/{run.pk}/tasks/{t['bulk'].pk}/diff/?file=big.txt")).content.decode()
    assert one.startswith('<div class="diff-file" data-path="big.txt"') and "+row 2999" in one
    missing = await async_client.get(f"/runs/{run.pk}/tasks/{t['bulk'].pk}/diff/?file=nope.txt")
    assert missing.status_code == 400


async def test_a_run_exports_as_a_zip_of_outputs_diffs_and_summaries(repo, async_client, user):
    import io
    import zipfile

    run, t = await run_workspace_plan(repo, [{"id": "edit", "worker": "shell", "command": py(EDIT + "\nprint('edited | done')")},
                                             {"id": "fail", "worker": "shell", "command": py("raise SystemExit('no luck')")}])
    await sync_to_async(async_client.force_login)(user)
    response = await async_client.get(f"/runs/{run.pk}/export.zip")
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    body = await streamed_body(response)
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = set(zf.namelist())
        assert {"summary.json", "summary.md", "outputs/edit.txt", "outputs/fail.txt", "diffs/edit.patch"} <= names
        data = json.loads(zf.read("summary.json"))
        assert "edited | done" in zf.read("outputs/edit.txt").decode()
        patch = zf.read("diffs/edit.patch")
        assert b"rename from moved.txt" in patch
    fresh = repo.parent / "fresh"
    git(repo.parent, "clone", "-q", str(repo), str(fresh))
    (repo.parent / "edit.patch").write_bytes(patch)
    git(fresh, "apply", "--index", str(repo.parent / "edit.patch"))  # binary file included
    assert (fresh / "logo.png").read_bytes() == bytes(range(256)) * 4 and not (fresh / "old.txt").exists()
    assert data["run"]["state"] == "failed" and [task["id"] for task in data["tasks"]] == ["edit", "fail"]
    assert data["tasks"][0]["change"]["branch"] == f"magicbox/run-{run.pk}/edit"
    assert {f["path"]: f["status"] for f in data["tasks"][0]["change"]["files"]}["old.txt"] == "deleted"

    markdown = (await async_client.get(f"/runs/{run.pk}/summary.md")).content.decode()
    assert markdown.startswith(f"## Magic Box run #{run.pk}: ws (revision 1) — failed")
    assert "| `edit` | shell | succeeded | 1 |" in markdown and "5 files, +2 −2" in markdown
    assert "### Did not succeed" in markdown and "- `fail` (failed):" in markdown and "no luck" in markdown


async def test_a_repository_url_is_cloned_once_and_its_branches_made_in_the_clone(repo, settings):
    url = f"file://{repo}"
    plan = await sync_to_async(make_plan)(json.dumps({
        "name": "remote", "workspace": {"repository": url, "base": "main"}, "parallel_execution": {"tasks": [
            {"id": "touch", "worker": "shell", "command": py("open('touched.txt', 'w').write('hi')")}]}}))
    run = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    task_run = await TaskRun.objects.select_related("change").aget(run=run)
    assert task_run.state == "succeeded", task_run.error
    from orchestration.vcs.repository import clone_dir

    clone = clone_dir(url)
    assert clone.is_relative_to(settings.DATA_DIR) and (clone / "HEAD").exists()
    assert git(clone, "rev-parse", f"magicbox/run-{run.pk}/touch").strip() == task_run.change.head_commit
    assert "magicbox/" not in git(repo, "branch", "--list"), "the source repository is left alone"
    assert run.base_commit == git(repo, "rev-parse", "main").strip()


async def test_a_workspace_that_is_not_a_repository_fails_the_task_saying_so(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    run, t = await run_workspace_plan(plain, [{"id": "x", "worker": "shell", "command": ["true"]}])
    assert t["x"].state == "failed" and "not a git repository" in t["x"].error
