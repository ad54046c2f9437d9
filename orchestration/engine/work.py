"""The one protocol of background work: claim → lease → finish → recover, for every kind.

Task runs, checks, plan drafts and integrations (models.LeasedWork) are all done this way:

- `claim`: one conditional UPDATE moves a queued row to running, owned by the claiming worker
  process (its engine's owner name, "host:pid:n") with a lease of MAGICBOX_LEASE_SECONDS;
- `holding`: the owner renews the leases of everything it still holds, and learns which rows
  it no longer holds (cancelled from the browser, or taken over after its lease ran out);
- `finish` / `fail`: the final write, made only while the owner still holds the claim, as the
  same attempt (a process may claim again, as a new attempt, what its own sweep recovered);
- `release`: a worker process that stops (SIGTERM) queues what it held again at once;
- `recover`: the sweep of any worker process queues again the work of a process that died,
  noticed when its lease runs out, or at once when it was a process of this host. Attempts
  lost this way do not count against a task's retries, but work that loses its worker
  MAX_WORKER_LOSSES times fails, naming the cause (it may be what kills its worker).

Delivery is at least once: an attempt whose worker died may have done part or all of its work
before the retry.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from orchestration.engine import orphans
from orchestration.models import LeasedWork

log = logging.getLogger(__name__)

MAX_WORKER_LOSSES = 3


def lease_end(now: datetime | None = None) -> datetime:
    """When a lease taken or renewed at `now` runs out (MAGICBOX_LEASE_SECONDS later)."""
    return (now or timezone.now()) + timedelta(seconds=settings.MAGICBOX_LEASE_SECONDS)


def installation() -> str:
    """A short name of this installation (its database), so that the processes of another Magic
    Box on the same host are never taken for ours (engine.orphans markers)."""
    db = settings.DATABASES["default"]
    identity = f"{db['ENGINE']}|{db.get('HOST', '')}|{db.get('PORT', '')}|{db['NAME']}"
    return hashlib.sha1(identity.encode()).hexdigest()[:10]


def _item(model: type[LeasedWork], pk: int) -> str:
    return f"{model.KIND.replace(' ', '-')}-{pk}"


def marker(work: LeasedWork) -> str:
    """The MAGICBOX_ATTEMPT value (engine.orphans) of `work`'s current attempt by its owner."""
    return orphans.marker(installation(), work.claimed_by, _item(type(work), work.pk), work.attempt)


def kill_orphans() -> int:
    """Kill this host's processes of attempts nobody holds any more: their worker process died,
    or their work ended, was cancelled or was taken over meanwhile (while their worker hung,
    say). Returns how many processes were killed."""
    kinds = {_item(model, 0).removesuffix("-0"): model for model in LeasedWork.__subclasses__()}
    killed = 0
    for value, pids in orphans.all_marked(installation()).items():
        _, owner, item, attempt = orphans.parse_marker(value) or ("", "", "", 0)
        kind, _, pk = item.rpartition("-")
        model = kinds.get(kind)
        held = (model is not None and pk.isdecimal() and not orphans.owner_gone(owner)
                and model.objects.filter(pk=int(pk), state=model.RUNNING, claimed_by=owner, attempt=attempt).exists())
        if not held:
            log.warning("killing %d leftover process(es) of %s (attempt %s, by %s): nobody holds that attempt any more",
                        len(pids), item, attempt, owner)
            killed += orphans.kill_marked(value, pids)
    return killed


@dataclass(frozen=True)
class Scope:
    """Which queued work a worker process may claim now.

    suspects: only work that lost its worker process before (worker_losses > 0), which a
    process takes up only when it has nothing else, and then alone, so that work that kills
    its worker takes no other work down with it; False: only the rest.
    run_id: only work of this run (`runplan` does its own run's work, nobody else's).
    """

    suspects: bool = False
    run_id: int | None = None
    idle: bool = False  # the claiming process runs nothing: it takes a suspect (alone) first, if any


def scope_conditions(scope: Scope, has_run: bool = True) -> dict[str, int] | None:
    """What `scope` lets a process claim, as lookups on a queued row ({"worker_losses__gt": 0}
    or {"worker_losses": 0}, and {"run_id": …}), for a kind whose rows belong to a run when
    `has_run`; None when it can claim nothing of that kind."""
    conditions = {"worker_losses__gt": 0} if scope.suspects else {"worker_losses": 0}
    if scope.run_id is not None:
        if not has_run:
            return None
        conditions["run_id"] = scope.run_id
    return conditions


def claimable(queryset: QuerySet, scope: Scope) -> QuerySet:
    """`queryset` (queued rows of one kind) narrowed to what `scope` lets a process claim
    (scope_conditions)."""
    conditions = scope_conditions(scope, any(f.name == "run" for f in queryset.model._meta.get_fields()))
    return queryset.none() if conditions is None else queryset.filter(**conditions)


