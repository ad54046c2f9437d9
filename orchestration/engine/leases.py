"""The leases one worker process holds, renewed together, and told when they are lost.

Each piece of work the process claimed gets a `Lease`. One loop (`LeaseKeeper.keep`) checks
every CHECK_INTERVAL seconds which of them the process still holds (a cancel from the browser,
or a take-over after a stall, ends a hold) and renews them every third of the lease, with two
queries per kind of work however many it holds (engine.work.holding). A lost lease sets its
`lost` event; the work stops through `Lease.guard`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from django.conf import settings

from orchestration.engine import work
from orchestration.engine.db import db
from orchestration.models import LeasedWork

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_INTERVAL = 1.0  # seconds between checks that held work was not cancelled or taken over


class LeaseLost(Exception):
    """The work is no longer held by this process (cancelled, or recovered by another's sweep)."""


class Lease:
    """This process's hold on one claimed row of background work.

    model, pk: the row. owner: this process's owner name. attempt: the attempt number claimed.
    marker: the MAGICBOX_ATTEMPT value its processes carry (engine.orphans). lost: set once the
    row is no longer held. retry_in: set by the work when its end queued the row again for a
    retry: seconds until it may be claimed (the engine wakes then). hop: set by the engine; None,
    or a function returning an async context manager the work enters around its final write, which
    yields what that write may claim next in its own transaction (an executor.NextClaim, or None),
    and starts what was claimed when left.
    """

    def __init__(self, model: type[LeasedWork], pk: int, owner: str, attempt: int, marker: str) -> None:
        self.model, self.pk, self.owner, self.attempt, self.marker = model, pk, owner, attempt, marker
        self.lost = asyncio.Event()
        self.retry_in: float | None = None
        self.hop: Callable[[], AbstractAsyncContextManager] | None = None

    async def confirm(self) -> bool:
        """Ask the database whether this process still holds the row as this attempt (the
        keeper looks only every CHECK_INTERVAL seconds; a process that was frozen learns it here
        before it touches what may be its successor's). Sets `lost` when it does not."""
        if not self.lost.is_set() and self.pk not in await db(work.holding, self.model, {self.pk: self.attempt}, self.owner, False):
            self.lost.set()
        return not self.lost.is_set()

    async def check(self) -> None:
        """Raise LeaseLost unless this process still holds the row (see `confirm`)."""
        if not await self.confirm():
            raise LeaseLost()

    async def guard(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`; if the lease is lost first, cancel it (a running process's group
        is killed by its runner) and raise LeaseLost."""
        job = asyncio.ensure_future(awaitable)
        watch = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            raise
        finally:
            watch.cancel()
        if not job.done():
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            raise LeaseLost()
        return job.result()


class LeaseKeeper:
    """Every lease of one worker process (owner "host:pid:n")."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.leases: dict[tuple[type[LeasedWork], int], Lease] = {}

    def hold(self, model: type[LeasedWork], pk: int, attempt: int, marker: str) -> Lease:
        """Start keeping the lease of a row this process has just claimed. An earlier attempt
        of the same row still held here (its lease ran out and this process claimed the row
        again) has lost it."""
        earlier = self.leases.get((model, pk))
        if earlier is not None:
            earlier.lost.set()
        lease = Lease(model, pk, self.owner, attempt, marker)
        self.leases[(model, pk)] = lease
        return lease

    def drop(self, lease: Lease) -> None:
        """Stop keeping `lease` (its work has ended)."""
        if self.leases.get((lease.model, lease.pk)) is lease:
            del self.leases[(lease.model, lease.pk)]

    def held(self, model: type[LeasedWork]) -> list[int]:
        """Ids of the rows of `model` this process holds."""
        return [pk for (m, pk) in self.leases if m is model]

    async def check(self, renew: bool) -> None:
        """Find the leases lost since the last check, and renew the others (with `renew`)."""
        for model in {m for (m, _) in self.leases}:
            # The Lease objects as they are now: one taken while the database answers (the
            # same row claimed again for a retry) was not part of this question.
            asked = [lease for (m, _), lease in self.leases.items() if m is model]
            still = await db(work.holding, model, {lease.pk: lease.attempt for lease in asked}, self.owner, renew)
            for lease in asked:
                if lease.pk not in still:
                    lease.lost.set()

    async def keep(self) -> None:
        """Check every CHECK_INTERVAL seconds, renewing every third of the lease, while any lease is held."""
        renew_every = max(1, round(settings.MAGICBOX_LEASE_SECONDS / 3 / CHECK_INTERVAL))
        beat = 0
        while self.leases:
            await asyncio.sleep(CHECK_INTERVAL)
            beat += 1
            try:
                await self.check(renew=beat % renew_every == 0)
            except Exception:  # noqa: BLE001 — the database is away: try again next beat
                log.exception("could not check or renew this process's leases; trying again in %s s", CHECK_INTERVAL)
