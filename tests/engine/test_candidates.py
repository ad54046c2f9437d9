"""Best-of-N candidates: a task runs once per candidate in parallel, each on its own branch, and
the winner, chosen by a review, a command or a person, is what downstream tasks get."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine import choosing
from orchestration.engine.scheduler import start_run
from orchestration.models import AuditEvent, TaskRun, Verdict
from tests.conftest import drain_engine, git, make_plan, py, run_tasks, user_in

# Candidate n writes solution.txt with "answer <n*n>" and prints it (MAGICBOX_TASK_ID is "solve.<n>").
SOLVE = py("""
    import os, pathlib
    n = int(os.environ['MAGICBOX_TASK_ID'].rsplit('.', 1)[1])
    pathlib.Path('solution.txt').write_text(f'answer {n * n}\\n')
    print(f'answer {n * n}')
""")
# Downstream: what it was handed (the winner's result) and what its worktree holds.
USE = py("""
    import os, pathlib
    prompt = os.environ['MAGICBOX_PROMPT']
    handed = prompt.split('## Result of upstream task solve', 1)[1].strip()
    here = pathlib.Path('solution.txt').read_text().strip() if pathlib.Path('solution.txt').exists() else '-'
    print(handed, '|', here)
""")


def plan(choose, extra: list[dict] | None = None) -> list[dict]:
    return [{"id": "solve", "description": "Solve it.", "command": SOLVE, "candidates": {"worker": "shell", "n": 3}, "choose": choose},
            *(extra or []), {"id": "use", "worker": "shell", "command": USE, "depends_on": ["solve"]}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_review_sees_every_candidate_and_the_one_it_names_is_what_downstream_gets(repo):
    judge = {"id": "judge", "worker": "shell", "depends_on": ["solve"], "command": py("""
        import os
        prompt = os.environ['MAGICBOX_PROMPT']
        assert '### Candidate 3 (solve.3, shell): succeeded' in prompt and 'answer 9' in prompt and '+answer 4' in prompt
        print('2\\nCandidate 2 is the simplest.')
    """)}
    run, t = await run_tasks(plan({"review": "judge"}, [judge]), workspace={"repository": str(repo), "base": "main"})
    assert run.state == "succeeded", {k: (v.state, v.state_reason, v.error[-300:]) for k, v in t.items()}
    assert [t[f"solve.{n}"].state for n in (1, 2, 3)] == ["succeeded"] * 3
    assert t["solve"].state_reason == "chose solve.2: named by judge: 2" and t["solve"].result.strip() == "answer 4"
    assert t["use"].result.strip() == "answer 4 | answer 4", "downstream got the winner's result and branch"
    assert git(repo, "show", f"{t['solve'].change.branch}:solution.txt") == "answer 4\n"
    assert t["solve"].change.branch.endswith("/solve.2")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("choose, winner, summary", [
    ({"command": py("import pathlib, sys; sys.exit(0 if pathlib.Path('solution.txt').read_text() >= 'answer 4' else 1)")},
     "solve.2", "solve.2 is the first to pass"),
    ({"command": py("import pathlib; print('score', pathlib.Path('solution.txt').read_text().split()[1])"), "score": True},
     "solve.3", "solve.3 has the best score (solve.1 1, solve.2 4, solve.3 9)"),
])
async def test_a_command_run_in_each_candidates_directory_chooses(choose, winner, summary):
    run, t = await run_tasks(plan(choose))
    assert run.state == "succeeded", run.state_reason
    assert t["solve"].state_reason == f"chose {winner}: {summary}"
    check = await Verdict.objects.aget(run=run, kind="choice")
    assert check.state == "passed" and f"## {winner}" in check.evidence
    assert t["use"].result.split("|")[0].strip() == t[winner].result.strip()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_no_candidate_passing_the_command_fails_the_task_and_skips_downstream():
    run, t = await run_tasks(plan({"command": py("import sys; sys.exit(1)")}))
    assert t["solve"].state == "failed" and t["solve"].error == "no candidate was chosen: no candidate passed"
    assert t["use"].state == "skipped" and run.state == "failed"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_person_picks_the_winner_and_the_pick_is_recorded(django_user_model):
    run = await sync_to_async(start_run)(await sync_to_async(make_plan)(json.dumps(
        {"name": "pick", "parallel_execution": {"tasks": plan("person")}})))
    await drain_engine()
    solve = await TaskRun.objects.aget(run=run, task_id="solve")
    assert solve.state == "waiting" and solve.state_reason == "choosing among 3 candidate(s): an Operator chooses"
    olga = await sync_to_async(user_in)(django_user_model, "olga", "Operators")
    assert not await sync_to_async(choosing.choose_by)(solve, olga, "solve.9"), "not a candidate"
    assert await sync_to_async(choosing.choose_by)(solve, olga, "solve.1", "smallest")
    await drain_engine()
    solve = await TaskRun.objects.aget(run=run, task_id="solve")
    assert solve.state_reason == "chose solve.1: picked by olga: smallest"
    assert (await TaskRun.objects.aget(run=run, task_id="use")).result.startswith("answer 1")
    assert (await AuditEvent.objects.aget(action="candidate_chosen")).detail == "solve: solve.1: smallest"


def test_the_run_page_shows_the_candidates_side_by_side_and_lets_an_operator_choose(client, django_user_model):
    from asgiref.sync import async_to_sync

    run = start_run(make_plan(json.dumps({"name": "pick", "parallel_execution": {"tasks": plan("person")}})))
    async_to_sync(drain_engine)()
    client.force_login(user_in(django_user_model, "olga", "Operators"))
    page = client.get(f"/runs/{run.pk}/").content.decode()  # it opens on the task waiting for a person
    assert 'id="task-detail" class="task-detail card" data-task="solve"' in page
    assert "3 candidates</strong>, chosen by an Operator" in page and "answer 9" in page and "Who can choose: olga." in page
    solve = TaskRun.objects.get(run=run, task_id="solve")
    response = client.post(f"/runs/{run.pk}/tasks/{solve.pk}/choose/", {"winner": "solve.3", "comment": "biggest"})
    assert response.status_code == 302
    assert TaskRun.objects.get(pk=solve.pk).state == "succeeded"
    page = client.get(f"/runs/{run.pk}/?task=solve").content.decode()
    assert "chose solve.3: picked by olga: biggest" in page and page.count('class="state state-succeeded winner">chosen') == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_best_of_three_example_keeps_the_closest_estimate():
    from pathlib import Path

    from tests.conftest import run_plan

    run, t = await run_plan((Path(__file__).resolve().parents[2] / "examples" / "best-of-three.yaml").read_text(), "best.yaml")
    assert run.state == "succeeded", run.state_reason
    assert t["estimate"].state_reason.startswith("chose estimate.2: estimate.2 has the best score")
    assert "the chosen estimate: candidate 2: pi is about 3.1415" in t["report"].result


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_choosing_review_with_a_gate_chooses_at_once_and_its_gate_holds_only_its_own_downstream():
    judge = {"id": "judge", "worker": "shell", "depends_on": ["solve"], "command": py("print('3')"),
             "gate": {"approve": True}}
    after = {"id": "after", "worker": "shell", "command": py("print('after')"), "depends_on": ["judge"]}
    plan_text = json.dumps({"name": "gated judge", "parallel_execution": {"tasks": plan({"review": "judge"}, [judge, after])}})
    run = await sync_to_async(start_run)(await sync_to_async(make_plan)(plan_text))
    await drain_engine()
    rows = {r.task_id: r async for r in TaskRun.objects.filter(run=run)}
    assert rows["solve"].state_reason == "chose solve.3: named by judge: 3" and rows["use"].state == "succeeded"
    assert rows["judge"].state == "waiting" and rows["after"].state == "pending"
