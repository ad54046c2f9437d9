"""Plans drafted by the orchestrator worker: claim a queued draft, run the worker, check its YAML.

The worker gets the plan-drafter prompt of the library (the seed's orchestrator instructions
and output format) and the goal; its answer is parsed and validated like an imported file.
Like task runs, drafts are claimed with a conditional UPDATE and run only in worker processes.
"""
from __future__ import annotations

import re
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from orchestration.engine.executor import base_environment
from orchestration.engine.output import storable
from orchestration.models import PlanDraft
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_plan
from orchestration.plans.prompt_library import resolve as resolve_prompt
from orchestration.workers.base import TaskContext, WorkerUnavailable
from orchestration.workers.process import run_process
from orchestration.workers.registry import UnknownWorker, get_adapter

FENCE = re.compile(r"```(?:ya?ml)?\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def claim_draft(owner: str) -> int | None:
    """Move the oldest queued draft to running for `owner`; its id, or None."""
    for draft_id in PlanDraft.objects.filter(state="queued").order_by("created_at").values_list("id", flat=True)[:5]:
        if PlanDraft.objects.filter(pk=draft_id, state="queued").update(state="running", claimed_by=owner):
            return draft_id
    return None


def extract_yaml(answer: str) -> str:
    """The YAML in a worker's answer: the first fenced block if there is one, else the answer."""
    match = FENCE.search(answer)
    return (match.group(1) if match else answer).strip() + "\n"


def drafting_prompt(goal: str) -> str:
    """The orchestrator's instructions (from the prompt library) followed by the goal."""
    instructions, _ = resolve_prompt(settings.MAGICBOX_ORCHESTRATOR_PROMPT)
    return f"{instructions.strip()}\n\n# Goal\n{goal.strip()}\n"


def _finish(draft_id: int, **fields) -> None:
    PlanDraft.objects.filter(pk=draft_id).update(finished_at=timezone.now(), **fields)


async def execute_draft(draft_id: int) -> None:
    """Run the orchestrator worker for a claimed draft and record the checked result."""
    draft = await sync_to_async(PlanDraft.objects.get)(pk=draft_id)
    prompt = await sync_to_async(drafting_prompt)(draft.goal)
    root = Path(settings.DATA_DIR) / "drafts" / str(draft_id)
    dirs = {name: root / name for name in ("work", "home", "tmp", "upstream")}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
    try:
        adapter = get_adapter(draft.worker)
        env = base_environment(draft.worker)
        if reason := adapter.unavailable_reason(env):
            raise WorkerUnavailable(reason)
        invocation = adapter.build(TaskContext(task_id="draft", prompt=prompt, command=None, workdir=dirs["work"],
                                               home=dirs["home"], tmpdir=dirs["tmp"], upstream_dir=dirs["upstream"], base_env=env))
    except (UnknownWorker, WorkerUnavailable, ValueError) as error:
        await sync_to_async(_finish)(draft_id, state="failed", error=str(error))
        return
    parser = adapter.parser()
    result = await run_process(invocation, parser.feed_stdout, parser.feed_stderr, timeout=settings.MAGICBOX_DRAFT_TIMEOUT)
    outcome = parser.finish(-1 if result.exit_code is None else result.exit_code, result.stderr_tail)
    if result.timed_out or not outcome.succeeded:
        error = "timed out" if result.timed_out else outcome.error
        await sync_to_async(_finish)(draft_id, state="failed", output=storable(outcome.result), error=f"The {draft.worker} worker failed: {error}")
        return
    text = extract_yaml(outcome.result)
    try:
        spec = load_plan(text, "draft.yaml")
    except PlanInvalid as invalid:
        await sync_to_async(_finish)(draft_id, state="failed", output=storable(text),
                                     error="The drafted plan is not valid:\n" + invalid.report())
        return
    await sync_to_async(_finish)(draft_id, state="succeeded", output=storable(text), spec=spec)
