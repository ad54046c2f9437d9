"""Review-and-fix loops: a review's REQUEST_CHANGES sends its fixes back with its findings, each
continuing from its own branch, until APPROVE, REJECT or max_rounds; every round is kept."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.models import LoopRound, RoundChange, TaskRun
from tests.conftest import git, py, run_tasks

# The fix writes "draft" at first, "fixed" once its prompt carries the review's findings.
FIX = py("""
    import os, pathlib
    fixed = 'Review findings from review' in os.environ['MAGICBOX_PROMPT']
    pathlib.Path('notes.txt').open('a').write('fixed\\n' if fixed else 'draft\\n')
    print('fixed' if fixed else 'draft')
""")


def review(answers: str) -> list[str]:
    """A review "agent": answers from `answers` (a Python expression of the fix's result `r`)."""
    return py(f"""
        import os
        prompt = os.environ['MAGICBOX_PROMPT']
        r = prompt.split('## Result of upstream task fix', 1)[1].split('##', 1)[0].strip()
        print({answers})
    """)


def loop_plan(answers: str, max_rounds: int = 3) -> list[dict]:
    return [
        {"id": "fix", "worker": "shell", "command": FIX},
        {"id": "review", "worker": "shell", "command": review(answers), "depends_on": ["fix"],
         "loop": {"fixes": ["fix"], "max_rounds": max_rounds}},
        {"id": "deploy", "worker": "shell", "command": py("print('deployed')"), "depends_on": ["review"]},
        # Downstream of the fix but not of the review: it waits for the review all the same.
        {"id": "docs", "worker": "shell", "command": py("print('documented')"), "depends_on": ["fix"]},
    ]


async def rounds(run) -> list[tuple[int, str]]:
    return await sync_to_async(list)(LoopRound.objects.filter(run=run).order_by("number").values_list("number", "verdict"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_loop_that_approves_in_round_two_gives_the_fix_its_findings():
    answers = "'APPROVE' if r == 'fixed' else 'REQUEST_CHANGES\\n- write fixed, not ' + r"
    run, t = await run_tasks(loop_plan(answers))
    assert run.state == "succeeded", run.state_reason
    assert await rounds(run) == [(1, "REQUEST_CHANGES"), (2, "APPROVE")]
    assert (t["fix"].attempt, t["fix"].result.strip(), t["review"].attempt) == (2, "fixed", 2)
    assert "## Review findings from review (round 1)" in t["fix"].prompt and "- write fixed, not draft" in t["fix"].prompt
    assert t["docs"].started_at >= t["review"].finished_at, "docs waited for the loop to end well"
    first = await LoopRound.objects.aget(run=run, number=1)
    assert first.findings.startswith("REQUEST_CHANGES") and first.attempts == {"fix": 1, "review": 1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_loop_that_keeps_asking_for_changes_fails_after_max_rounds():
    run, t = await run_tasks(loop_plan("'REQUEST_CHANGES: still ' + r", max_rounds=2))
    assert await rounds(run) == [(1, "REQUEST_CHANGES"), (2, "REQUEST_CHANGES")]
    assert t["review"].state == "failed"
    assert t["review"].error == "the review loop failed: review still asked for changes after 2 round(s) (max_rounds: 2)"
    assert (t["deploy"].state, t["docs"].state) == ("skipped", "skipped") and run.state == "failed"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_rejected_loop_fails_at_once_and_skips_what_waits():
    run, t = await run_tasks(loop_plan("'REJECT: this approach cannot work'"))
    assert await rounds(run) == [(1, "REJECT")]
    assert t["review"].error == "the review loop failed: review answered REJECT in round 1"
    assert t["fix"].attempt == 1 and t["deploy"].state == "skipped"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_each_round_continues_from_the_fixs_own_branch_and_keeps_its_diff(repo):
    answers = "'APPROVE' if r == 'fixed' else 'REQUEST_CHANGES'"
    run, t = await run_tasks(loop_plan(answers)[:2], workspace={"repository": str(repo), "base": "main"})
    assert run.state == "succeeded", run.state_reason
    notes = git(repo, "show", f"{t['fix'].change.branch}:notes.txt")
    assert notes == "draft\nfixed\n", "round 2 continued from round 1's work"
    by_round = {c.round.number: c for c in await sync_to_async(list)(RoundChange.objects.filter(task_id="fix").select_related("round"))}
    assert "+draft" in by_round[1].patch and "+fixed" in by_round[2].patch and "+draft" not in by_round[2].patch
    assert json.dumps(by_round[2].files)  # what the run page lists per round


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_run_page_shows_every_round_with_its_findings_attempts_and_diffs(repo, client, user):
    answers = "'APPROVE' if r == 'fixed' else 'REQUEST_CHANGES\\n- the notes still say ' + r"
    run, t = await run_tasks(loop_plan(answers)[:2], workspace={"repository": str(repo), "base": "main"})
    await sync_to_async(client.force_login)(user)
    page = (await sync_to_async(client.get)(f"/runs/{run.pk}/?task=fix")).content.decode()
    assert "Review loop of <code>review</code>:</strong> 2 rounds" in page
    assert "verdict-request_changes" in page and "verdict-approve" in page and "- the notes still say draft" in page
    second = await RoundChange.objects.aget(round__run=run, round__number=2, task_id="fix")
    assert f"/runs/{run.pk}/rounds/{second.pk}/diff/" in page
    diff = (await sync_to_async(client.get)(f"/runs/{run.pk}/rounds/{second.pk}/diff/")).content.decode()
    assert "notes.txt" in diff and "fixed" in diff


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_review_loop_example_approves_in_its_second_round():
    from pathlib import Path

    from tests.conftest import run_plan

    run, t = await run_plan((Path(__file__).resolve().parents[2] / "examples" / "review-loop.yaml").read_text(), "review-loop.yaml")
    assert run.state == "succeeded", run.state_reason
    assert await rounds(run) == [(1, "REQUEST_CHANGES"), (2, "APPROVE")] and t["write"].attempt == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_check_gate_on_a_fix_checks_each_rounds_work_and_the_review_sees_its_own_findings():
    review = py("""
        import os
        prompt = os.environ['MAGICBOX_PROMPT']
        print('APPROVE' if '## Your review in round 1' in prompt and 'fixed' in prompt else 'REQUEST_CHANGES\\n- not fixed')
    """)
    run, t = await run_tasks([
        {"id": "fix", "worker": "shell", "command": FIX, "gate": {"command": py("print('checked')")}},
        {"id": "review", "worker": "shell", "command": review, "depends_on": ["fix"], "loop": {"fixes": ["fix"]}},
    ])
    assert run.state == "succeeded", (run.state_reason, t["review"].error)
    assert await rounds(run) == [(1, "REQUEST_CHANGES"), (2, "APPROVE")]
    assert t["fix"].state_reason == "gate check passed: exited with code 0" and t["fix"].attempt == 2