def claim(work: LeasedWork, owner: str, **fields) -> bool:
    """Move queued `work` to running, owned by `owner`, leased, as a new attempt; False if
    another process claimed it first (or it left the queue). Extra fields are written with it."""
    # The attempt number as read with `work`: a row changed since is not claimed (and the new
    # number need not be read back).
    return work.transition(work.RUNNING, expect=work.QUEUED, held_attempt=work.attempt, claimed_by=owner,
                           lease_expires_at=lease_end(), attempt=work.attempt + 1, **fields)


def holding(model: type[LeasedWork], attempts: dict[int, int], owner: str, renew: bool) -> set[int]:
    """Of the rows of `model` in `attempts` ({pk: the attempt claimed}), those `owner` still
    holds (running, claimed by it, as that attempt); with `renew`, their leases are extended
    too. Two queries at most, whatever the number of rows."""
    rows = model.objects.filter(pk__in=list(attempts), state=model.RUNNING, claimed_by=owner).values_list("pk", "attempt")
    held = {pk for pk, attempt in rows if attempts[pk] == attempt}
    if renew and held:
        model.objects.filter(pk__in=held, state=model.RUNNING, claimed_by=owner).update(lease_expires_at=lease_end())
    return held


def finish(work: LeasedWork, owner: str, attempt: int, state: str, reason: str = "", **fields) -> bool:
    """The final write of an attempt: move running `work` to `state` (a terminal one, or back to
    queued for a retry) with `fields`, only while `owner` still holds it as `attempt`. False when
    it no longer does (cancelled, or recovered after its lease ran out): the other party decided."""
    return work.transition(state, reason, expect=work.RUNNING, owner=owner, held_attempt=attempt, lease_expires_at=None, **fields)


def fail(work: LeasedWork, owner: str, attempt: int, reason: str) -> bool:
    """Fail running `work` with `reason` (written where its kind shows failures), only while
    `owner` still holds it as `attempt`."""
    now = timezone.now()
    return work.transition(work.FAILED, reason, expect=work.RUNNING, owner=owner, held_attempt=attempt, lease_expires_at=None,
                           **work.failure_fields(reason, now))


def release(model: type[LeasedWork], ids: list[int], owner: str) -> list[LeasedWork]:
    """Queue again the rows of `ids` that `owner` holds, because its process is stopping.

    The attempt counts as an interruption, not against the work's retries. Returns the rows
    changed.
    """
    now = timezone.now()
    changed = []
    for work in model.objects.filter(pk__in=ids, state=model.RUNNING, claimed_by=owner):
        if work.transition(work.QUEUED, "interrupted: its worker process stopped; queued again", expect=work.RUNNING,
                           owner=owner, claimed_by="", lease_expires_at=None, interruptions=F("interruptions") + 1,
                           **work.requeue_fields(now)):
            changed.append(work)
    return changed


def recover(model: type[LeasedWork]) -> list[LeasedWork]:
    """Queue again, or fail after MAX_WORKER_LOSSES, the running rows of `model` whose worker
    process is gone: its lease ran out, or it was a process of this host that no longer exists
    (known at once, without waiting for the lease). The processes its attempt left running on
    this host are killed first, so they do not go on beside the retry.

    The one stalled-work query of the engine, the same for every kind. Returns the rows changed.
    """
    now = timezone.now()
    host = orphans.this_host()
    changed = []
    for work in model.objects.filter(state=model.RUNNING).filter(Q(lease_expires_at__lt=now) | Q(claimed_by__startswith=f"{host}:")):
        owner = work.claimed_by
        if orphans.owner_gone(owner):
            reason = f"worker lost: {owner} is no longer running"
        elif work.lease_expires_at is not None and work.lease_expires_at < now:
            reason = f"worker lost: {owner or 'its worker process'} stopped renewing the lease"
        else:
            continue  # alive on this host
        # On this host, what the lost attempt started must not go on beside the retry (its
        # worker died, or hangs: it stops its own processes when it learns its lease is gone).
        killed = orphans.kill_marked(marker(work)) if owner.startswith(f"{host}:") else 0
        if killed:
            reason += f"; {killed} leftover process(es) of the attempt killed"
        losses = work.worker_losses + 1
        if losses >= MAX_WORKER_LOSSES:
            reason = (f"{reason}; its worker process was lost {losses} times while working on this {work.KIND}, "
                      "so it is not tried again (does it kill or exhaust its worker process?)")
            done = work.transition(work.FAILED, reason, expect=work.RUNNING, owner=owner, lease_expires_at=None,
                                   worker_losses=losses, **work.failure_fields(reason, now))
        else:
            done = work.transition(work.QUEUED, f"{reason}; queued again", expect=work.RUNNING, owner=owner, claimed_by="",
                                   lease_expires_at=None, worker_losses=losses, **work.requeue_fields(now))
        if done:
            log.warning("%s %s: %s", work.KIND, work.pk, work.state_reason)
            changed.append(work)
    return changed
