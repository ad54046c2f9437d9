"""Loops and candidates with the real agent CLIs against the fake model: a claude review sends a
codex writer back with its findings, and a claude judge picks among claude, codex and gemini."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.models import LoopRound
from tests.conftest import run_plan
from tests.fakes.model_server import Text, WriteFile

pytestmark = [pytest.mark.cli, pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def plan(tasks: list[dict]) -> str:
    return json.dumps({"name": "agents", "parallel_execution": {"tasks": tasks}})


async def test_a_claude_review_sends_a_codex_writer_back_and_approves_round_two(model):
    # Rules are tried in order: the writer's second prompt carries the findings; the review's
    # second prompt carries the writer's second answer.
    model.when("Review findings from review (round 1)", Text("parser written, with 3 tests"))
    model.when("parser written, with 3 tests", Text("APPROVE\nThe parser is tested now."))
    model.when("Review the parser", Text("REQUEST_CHANGES\n- The parser has no tests."))
    model.when("Write the parser", Text("parser written"))
    run, t = await run_plan(plan([
        {"id": "write", "worker": "codex", "description": "Write the parser."},
        {"id": "review", "worker": "claude", "description": "Review the parser. Answer APPROVE, REQUEST_CHANGES or REJECT first.",
         "depends_on": ["write"], "loop": {"fixes": ["write"], "max_rounds": 3}},
    ]))
    assert run.state == "succeeded", (run.state_reason, t["write"].error, t["review"].error)
    rounds = [(r.number, r.verdict) async for r in LoopRound.objects.filter(run=run).order_by("number")]
    assert rounds == [(1, "REQUEST_CHANGES"), (2, "APPROVE")]
    second = next(p for p in model.prompts() if "Review findings from review (round 1)" in p)
    assert "- The parser has no tests." in second, "round 2's prompt holds round 1's findings"
    assert t["write"].attempt == 2 and t["write"].result.strip() == "parser written, with 3 tests"
    costs = [r.cost_usd async for r in LoopRound.objects.filter(run=run)]
    assert all(c is not None for c in costs), "claude reports a cost for each review"


async def test_a_claude_writer_sent_back_continues_its_session_with_the_findings(model):
    model.when("Review findings from review (round 1)", Text("done, with tests"))
    model.when("done, with tests", Text("APPROVE"))
    model.when("Review it", Text("REQUEST_CHANGES: add tests"))
    model.when("Write it", Text("done"))
    run, t = await run_plan(plan([
        {"id": "write", "worker": "claude", "description": "Write it."},
        {"id": "review", "worker": "shell", "depends_on": ["write"], "loop": {"fixes": ["write"]},
         "description": "Review it.", "command": ["python", "-c", "import os; print('APPROVE' if 'with tests' in os.environ['MAGICBOX_PROMPT'] else 'REQUEST_CHANGES: add tests')"]},
    ]))
    assert run.state == "succeeded", (run.state_reason, t["write"].error)
    resumed = next(r for r in model.requests if r.provider == "anthropic" and "Review findings from review" in r.prompt)
    messages = resumed.body["messages"]
    assert len(messages) >= 3 and "Write it." in json.dumps(messages[0]), "round 2 continued round 1's conversation"
    assert "continuing the CLI's session" in await sync_to_async(t["write"].output_text)()


async def test_a_claude_judge_chooses_among_claude_codex_and_gemini(model):
    model.when("## Candidates of solve", Text("2\nThe codex candidate is the simplest."))
    model.when("Solve the puzzle", WriteFile("answer.txt", "42\n"))
    run, t = await run_plan(plan([
        {"id": "solve", "candidates": ["claude", "codex", "gemini"], "choose": {"review": "judge"},
         "description": "Solve the puzzle and write answer.txt."},
        {"id": "judge", "worker": "claude", "description": "Choose the best candidate.", "depends_on": ["solve"]},
        {"id": "report", "worker": "claude", "description": "Report the answer.", "depends_on": ["solve"]},
    ]))
    assert run.state == "succeeded", {k: (v.state, v.error[-300:]) for k, v in t.items()}
    assert [t[f"solve.{n}"].worker for n in (1, 2, 3)] == ["claude", "codex", "gemini"]
    assert t["solve"].state_reason.startswith("chose solve.2: named by judge: 2") and t["solve"].worker == "codex"
    judge_prompt = next(p for p in model.prompts() if "## Candidates of solve" in p)
    assert "### Candidate 1 (solve.1, claude): succeeded" in judge_prompt and "### Candidate 3 (solve.3, gemini)" in judge_prompt
    assert t["report"].state == "succeeded"
