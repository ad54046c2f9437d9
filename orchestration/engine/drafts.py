"""Plans drafted by the orchestrator worker: claim a queued draft, run the worker, check its YAML.

The worker gets the plan-drafter prompt of the library (the seed's orchestrator instructions
and output format) and the goal; its answer is parsed and validated like an imported file.
Drafts are background work like task runs (engine.work): claimed, leased, finished by their
claimer only, and queued again when their worker process stops or dies.
"""
from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from orchestration.engine import orphans, work
from orchestration.engine.db import db
from orchestration.engine.leases import Lease, LeaseLost
from orchestration.engine.output import storable
from orchestration.models import DraftState, PlanDraft
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_plan
from orchestration.plans.prompt_library import resolve as resolve_prompt
from orchestration.workers.base import TaskContext, WorkerUnavailable
from orchestration.workers.environment import worker_setup
from orchestration.workers import sandbox
from orchestration.workers.process import run_process
from orchestration.workers.registry import UnknownWorker

FENCE = re.compile(r"```(?:ya?ml)?\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def claim_next(owner: str, scope: work.Scope = work.Scope()) -> PlanDraft | None:
    """Claim (engine.work.claim) the oldest queued draft within `scope` for `owner`; or None."""
    for draft in work.claimable(PlanDraft.objects.filter(state=DraftState.QUEUED), scope).order_by("created_at")[:5]:
        if work.claim(draft, owner, started_at=timezone.now()):
            return draft
    return None


def extract_yaml(answer: str) -> str:
    """The YAML in a worker's answer: the first fenced block if there is one, else the answer."""
    match = FENCE.search(answer)
    return (match.group(1) if match else answer).strip() + "\n"


def drafting_prompt(goal: str) -> str:
    """The orchestrator's instructions (from the prompt library) followed by the goal."""
    instructions, _ = resolve_prompt(settings.MAGICBOX_ORCHESTRATOR_PROMPT)
    return f"{instructions.strip()}\n\n# Goal\n{goal.strip()}\n"


def _finish(draft: PlanDraft, lease: Lease, state: str, **fields) -> None:
    work.finish(draft, lease.owner, lease.attempt, state, fields.get("error", "")[:2000], finished_at=timezone.now(), **fields)


async def execute(draft_id: int, lease: Lease) -> None:
    """Run the orchestrator worker for a draft this process holds through `lease`, and record
    the checked result. Stops (its processes killed) when the lease is lost. The attempt's
    directories (HOME with the CLI's config and keys among them) are removed when it ends."""
    draft = await db(PlanDraft.objects.get, pk=draft_id)
    prompt = await db(drafting_prompt, draft.goal)
    root = Path(settings.DATA_DIR) / "drafts" / str(draft_id) / f"attempt-{lease.attempt}"
    shutil.rmtree(root, ignore_errors=True)  # what an earlier, interrupted attempt left
    dirs = {name: root / name for name in ("work", "home", "tmp", "upstream")}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
    try:
        adapter, env = await db(worker_setup, draft.worker)
        if reason := adapter.unavailable_reason(env):
            raise WorkerUnavailable(reason)
        invocation = adapter.build(TaskContext(task_id="draft", prompt=prompt, command=None, workdir=dirs["work"],
                                               home=dirs["home"], tmpdir=dirs["tmp"], upstream_dir=dirs["upstream"], base_env=env))
    except (UnknownWorker, WorkerUnavailable, ValueError) as error:
        await db(_finish, draft, lease, DraftState.FAILED, error=str(error))
        return
    invocation.env[orphans.MARKER] = lease.marker
    parser = adapter.parser()
    try:
        result = await lease.guard(run_process(invocation, parser.feed_stdout, parser.feed_stderr, timeout=settings.MAGICBOX_DRAFT_TIMEOUT,
                                                 confinement=sandbox.for_attempt(dirs["work"], dirs["home"], dirs["tmp"])))
    except LeaseLost:
        return
    except (OSError, ValueError) as error:  # the program, or a sandbox for it, cannot be started
        await db(_finish, draft, lease, DraftState.FAILED, error=f"could not start {invocation.argv[0]}: {error}")
        return
    finally:
        await asyncio.to_thread(orphans.kill_marked, lease.marker)
        # A draft keeps nothing on disk (its answer is stored): no key, no transcript stays.
        await asyncio.to_thread(shutil.rmtree, root, True)
    outcome = parser.finish(-1 if result.exit_code is None else result.exit_code, result.stderr_tail)
    if result.timed_out or not outcome.succeeded:
        error = "timed out" if result.timed_out else outcome.error
        await db(_finish, draft, lease, DraftState.FAILED, output=storable(outcome.result), error=f"The {draft.worker} worker failed: {error}")
        return
    text = extract_yaml(outcome.result)
    try:
        # A large plan takes the loader seconds: in a thread, so leases and output go on meanwhile.
        spec = await asyncio.to_thread(load_plan, text, "draft.yaml")
    except PlanInvalid as invalid:
        await db(_finish, draft, lease, DraftState.FAILED, output=storable(text), error="The drafted plan is not valid:\n" + invalid.report())
        return
    await db(_finish, draft, lease, DraftState.SUCCEEDED, output=storable(text), spec=spec)


def cancel(draft: PlanDraft, reason: str) -> bool:
    """Stop a queued or running draft: it fails with `reason` (the person's words). The worker
    process drafting it loses its hold on the next lease check and kills the drafter. False if
    the draft had already ended."""
    now = timezone.now()
    for state in (DraftState.QUEUED, DraftState.RUNNING):
        if draft.transition(DraftState.FAILED, reason, expect=state, lease_expires_at=None, **draft.failure_fields(reason, now)):
            return True
    return False
