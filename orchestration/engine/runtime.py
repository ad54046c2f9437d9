"""The engine of one worker process: claims work from the database and runs it concurrently.

Channel messages and the periodic sweep only call `wake()`; the database decides what to do.
Executors run as asyncio tasks, so the consumer that received a wake-up returns at once.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket

from asgiref.sync import sync_to_async
from django.conf import settings

from orchestration.engine import scheduler, verification
from orchestration.engine.drafts import claim_draft, execute_draft
from orchestration.engine.executor import execute
from orchestration.engine.integration import (
    claim_integration,
    execute_integration,
    fail_integration,
    recover_lost_integrations,
)
from orchestration.engine.signals import anotify_run, awake_engine

log = logging.getLogger(__name__)


class Engine:
    """Claims queued task runs while limits allow and executes them; one instance per process.

    It runs at most MAGICBOX_WORKER_SLOTS task runs at once (this process's share; 0: no limit
    of its own), within the global and per-worker limits claim_next enforces over all processes.

    owner: the name written into claimed task runs ("host:pid:n").
    """

    _count = 0

    def __init__(self) -> None:
        Engine._count += 1
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{Engine._count}"
        self.executing: dict[int, asyncio.Task] = {}
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._retry_timer: asyncio.Task | None = None

    def wake_soon(self) -> None:
        """Schedule `wake()` without waiting for it (for message handlers that must return)."""
        self._spawn(self._wake_logged())

    async def _wake_logged(self) -> None:
        try:
            await self.wake()
        except Exception:
            log.exception("engine wake-up failed; the next sweep tries again")

    async def wake(self, advance_runs: bool = True) -> None:
        """Advance every unfinished run (unless told it was just done), then claim and start
        whatever may start now."""
        async with self._lock:
            if advance_runs:
                for run_id in await sync_to_async(scheduler.active_run_ids)():
                    await sync_to_async(scheduler.advance_run)(run_id)
            claimed = 0
            while len(self.executing) < (settings.MAGICBOX_WORKER_SLOTS or float("inf")):
                task_run_id = await sync_to_async(scheduler.claim_next)(self.owner)
                if task_run_id is None:
                    break
                self.executing[task_run_id] = asyncio.create_task(self._execute(task_run_id))
                claimed += 1
            else:
                if claimed:
                    # This process is full but took work, so more may be waiting: pass the
                    # wake-up on to another process (one that takes nothing passes nothing on).
                    await awake_engine()
            while (verdict_id := await sync_to_async(verification.claim_pending)(self.owner)) is not None:
                self._spawn(self._verify(verdict_id))
            while (draft_id := await sync_to_async(claim_draft)(self.owner)) is not None:
                self._spawn(self._draft(draft_id))
            while (integration_id := await sync_to_async(claim_integration)(self.owner)) is not None:
                self._spawn(self._integrate(integration_id))
            delay = await sync_to_async(scheduler.next_retry_in)()
            if delay is not None and (self._retry_timer is None or self._retry_timer.done()):
                self._retry_timer = self._spawn(self._wake_after(delay))

    async def _execute(self, task_run_id: int) -> None:
        try:
            await execute(task_run_id, self.owner)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("executor crashed on task run %s", task_run_id)
            await sync_to_async(_fail_internal)(task_run_id, self.owner)
        finally:
            self.executing.pop(task_run_id, None)
        # A slot is free and downstream tasks may be queued (recording the end advanced the
        # run): take work here, and let other processes know in case this one is at its limit.
        await self.wake(advance_runs=False)
        await awake_engine()

    def _spawn(self, coroutine) -> asyncio.Task:
        """Run `coroutine` in the background; the set keeps it alive (the loop holds only weak
        references to tasks) and lets `settle` and `stop` find it."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _verify(self, verdict_id: int) -> None:
        try:
            run_id = await verification.run_pending(verdict_id)
        except Exception:
            log.exception("checking verdict %s failed", verdict_id)
            run_id = await sync_to_async(_fail_verdict)(verdict_id)
        if run_id is not None:
            await sync_to_async(scheduler.advance_run)(run_id)
            await anotify_run(run_id)

    async def settle(self) -> None:
        """Wait until nothing this engine started is still running (executors, drafts, wake-ups)."""
        while pending := [*self.executing.values(), *self._background]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _wake_after(self, delay: float) -> None:
        """Wake when a retry's backoff is over (the sweep would find it too, a little later)."""
        await asyncio.sleep(delay + 0.01)
        self._retry_timer = None
        await self._wake_logged()

    async def _integrate(self, integration_id: int) -> None:
        try:
            await execute_integration(integration_id)
        except Exception:
            log.exception("integration %s failed", integration_id)
            await sync_to_async(fail_integration)(integration_id, "Magic Box failed while integrating (see the worker's log)")

    async def _draft(self, draft_id: int) -> None:
        try:
            await execute_draft(draft_id)
        except Exception:
            log.exception("drafting plan %s failed", draft_id)
            await sync_to_async(_fail_draft)(draft_id)

    async def sweep(self) -> None:
        """Recover task runs whose executor died, then wake."""
        for run_id in await sync_to_async(scheduler.recover_lost_tasks)():
            await sync_to_async(scheduler.advance_run)(run_id)
            await anotify_run(run_id)
        for run_id in await sync_to_async(recover_lost_integrations)():
            await anotify_run(run_id)
        await self.wake()

    def start_sweeping(self) -> None:
        """Start the periodic sweep (every MAGICBOX_SWEEP_INTERVAL seconds) if not running."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("engine sweep failed; trying again in %s s", settings.MAGICBOX_SWEEP_INTERVAL)
            await asyncio.sleep(settings.MAGICBOX_SWEEP_INTERVAL)

    async def stop(self) -> None:
        """Cancel the sweep and every executing attempt, then queue those task runs again.

        Cancelling an attempt kills its process group (SIGTERM, then SIGKILL). The interrupted
        attempts do not count against the tasks' retries; any worker process may take them.
        """
        interrupted = list(self.executing)
        tasks = [t for t in [self._sweeper, *self.executing.values(), *self._background] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if interrupted:
            for run_id in await sync_to_async(scheduler.requeue_interrupted)(interrupted, self.owner):
                await anotify_run(run_id)
            await awake_engine()


def _fail_internal(task_run_id: int, owner: str) -> None:
    from django.utils import timezone

    from orchestration.models import TaskRun, TaskState

    task_run = TaskRun.objects.get(pk=task_run_id)
    if task_run.claimed_by == owner:
        message = "internal error in Magic Box while running this task (see the worker process's log)"
        task_run.transition(TaskState.FAILED, message, expect=TaskState.RUNNING, error=message, finished_at=timezone.now())
        scheduler.advance_run(task_run.run_id)


def _fail_verdict(verdict_id: int) -> int | None:
    from django.utils import timezone

    from orchestration.models import Verdict

    Verdict.objects.filter(pk=verdict_id, state="running").update(
        state="failed", summary="internal error in Magic Box while checking (see the worker process's log)", decided_at=timezone.now())
    return Verdict.objects.filter(pk=verdict_id).values_list("run_id", flat=True).first()


def _fail_draft(draft_id: int) -> None:
    from django.utils import timezone

    from orchestration.models import PlanDraft

    PlanDraft.objects.filter(pk=draft_id, state="running").update(
        state="failed", error="internal error in Magic Box while drafting (see the worker process's log)", finished_at=timezone.now())


_engine: Engine | None = None


def get_engine() -> Engine:
    """The process's engine, created on first use (inside the running event loop)."""
    global _engine
    if _engine is None:
        _engine = Engine()
    return _engine

