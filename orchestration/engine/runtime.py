"""The engine of one worker process: claims background work from the database and does it concurrently.

Channel messages and the periodic sweep only call `wake()`; the database decides what to do.
Every kind of background work (KINDS: task runs, checks, plan drafts, integrations, webhook deliveries) is claimed,
leased, finished and recovered the same way (engine.work, engine.leases); the loop and the
sweep below go over the kinds. Work runs as asyncio tasks, so the consumer that received a
wake-up returns at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings

from orchestration.engine import checks, drafts, executor, gates, homes, integration, scheduler, verification, webhooks, work
from orchestration.engine.db import db
from orchestration.engine.leases import Lease, LeaseKeeper
from orchestration.engine.signals import anotify_run, awake_engine, send_from_threads_on
from orchestration.models import Integration, LeasedWork, PlanDraft, TaskRun, Verdict, WebhookDelivery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkKind:
    """How the engine does one kind of background work.

    claim(owner, scope, limit): claim up to `limit` rows within the scope (engine.work.Scope) that
    may start now (engine.work.claim), in one transaction; returns them (a list); sync.
    execute(pk, lease): do the claimed work to its final write (engine.work.finish); async.
    advances_run: whether the row's run must be advanced after the work ended or was
    recovered (its end may let the run go on or finish).
    slots(): how many rows of this kind this process works on at once.
    note_loss(row): records, where the kind shows its progress, that an attempt was lost with
    its worker process (sync; None: its state change is record enough).
    """

    model: type[LeasedWork]
    claim: Callable[[str, work.Scope, int], list[LeasedWork]]
    execute: Callable[[int, Lease], Awaitable[None]]
    advances_run: bool
    slots: Callable[[], float] = lambda: float("inf")
    note_loss: Callable[[LeasedWork], None] | None = None


def one_at_a_time(claim_next: Callable[[str, work.Scope], LeasedWork | None]) -> Callable[[str, work.Scope, int], list[LeasedWork]]:
    """A WorkKind.claim from a function claiming one row or None, called until `limit` rows or
    None (for kinds claimed rarely; one transaction per row)."""
    def claim(owner: str, scope: work.Scope, limit: int) -> list[LeasedWork]:
        rows: list[LeasedWork] = []
        while len(rows) < limit and (row := claim_next(owner, scope)) is not None:
            rows.append(row)
            if scope.suspects:
                break
        return rows
    return claim


KINDS = (
    WorkKind(TaskRun, executor.claim_next, executor.execute, advances_run=True,
             slots=lambda: settings.MAGICBOX_WORKER_SLOTS or float("inf"), note_loss=executor.note_loss),
    WorkKind(Verdict, one_at_a_time(checks.claim_next), verification.execute, advances_run=True),
    WorkKind(PlanDraft, one_at_a_time(drafts.claim_next), drafts.execute, advances_run=False),
    WorkKind(Integration, one_at_a_time(integration.claim_next), integration.execute, advances_run=False),
    WorkKind(WebhookDelivery, one_at_a_time(webhooks.claim_next), webhooks.execute, advances_run=False),
)
BATCH = 64  # rows claimed at most in one transaction


def _after(kind: WorkKind, row: LeasedWork, lost: bool = False) -> int | None:
    """After `row` ended outside its own execute (recovered, re-queued, failed internally):
    note a loss (`lost`) and advance its run when its kind says so. Returns the run id whose
    viewers to tell, or None."""
    if lost and kind.note_loss is not None:
        kind.note_loss(row)
    run_id = getattr(row, "run_id", None)
    if kind.advances_run and run_id is not None:
        scheduler.advance_run(run_id)
    return run_id


class Engine:
    """Claims background work while limits allow and does it; one instance per process.

    Task runs: at most MAGICBOX_WORKER_SLOTS at once in this process (0: no limit of its own),
    within the global and per-worker limits scheduler.claim_next enforces over all processes.
    Work that lost its worker process before is taken only by a process with nothing else to
    do, and then alone (engine.work.Scope).

    owner: the name written into claimed rows ("host:pid:n"). run_id: do only this run's work
    (`runplan`); None: any work.
    """

    _count = 0

    def __init__(self, run_id: int | None = None) -> None:
        Engine._count += 1
        self.run_id = run_id
        self._alone: tuple[type[LeasedWork], int] | None = None  # the suspect work running here, alone
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{Engine._count}"
        self.leases = LeaseKeeper(self.owner)
        self.working: dict[tuple[type[LeasedWork], int], asyncio.Task] = {}
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task | None = None
        self._keeper: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._retry_timer: asyncio.Task | None = None
        self._retry_due = 0.0  # event-loop time the retry timer wakes at
        self._hopped: dict[tuple[type[LeasedWork], int], int] = {}  # work whose final write claimed: how many rows
        send_from_threads_on(asyncio.get_running_loop())

    @property
    def executing(self) -> dict[int, asyncio.Task]:
        """The task runs this process is executing: {task run id: its asyncio task}."""
        return {pk: task for (model, pk), task in self.working.items() if model is TaskRun}

    def wake_soon(self) -> None:
        """Schedule a wake-up without waiting for it (for message handlers that must return).

        It claims what may start, without advancing every unfinished run first: whoever sends
        a wake-up has advanced what it changed (start_run, cancel_task, a task's end), and the
        periodic sweep advances them all.
        """
        self._spawn(self._wake_logged(advance_runs=False))

    async def _wake_logged(self, advance_runs: bool = True) -> None:
        try:
            await self.wake(advance_runs)
        except Exception:
            log.exception("engine wake-up failed; the next sweep tries again")

    async def wake(self, advance_runs: bool = True) -> None:
        """Advance every unfinished run (unless told it was just done), then claim and start
        whatever may start now, of every kind."""
        async with self._lock:
            if advance_runs:
                for run_id in await db(scheduler.active_run_ids):
                    try:
                        await db(scheduler.advance_run, run_id)
                    except Exception:  # noqa: BLE001 — one run's fault must not stop the others'
                        log.exception("run %s could not be advanced; the next sweep tries again", run_id)
            # Asked before claiming: a retry that comes due while this wake claims is not
            # missed by both (too early for the claim, no longer "later" for the timer).
            delay = await db(scheduler.next_retry_in)
            # Work that lost its worker process before runs alone (nothing joins it here), and
            # an idle process takes such work before anything else.
            if self._alone not in self.working:
                if self.working or not await self._claim_a_suspect():
                    await self._claim(work.Scope(run_id=self.run_id))
            if delay is not None:
                self._wake_at(delay)

    async def _claim(self, scope: work.Scope, kinds: tuple[WorkKind, ...] = KINDS) -> int:
        """Claim work of `kinds` within `scope` while this process has slots; returns how many
        rows it claimed. Several rows are claimed in one transaction (a fan-out's tasks start
        together)."""
        total = 0
        for kind in kinds:
            claimed = 0
            while (free := kind.slots() - self._count_of(kind)) > 0:
                want = int(min(free, BATCH))
                rows = await db(kind.claim, self.owner, scope, want)
                for row in rows:
                    self._start(kind, row)
                claimed += len(rows)
                if scope.suspects or any(row.worker_losses for row in rows):
                    return total + claimed  # a suspect claimed by an idle process runs alone
                if len(rows) < want:
                    break
            else:
                if claimed:
                    # This process is full but took work, so more may be waiting: pass the
                    # wake-up on to another process (one that takes nothing passes nothing on),
                    # without waiting for the channel layer.
                    self._spawn(awake_engine())
            total += claimed
        return total

    async def _claim_a_suspect(self) -> bool:
        """Claim one piece of work that lost its worker process before, to run it alone."""
        for kind in KINDS:
            if await self._claim(work.Scope(suspects=True, run_id=self.run_id), (kind,)):
                return True
        return False

    def _count_of(self, kind: WorkKind) -> int:
        return sum(1 for (model, _) in self.working if model is kind.model)

    def _start(self, kind: WorkKind, row: LeasedWork) -> None:
        if row.worker_losses:  # it lost its worker process before: it runs alone here
            self._alone = (kind.model, row.pk)
        lease = self.leases.hold(kind.model, row.pk, row.attempt, work.marker(row))
        if kind.model is TaskRun:
            lease.hop = functools.partial(self._hop, kind, (kind.model, row.pk))
        # `working` counts the slot until the work's final write; the task itself, which then
        # claims what that write made claimable, stays in the background set until it ends.
        self.working[(kind.model, row.pk)] = self._spawn(self._do(kind, row, lease))
        if self._keeper is None or self._keeper.done():
            self._keeper = self._spawn(self.leases.keep())

    async def _do(self, kind: WorkKind, row: LeasedWork, lease: Lease) -> None:
        try:
            await kind.execute(row.pk, lease)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s %s: Magic Box failed while working on it", kind.model.KIND, row.pk)
            reason = f"internal error in Magic Box while working on this {kind.model.KIND} (see the worker process's log)"
            if await db(work.fail, row, self.owner, lease.attempt, reason):
                await self._tell(await db(_after, kind, row))
        finally:
            self.leases.drop(lease)
            if self.working.get((kind.model, row.pk)) is asyncio.current_task():  # not a later attempt's
                del self.working[(kind.model, row.pk)]
        # A slot is free and downstream work may be queued (recording the end advanced the
        # run): take it here, without a round trip through the channel layer.
        if lease.retry_in is not None:
            self._wake_at(lease.retry_in)
        hopped = self._hopped.pop((kind.model, row.pk), None)
        if kind.model is TaskRun:
            if not hopped:  # its final write claimed nothing (or it had none): claim here
                await self._refill(kind)
        else:
            await self.wake(advance_runs=False)
            self._spawn(awake_engine())

    @contextlib.asynccontextmanager
    async def _hop(self, kind: WorkKind, key: tuple[type[LeasedWork], int]) -> AsyncIterator[executor.NextClaim | None]:
        """Around the final write of the task run `key` (Lease.hop): what that write claims in
        its own transaction, the slot it frees counted free (its downstream tasks, or what
        waited for a slot, start without another call to the database); the rows claimed are
        started when the write is done. Yields None when nothing may be claimed here (suspect
        work runs here alone). Holds the engine's claim lock throughout, as _claim's callers do."""
        async with self._lock:
            if self._alone in self.working and self._alone != key:
                yield None
                return
            free = kind.slots() - (self._count_of(kind) - (key in self.working))
            if free <= 0:
                yield None
                return
            want = int(min(free, BATCH))
            claim = executor.NextClaim(self.owner, work.Scope(run_id=self.run_id, idle=not (self.working.keys() - {key})), want)
            yield claim
            for row in claim.rows:
                self._start(kind, row)
            self._hopped[key] = len(claim.rows)
            if claim.rows and len(claim.rows) >= want and kind.slots() - (self._count_of(kind) - (key in self.working)) <= 0:
                self._spawn(awake_engine())  # full but took work: more may be waiting (as _claim)

    async def _refill(self, kind: WorkKind) -> None:
        """After a row of `kind` ended here: claim what may start now, of that kind first (what
        its end made claimable: its downstream tasks, or the task the slot was waiting for);
        when there is none, of every kind (the run's checks, once its last task ended; other
        kinds are announced by wake-ups too). A process whose scope is one run passes the freed
        slot on when it takes nothing itself."""
        async with self._lock:
            if self._alone in self.working:
                return
            scope = work.Scope(run_id=self.run_id, idle=not self.working)
            claimed = await self._claim(scope, (kind,))
            if not claimed and self._alone not in self.working:
                claimed = await self._claim(work.Scope(run_id=self.run_id), tuple(k for k in KINDS if k is not kind))
        if not claimed and self.run_id is not None:
            self._spawn(awake_engine())

    @staticmethod
    async def _tell(run_id: int | None) -> None:
        if run_id is not None:
            await anotify_run(run_id)

    def _spawn(self, coroutine) -> asyncio.Task:
        """Run `coroutine` in the background; the set keeps it alive (the loop holds only weak
        references to tasks) and lets `settle` and `stop` find it."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def settle(self) -> None:
        """Wait until nothing this engine started is still running (work up to the claims made
        after it, wake-ups, timers, the removal of ended runs' HOMEs)."""
        while pending := [*self.working.values(), *(t for t in self._background if t is not self._keeper)]:
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.to_thread(homes.wait_discarded)

    def _wake_at(self, delay: float) -> None:
        """Wake in `delay` seconds (a retry's backoff ends), unless a timer set already wakes sooner."""
        due = asyncio.get_running_loop().time() + delay
        if self._retry_timer is not None and not self._retry_timer.done():
            if self._retry_due <= due:
                return
            self._retry_timer.cancel()
        self._retry_due = due
        self._retry_timer = self._spawn(self._wake_after(delay))

    async def _wake_after(self, delay: float) -> None:
        """Wake when a retry's backoff is over (the sweep would find it too, a little later)."""
        await asyncio.sleep(delay + 0.01)
        self._retry_timer = None
        await self._wake_logged()

    async def sweep(self) -> None:
        """Recover the work of every kind whose worker process is gone, kill what attempts
        nobody holds left running on this host, reject the approval gates that waited past their
        timeout, then wake."""
        for kind in KINDS:
            for row in await db(work.recover, kind.model):
                await self._tell(await db(_after, kind, row, True))
        await db(work.kill_orphans)
        await db(gates.expire)
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
        """Cancel the sweep and all work in progress, then queue that work again.

        Cancelling work kills its processes' groups (SIGTERM, then SIGKILL). The interrupted
        attempts do not count against retries; any worker process may take them up.
        """
        held = {kind: self.leases.held(kind.model) for kind in KINDS}
        # Each once: a second cancel would interrupt a process's kill (workers.process) midway.
        tasks = [t for t in {self._sweeper: None, **dict.fromkeys(self._background)} if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        requeued = 0
        for kind, ids in held.items():
            if ids:
                for row in await db(work.release, kind.model, ids, self.owner):
                    log.info("%s %s (%s) queued again: this worker process is stopping", kind.model.KIND, row.pk, row)
                    requeued += 1
                    await self._tell(await db(_after, kind, row))
        if requeued:
            await awake_engine()


_engine: Engine | None = None


def get_engine() -> Engine:
    """The process's engine, created on first use (inside the running event loop)."""
    global _engine
    if _engine is None:
        _engine = Engine()
    return _engine
