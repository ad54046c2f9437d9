"""Tasks that misuse git in their worktree: their work is kept or they fail saying why, and
nothing they plant runs in Magic Box's own git commands or resets someone else's branch."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.plans.errors import PlanInvalid
from tests.conftest import make_plan, py
from tests.conftest import git
from tests.vcs.test_task_changes import run_workspace_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


async def test_work_committed_on_another_branch_or_a_detached_head_ends_on_the_tasks_branch(repo):
    # In the sandbox, refs are read-only (the branch switch and the commit on it fail) and a
    # detached commit lands in the attempt's own object store: the files are the work.
    commit = "git -c user.name=X -c user.email=x@x commit -q -m mine"
    run, t = await run_workspace_plan(repo, [
        {"id": "switcher", "worker": "shell", "command": sh(f"git switch -q -c elsewhere; echo a > a.txt; git add a.txt; {commit}; echo b > b.txt")},
        {"id": "detacher", "worker": "shell", "command": sh(f"git checkout -q --detach && echo c > c.txt && git add c.txt && {commit}")},
    ])
    for task, files in (("switcher", {"a.txt", "b.txt"}), ("detacher", {"c.txt"})):
        change = t[task].change
        assert t[task].state == "succeeded" and {f["path"] for f in change.files} == files
        assert git(repo, "rev-parse", change.branch).strip() == change.head_commit


async def test_a_sandboxed_task_can_neither_remove_its_worktrees_git_file_nor_move_another_branch(repo):
    main = git(repo, "rev-parse", "main").strip()
    run, t = await run_workspace_plan(repo, [{"id": "wrecker", "worker": "shell", "command": sh(
        "rm -f .git; git update-ref refs/heads/main HEAD~0 2>&1 | tail -1; git branch -f main HEAD 2>&1 | tail -1; "
        "echo work > kept.txt")}])
    assert t["wrecker"].state == "succeeded", t["wrecker"].error
    assert {f["path"] for f in t["wrecker"].change.files} == {"kept.txt"}
    assert git(repo, "rev-parse", "main").strip() == main


@pytest.mark.usefixtures("unsandboxed")  # inside the sandbox, the .git file cannot be removed
async def test_a_task_that_removes_its_worktrees_git_file_fails_and_its_work_is_kept(repo, data_dir):
    run, t = await run_workspace_plan(repo, [{"id": "wrecker", "worker": "shell", "command": sh("rm .git && echo work > kept.txt")}])
    assert t["wrecker"].state == "failed" and "is no longer a git worktree" in t["wrecker"].error
    assert (data_dir / "runs" / str(run.pk) / "wrecker" / "attempt-1" / "work" / "kept.txt").read_text() == "work\n"
    assert "kept.txt" not in git(repo, "status", "--porcelain")


async def test_a_command_planted_in_the_shared_git_config_is_not_run_by_magic_box(repo, tmp_path):
    planted = tmp_path / "PLANTED"
    run, t = await run_workspace_plan(repo, [
        {"id": "planter", "worker": "shell", "command": ["git", "config", "core.fsmonitor", f"touch {planted}; false"]},
    ])
    run, t = await run_workspace_plan(repo, [{"id": "after", "worker": "shell", "command": py("open('x.txt', 'w').write('x')")}])
    assert t["after"].state == "succeeded" and t["after"].change.files[0]["path"] == "x.txt"
    assert not planted.exists()


async def test_an_existing_branch_of_the_same_name_is_never_reset(repo):
    from orchestration.engine.scheduler import start_run
    from orchestration.models import TaskRun
    from tests.conftest import run_to_end

    plan = await sync_to_async(make_plan)(json.dumps({
        "name": "ws", "workspace": {"repository": str(repo), "base": "main"}, "parallel_execution": {"tasks": [
            {"id": "edit", "worker": "shell", "command": py("open('x.txt', 'w').write('x')")}]}}))
    run = await sync_to_async(start_run)(plan)
    (repo / "mine.txt").write_text("someone else's work\n")  # a run of another Magic Box database
    git(repo, "checkout", "-q", "-b", f"magicbox/run-{run.pk}/edit")
    git(repo, "add", "mine.txt")
    git(repo, "commit", "-q", "-m", "theirs")
    git(repo, "checkout", "-q", "main")
    theirs = git(repo, "rev-parse", f"magicbox/run-{run.pk}/edit").strip()
    await run_to_end(run.pk)
    task_run = await TaskRun.objects.select_related("change").aget(run=run)
    assert task_run.change.branch == f"magicbox/run-{run.pk}-2/edit"
    assert git(repo, "rev-parse", f"magicbox/run-{run.pk}/edit").strip() == theirs


async def test_a_symlink_replaced_by_a_file_keeps_every_files_diff(repo):
    (repo / "link").symlink_to("README.md")
    git(repo, "add", "link")
    git(repo, "commit", "-q", "-m", "link")
    run, t = await run_workspace_plan(repo, [{"id": "unlink", "worker": "shell", "command": sh(
        "rm link && echo 'now a file' > link && echo more >> README.md")}])
    change = t["unlink"].change
    assert {f["path"]: f["status"] for f in change.files} == {"README.md": "modified", "link": "type changed"}
    assert "+more" in change.file_patch("README.md") and "now a file" in change.file_patch("link")


async def test_task_ids_that_cannot_name_a_branch_are_refused_when_the_plan_has_a_workspace(repo):
    text = json.dumps({"name": "bad ids", "workspace": {"repository": str(repo)}, "parallel_execution": {"tasks": [
        {"id": "fix..bug", "worker": "shell", "command": ["true"]}, {"id": "x.lock", "worker": "shell", "command": ["true"]}]}})
    with pytest.raises(PlanInvalid) as refused:
        await sync_to_async(make_plan)(text)
    message = str(refused.value)
    assert "'fix..bug' cannot name the task's git branch" in message and "'x.lock' cannot name" in message


async def test_a_gitconfig_or_a_nested_repository_planted_in_the_worktree_runs_nothing_in_magic_boxs_git(repo, data_dir):
    # A filter's `clean` command runs whenever git hashes a matching file: Magic Box's own git
    # (outside the sandbox) must never read a config a task wrote. The data directory is hidden
    # from the task: only a filter run outside its sandbox can write there.
    pwned = data_dir / "pwned"
    filter_script = f"#!/bin/sh\necho ran >> {pwned}\ncat\n"
    run, t = await run_workspace_plan(repo, [
        {"id": "gitconfig", "worker": "shell", "command": sh(
            f"printf '%s' '{filter_script}' > .pwn.sh && chmod +x .pwn.sh && "
            "printf '[filter \"pwn\"]\\n\\tclean = %s/.pwn.sh\\n' \"$PWD\" > .gitconfig && "
            "mkdir -p .config/git && cp .gitconfig .config/git/config && echo '* filter=pwn' > .gitattributes && echo x > x.txt")},
        {"id": "nested", "worker": "shell", "command": sh(
            f"printf '%s' '{filter_script}' > /tmp/pwn.sh; cp /tmp/pwn.sh .pwn.sh && chmod +x .pwn.sh && "
            "git init -q sub && cd sub && echo '* filter=pwn' > .gitattributes && echo y > y.txt && "
            "git config filter.pwn.clean \"$PWD/../.pwn.sh\" && git add . && "
            "git -c user.name=X -c user.email=x@x commit -q -m sub && echo z >> y.txt")},
    ])
    assert t["gitconfig"].state == "succeeded", t["gitconfig"].error
    assert t["nested"].state == "succeeded", t["nested"].error
    assert not pwned.exists(), "Magic Box's git ran a filter a task planted"
    assert {f["path"] for f in t["gitconfig"].change.files} >= {".gitconfig", ".gitattributes", "x.txt"}


async def test_a_sandboxed_task_can_neither_move_a_branch_through_a_symbolic_ref_nor_rewrite_its_objects(repo):
    main = git(repo, "rev-parse", "main").strip()
    readme = git(repo, "rev-parse", "main:README.md").strip()
    common = str(repo / ".git")
    run, t = await run_workspace_plan(repo, [{"id": "forger", "worker": "shell", "command": sh(
        f"echo 'ref: refs/heads/main' > {common}/refs/heads/$(git symbolic-ref --short HEAD) 2>/dev/null; "
        f"obj={common}/objects/$(echo {readme} | cut -c1-2)/$(echo {readme} | cut -c3-); "
        "chmod u+w \"$obj\" 2>/dev/null; rm -f \"$obj\" 2>/dev/null; echo EVIL > \"$obj\" 2>/dev/null; "
        "echo work > forged.txt")}])
    assert t["forger"].state == "succeeded", t["forger"].error
    assert git(repo, "rev-parse", "main").strip() == main
    assert git(repo, "cat-file", "-p", readme) != "EVIL\n" and "EVIL" not in git(repo, "show", "main:README.md")
    assert {f["path"] for f in t["forger"].change.files} == {"forged.txt"}


async def test_what_a_task_plants_in_its_worktree_record_never_reaches_magic_boxs_git(repo, data_dir):
    # The record (<repo>/.git/worktrees/<name>) is what Magic Box's own git reads when it commits
    # the task's work: a sandboxed task writes a private copy of it instead.
    git(repo, "config", "extensions.worktreeConfig", "true")  # config.worktree in the record is read
    main = git(repo, "rev-parse", "main").strip()
    victim = data_dir / "victim.txt"
    victim.write_text("precious\n")
    pwned = data_dir / "pwned"
    run, t = await run_workspace_plan(repo, [{"id": "planter", "worker": "shell", "command": sh(
        'record="$(git rev-parse --git-dir)"; '
        'echo "ref: refs/heads/main" > "$record/ORIG_HEAD"; '
        f'ln -sf {victim} "$record/COMMIT_EDITMSG"; '
        f'printf "#!/bin/sh\\necho ran >> {pwned}\\ncat\\n" > .pwn.sh; chmod +x .pwn.sh; '
        'printf "[filter \\"pwn\\"]\\n\\tclean = %s/.pwn.sh\\n" "$PWD" > "$record/config.worktree"; '
        "echo '* filter=pwn' > .gitattributes; echo work > planted.txt")}])
    assert t["planter"].state == "succeeded", t["planter"].error
    assert git(repo, "rev-parse", "main").strip() == main
    assert victim.read_text() == "precious\n"
    assert not pwned.exists(), "Magic Box's git ran a filter from a config the task wrote"
    assert "planted.txt" in {f["path"] for f in t["planter"].change.files}


async def test_a_merge_conflict_between_symbolic_links_shows_nothing_of_where_they_point(repo, data_dir):
    from orchestration.engine.integration import request_integration
    from orchestration.models import Integration
    from tests.conftest import drain_engine

    secret = data_dir / "server-only.txt"  # hidden from tasks, readable by Magic Box
    secret.write_text("<<<<<<< a\nSERVER-ONLY secret\n>>>>>>> b\n")
    run, t = await run_workspace_plan(repo, [
        {"id": "a", "worker": "shell", "command": sh(f"ln -s {secret} x")},
        {"id": "b", "worker": "shell", "command": sh("ln -s /etc/hostname x")},
    ])
    assert run.state == "succeeded"
    integration = await sync_to_async(request_integration)(run)
    await drain_engine()
    integration = await Integration.objects.aget(pk=integration.pk)
    assert integration.state == "failed" and integration.conflict["files"][0]["path"] == "x"
    assert "SERVER-ONLY" not in str(integration.conflict) + integration.state_reason
