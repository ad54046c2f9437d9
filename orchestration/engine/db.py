"""Database calls from the engine's event loop, surviving a lost database connection.

A worker process lives for days; its database may restart, fail over, or end its connection
(`pg_terminate_backend`) meanwhile. Every engine call to the database goes through `db`: the
synchronous function runs in the database thread (asgiref's sync_to_async), and when the
connection turns out broken (django.db.OperationalError / InterfaceError), that thread's
connection is closed and the call retried with backoff, so the next attempt connects afresh.
The functions called are transactions whose writes are conditional (engine.work), so running
one again after a failure is safe.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_DELAYS = (0.05, 0.2, 0.5, 1, 2, 3)  # seconds before the first retries; then RETRY_EVERY
RETRY_EVERY = 5.0


def _drop_connection() -> None:
    """Close this thread's connection, broken or not; Django opens a new one on the next query."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 — a broken connection may fail to close; it is dropped anyway
        connection.connection = None


async def db(function: Callable[..., T], *args, **kwargs) -> T:
    """Run `function(*args, **kwargs)` in the database thread and return its value.

    Raises what `function` raises, except a lost connection (OperationalError, InterfaceError):
    that is retried until the database answers again, after RETRY_DELAYS then every
    RETRY_EVERY seconds: a worker process outlives a database restart or outage, and what it
    was about to store (output, an end) is stored once it can be.
    """
    call = sync_to_async(function)
    failures = 0
    while True:
        try:
            result = await call(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            delay = RETRY_DELAYS[failures] if failures < len(RETRY_DELAYS) else RETRY_EVERY
            if failures % 12 == 0:  # the first time, then about once a minute
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                log.warning("database call %s failed (%s); reconnecting in %g s", getattr(function, "__qualname__", function),
                            first, delay)
            failures += 1
            await sync_to_async(_drop_connection)()
            await asyncio.sleep(delay)
            continue
        if failures:
            log.warning("the database answers again, after %d failed attempt(s)", failures)
        return result
