"""Wake-ups through the channel layer: "look at the database", never the data itself.

Delivery is at most once and messages expire, so a failure to send is logged and ignored: the
periodic sweep of every worker process finds whatever a lost message would have announced.
"""
from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)


def run_group(run_id: int) -> str:
    """The channel-layer group of a run's viewers (derived from the primary key only)."""
    return f"run-{int(run_id)}"


_layer_failing = False  # whether the last send failed: an outage is logged once, not per message


def _sent() -> None:
    global _layer_failing
    if _layer_failing:
        log.warning("the channel layer takes messages again")
        _layer_failing = False


def _not_sent(what: str, error: Exception) -> None:
    global _layer_failing
    if not _layer_failing:
        log.warning("could not %s (%s: %s); until the channel layer is back, the sweep picks work up and "
                    "viewers catch up when they reconnect", what, type(error).__name__, error)
        _layer_failing = True


async def awake_engine() -> None:
    """Ask one background consumer to look for work (async)."""
    try:
        await get_channel_layer().send(settings.MAGICBOX_ENGINE_CHANNEL, {"type": "engine.wake"})
    except Exception as error:  # noqa: BLE001 — a lost wake-up is recovered by the sweep
        _not_sent("wake the engine", error)
    else:
        _sent()


async def anotify_run(run_id: int) -> None:
    """Tell the run's viewers that it changed (async)."""
    try:
        await get_channel_layer().group_send(run_group(run_id), {"type": "run.changed", "run_id": run_id})
    except Exception as error:  # noqa: BLE001 — viewers resync from the database
        _not_sent(f"tell the viewers of run {run_id}", error)
    else:
        _sent()


def wake_engine_on_commit() -> None:
    """Wake the engine once the current transaction commits (so the rows exist when it looks)."""
    transaction.on_commit(lambda: async_to_sync(awake_engine)())


def notify_run_on_commit(run_id: int) -> None:
    """Notify the run's viewers once the current transaction commits."""
    transaction.on_commit(lambda: async_to_sync(anotify_run)(run_id))
