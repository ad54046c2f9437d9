"""Plans drafted by the orchestrator worker: claim a queued draft, run the worker, check its YAML.

The worker gets the plan-drafter prompt of the library (the seed's orchestrator instructions
and output format) and the goal; its answer is parsed and validated like an imported file.
Drafts are background work like task runs (engine.work): claimed, leased, finished by their
claimer only, and queued again when their worker process stops or dies. What the drafter
writes as it goes is kept in the draft's log (its end), which the draft's page polls.
"""
from __future__ import annotations

import asyncio
import functools
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.db.models import Value
from django.db.models.functions import Concat, Right
from django.utils import timezone

from orchestration.engine import orphans, work
from orchestration.engine.db import db
from orchestration.engine.leases import Lease, LeaseLost
from orchestration.engine.output import OutputBuffer, storable
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


def append_log(draft_id: int, attempt: int, text: str) -> None:
    """Append `text` (whole lines, newline-terminated) to a draft's log, secrets masked, keeping
    its last PlanDraft.LOG_LIMIT characters. Nothing is written once a later attempt has started."""
    text = storable(text)[-PlanDraft.LOG_LIMIT:]
    PlanDraft.objects.filter(pk=draft_id, attempt=attempt).update(log=Right(Concat("log", Value(text)), PlanDraft.LOG_LIMIT))


def show_writing(draft_id: int, attempt: int, text: str) -> None:
    """Store `text` (storable already) as the end of the message a draft's attempt is writing."""
    PlanDraft.objects.filter(pk=draft_id, attempt=attempt).update(writing=text)


def _output(draft_id: int, attempt: int) -> OutputBuffer:
    """The buffer of a draft's attempt: its lines go to the log, the message being written to
    `writing`; the page polls them."""
    return OutputBuffer(functools.partial(append_log, draft_id, attempt),
                        lambda text: db(show_writing, draft_id, attempt, text))


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
    output = _output(draft_id, lease.attempt)
    output.add([f"[Magic Box] attempt {lease.attempt}: {draft.worker} drafting the plan"])
    output.follow_partial(parser.partial_text)
    flusher = asyncio.create_task(output.flush_forever())
    not_started = ""
    try:
        result = await lease.guard(run_process(invocation, lambda line: output.add(parser.feed_stdout(line)),
                                               lambda line: output.add(parser.feed_stderr(line)), timeout=settings.MAGICBOX_DRAFT_TIMEOUT,
                                               confinement=sandbox.for_attempt(dirs["work"], dirs["home"], dirs["tmp"])))
    except LeaseLost:
        output.add(["[Magic Box] stopped: the draft was cancelled or taken over; its processes were killed"])
        return
    except (OSError, ValueError) as error:  # the program, or a sandbox for it, cannot be started
        not_started = f"could not start {invocation.argv[0]}: {error}"
        output.add([f"[Magic Box] {not_started}"])
    finally:
        flusher.cancel()
        await asyncio.to_thread(orphans.kill_marked, lease.marker)
        # A draft keeps nothing on disk (its answer is stored): no key, no transcript stays.
        await asyncio.to_thread(shutil.rmtree, root, True)
        output.add(parser.end_of_output())  # e.g. gemini's unfinished line of text
        output.follow_partial(None)
        await output.flush()  # before the draft ends: a page that sees it ended has its whole log
    if not_started:
        await db(_finish, draft, lease, DraftState.FAILED, error=not_started)
        return
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
