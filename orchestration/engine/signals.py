"""Wake-ups through the channel layer: "look at the database", never the data itself — but for
the text of an agent's message being written (`asend_partial`), which is never stored: a lost
one is replaced by the next, or by the complete message's stored lines; and a copy of output
just stored (`asend_output`), which a viewer that missed a message reads from the database.

Delivery is at most once and messages expire, so a failure to send is logged and ignored: the
periodic sweep of every worker process finds whatever a lost message would have announced.
A send never waits more than SEND_TIMEOUT seconds (a frozen or unreachable Redis must not hold
up the work), and a send asked for from the database thread of a process with an engine is
handed to the engine's event loop instead of being waited for there.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

SEND_TIMEOUT = 2.0  # seconds one send to the channel layer may take

_layer_failing = False  # whether the last send failed: an outage is logged once, not per message
_engine_loop: asyncio.AbstractEventLoop | None = None
_pending: set[asyncio.Future] = set()  # sends handed to the engine's loop, kept until done


def run_group(run_id: int) -> str:
    """The channel-layer group of a run's viewers (derived from the primary key only)."""
    return f"run-{int(run_id)}"


RUNS_GROUP = "runs"  # the channel-layer group of the runs list's viewers


def send_from_threads_on(loop: asyncio.AbstractEventLoop) -> None:
    """Make sends asked for in other threads (the engine's database thread) run on `loop`,
    the engine's event loop, without the asking thread waiting for them."""
    global _engine_loop
    _engine_loop = loop


def _sent() -> None:
    global _layer_failing
    if _layer_failing:
        log.warning("the channel layer takes messages again")
        _layer_failing = False


def _not_sent(what: str, error: BaseException) -> None:
    global _layer_failing
    if not _layer_failing:
        log.warning("could not %s (%s: %s); until the channel layer is back, the sweep picks work up and "
                    "viewers catch up when they reconnect", what, type(error).__name__, error or "no answer")
        _layer_failing = True


async def _send(what: str, send: Callable[[], Awaitable[None]]) -> None:
    try:
        await asyncio.wait_for(send(), SEND_TIMEOUT)
    except Exception as error:  # noqa: BLE001 — a lost message is recovered by the sweep
        _not_sent(what, error)
    else:
        _sent()


async def awake_engine() -> None:
    """Ask one background consumer to look for work (async; at most SEND_TIMEOUT seconds)."""
    await _send("wake the engine",
                lambda: get_channel_layer().send(settings.MAGICBOX_ENGINE_CHANNEL, {"type": "engine.wake"}))


async def anotify_run(run_id: int) -> None:
    """Tell the run's viewers, and the runs list's, that it changed (async; at most SEND_TIMEOUT
    seconds each)."""
    await _send(f"tell the viewers of run {run_id}",
                lambda: get_channel_layer().group_send(run_group(run_id), {"type": "run.changed", "run_id": run_id}))
    await _send("tell the viewers of the runs list",
                lambda: get_channel_layer().group_send(RUNS_GROUP, {"type": "runs.changed", "run_id": run_id}))


async def asend_partial(run_id: int, task_run_id: int, text: str) -> None:
    """Show the run's viewers `text`, the message task run `task_run_id` is writing now ("" when
    none is), below its stored output (async; at most SEND_TIMEOUT seconds)."""
    await _send(f"tell the viewers of run {run_id}", lambda: get_channel_layer().group_send(
        run_group(run_id), {"type": "run.partial", "run_id": run_id, "task_run_id": task_run_id, "text": text}))


async def asend_output(run_id: int, task_run_id: int, after: int, seq: int, text: str | None) -> None:
    """Tell the run's viewers that task run `task_run_id` stored its output chunks after seq
    `after` up to seq `seq`, whose text is `text` as stored (None: too long to carry, read it
    stored) (async; at most SEND_TIMEOUT seconds). The runs list is not told: output does not
    change it."""
    await _send(f"tell the viewers of run {run_id}", lambda: get_channel_layer().group_send(
        run_group(run_id), {"type": "run.output", "run_id": run_id, "task_run_id": task_run_id, "after": after, "seq": seq,
                              "text": text}))


def _deliver(make: Callable[[], Awaitable[None]]) -> None:
    """Run the send `make()` from synchronous code: on the engine's loop without waiting when
    called from another thread of an engine's process, else here (at most SEND_TIMEOUT s)."""
    loop = _engine_loop
    if loop is not None and loop.is_running():
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is not loop:
            future = asyncio.run_coroutine_threadsafe(make(), loop)
            _pending.add(future)
            future.add_done_callback(_pending.discard)
            return
    async def send() -> None:
        await make()

    async_to_sync(send)()


def wake_engine_on_commit() -> None:
    """Wake the engine once the current transaction commits (so the rows exist when it looks)."""
    transaction.on_commit(lambda: _deliver(awake_engine))


_notifying: set[int] = set()  # runs whose viewers a notification not yet sent will tell
NOTIFY_GATHER = 0.02  # seconds an engine's notification waits for more changes of its run to tell at once


def notify_run_on_commit(run_id: int) -> None:
    """Notify the run's viewers once the current transaction commits. Notifications of one run
    not yet sent are coalesced: the one waiting is sent after this commit, so viewers who look
    then see it. In an engine's process it waits NOTIFY_GATHER seconds for more (a task's end
    and the next one's start are one message, not two)."""
    def notify() -> None:
        if run_id in _notifying:
            return
        _notifying.add(run_id)

        async def send() -> None:
            if _engine_loop is not None:
                await asyncio.sleep(NOTIFY_GATHER)
            _notifying.discard(run_id)  # from here on, a later change needs a message of its own
            await anotify_run(run_id)

        try:
            _deliver(send)
        except BaseException:
            _notifying.discard(run_id)
            raise

    transaction.on_commit(notify)
