"""Store live output as it arrives: buffered lines flushed a few times a second, and the message
an agent is writing shown to viewers at the same pace. One mechanism for the output of a task
run (stored in chunks, its run's viewers told through the channel layer: `task_output`) and of
a plan draft (its log kept in the draft's row, engine.drafts)."""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.db import transaction
from django.db.models import F

from orchestration.engine.db import db
from orchestration.engine.secrets import mask
from orchestration.engine.signals import anotify_run, asend_partial
from orchestration.models import OutputChunk, TaskRun

FLUSH_INTERVAL = 0.3  # seconds between flushes (and between viewer notifications)
PARTIAL_LIMIT = 4096  # characters of the message being written sent to viewers (its end)
TRUNCATION_MARKER = "\n[Magic Box: output truncated here: the task wrote more than {limit} bytes; later output was not kept]\n"


class OutputBuffer:
    """Collects the display lines of one attempt and hands them to its store at each flush.

    write(text): stores whole newline-terminated lines (secrets not yet masked), in order; a
    synchronous database write, run in the database thread (engine.db).
    show(text): async; shows viewers the end of the message being written ("" when none is).
    tell(): async, optional; tells viewers that more output was stored.
    Neither `show` nor `tell` is waited for, and at most one of each is under way at a time.
    limit: bytes kept in all, counting `stored_bytes` stored before; past it a truncation marker
    is stored once and further lines are dropped. None: no limit here (the store bounds what it
    keeps).
    """

    def __init__(self, write: Callable[[str], None], show: Callable[[str], Awaitable[None]],
                 tell: Callable[[], Awaitable[None]] | None = None, limit: int | None = None, stored_bytes: int = 0) -> None:
        self._write = write
        self._show = show
        self._tell = tell
        self.limit = limit
        self._stored = stored_bytes
        self._lines: list[str] = []
        self._pending = 0
        self._truncated = limit is not None and stored_bytes >= limit
        self._writing: asyncio.Task | None = None
        self._telling: asyncio.Future | None = None
        self._partial: Callable[[int], str] | None = None
        self._partial_sent = ""
        self._showing: asyncio.Future | None = None

    def follow_partial(self, source: Callable[[int], str] | None) -> None:
        """Show viewers, at each flush, the message being written: `source(limit)` returns its last
        `limit` characters (EventParser.partial_text). None stops (the next flush clears it)."""
        self._partial = source

    def add(self, lines: list[str]) -> None:
        """Queue display lines (without newlines) for the next flush."""
        for line in lines:
            if self._truncated:
                return
            size = len(line.encode("utf-8", "replace")) + 1
            if self.limit is not None and self._stored + self._pending + size > self.limit:
                self._lines.append(TRUNCATION_MARKER.format(limit=self.limit).strip("\n"))
                self._truncated = True
                return
            self._lines.append(line)
            self._pending += size

    async def flush(self) -> None:
        """Write the queued lines as one chunk and notify the run's viewers; then show them the
        message being written, when it changed (never waiting for the channel layer).

        The write is a task of its own: cancelling the caller (the periodic flusher is cancelled
        when the process ends) never drops lines already taken from the buffer, and the next
        flush waits for it, so chunks are stored in order.
        """
        if self._writing is not None and not self._writing.done():
            await asyncio.wait({self._writing})  # its failure was raised to its own caller
        if self._lines:
            await self._store()
        if self._showing is not None and not self._showing.done():
            return  # the channel layer is slow: the next flush sends what is current then
        partial = storable(self._partial(PARTIAL_LIMIT)) if self._partial is not None else ""
        if partial != self._partial_sent:  # after the lines: a completed message replaces its partial
            self._partial_sent = partial
            self._showing = asyncio.ensure_future(self._show(partial))

    async def _store(self) -> None:
        text = "\n".join(self._lines) + "\n"
        self._lines, size, self._pending = [], self._pending, 0
        self._stored += size
        self._writing = asyncio.ensure_future(db(self._write, text))
        await asyncio.shield(self._writing)
        # Viewers read the stored output: one word is enough.
        if self._tell is not None and (self._telling is None or self._telling.done()):
            self._telling = asyncio.ensure_future(self._tell())

    async def flush_forever(self) -> None:
        """Flush every FLUSH_INTERVAL seconds until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()


def task_output(task_run_id: int, run_id: int, attempt: int, stored_bytes: int) -> OutputBuffer:
    """The buffer of attempt `attempt` of a task run: its lines stored as chunks (append_chunk),
    at most MAGICBOX_OUTPUT_LIMIT bytes counting the `stored_bytes` of earlier attempts; the
    run's viewers told, and shown the message being written (engine.signals)."""
    return OutputBuffer(functools.partial(append_chunk, task_run_id, attempt), functools.partial(asend_partial, run_id, task_run_id),
                        functools.partial(anotify_run, run_id), settings.MAGICBOX_OUTPUT_LIMIT, stored_bytes)


def storable(text: str) -> str:
    """`text` ready to store: secret values masked (engine.secrets), and NUL shown as U+FFFD
    (PostgreSQL text, argv and environment values cannot carry NUL, and a result is handed to
    downstream tasks in all three)."""
    return mask(text).replace("\x00", "\ufffd")


def append_chunk(task_run_id: int, attempt: int, text: str) -> None:
    """Append `text` (whole lines, newline-terminated) to a task run's stored output, as written
    by attempt `attempt`; secrets masked. One transaction. Nothing is stored once a later
    attempt has started (a stale attempt, taken over, must not write between its lines)."""
    text = storable(text)
    with transaction.atomic():
        if not TaskRun.objects.filter(pk=task_run_id, attempt__lte=attempt).update(
                output_seq=F("output_seq") + 1, output_bytes=F("output_bytes") + len(text.encode("utf-8", "replace"))):
            return
        seq = TaskRun.objects.values_list("output_seq", flat=True).get(pk=task_run_id)
        OutputChunk.objects.create(task_run_id=task_run_id, seq=seq, attempt=attempt, text=text)
