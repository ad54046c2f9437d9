"""Store live output as it arrives, and show it to viewers at once: buffered lines flushed on the
leading edge (the first line after a quiet spell at once, then at most every LIVE_INTERVAL
seconds for a task), and the message an agent is writing shown at the same pace. One mechanism for the
output of a task run (stored in bounded chunks, its run's viewers sent the stored text through
the channel layer: `task_output`) and of a plan draft (its log kept in the draft's row,
engine.drafts).

Memory is bounded by design: a reader of the process's output waits (`pace`) while more than
PENDING_LIMIT bytes wait for a flush, and a chunk row holds at most CHUNK_CHARS characters.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orchestration import direct_sql
from orchestration.direct_sql import Add
from orchestration.engine.db import db
from orchestration.engine.secrets import mask, mask_unfinished
from orchestration.engine.signals import asend_output, asend_partial
from orchestration.models import OutputChunk, TaskRun

FLUSH_INTERVAL = 0.3  # seconds between flushes at least, by default (a plan draft's log: its page polls)
LIVE_INTERVAL = 0.05  # the same for a task's output, also between messages to its viewers (live pages)
PARTIAL_LIMIT = 4096  # characters of the message being written sent to viewers (its end)
CHUNK_CHARS = 64 * 1024  # characters of one stored chunk at most (at most 256 KiB of UTF-8)
PENDING_LIMIT = 1024 * 1024  # bytes waiting for a flush before the reader of the output waits
TELL_LIMIT = 64 * 1024  # characters of new output carried in one message to viewers; more: they read it stored
TRUNCATION_MARKER = "\n[Magic Box: output truncated here: the task wrote more than {limit} bytes; later output was not kept]\n"

# (the seq before the chunks stored, the last seq stored, their text as stored; None when over TELL_LIMIT characters)
Stored = tuple[int, int, str | None]


class OutputBuffer:
    """Collects the display lines of one attempt and hands them to its store at each flush.

    write(text): stores whole newline-terminated lines (secrets not yet masked), in order; a
    synchronous database write, run in the database thread (engine.db). It may return what it
    stored (Stored), which `tell` is then given.
    show(text): async; shows viewers the end of the message being written ("" when none is).
    tell(after, seq, text): async, optional; tells viewers that chunks after seq `after` up to
    seq `seq` were stored, with their text (None when it was over TELL_LIMIT characters or not
    contiguous: viewers read it stored). At most one message every `interval` seconds.
    Neither `show` nor `tell` is waited for, and at most one of each is under way at a time.
    limit: bytes kept in all, counting `stored_bytes` stored before; past it a truncation marker
    is stored once and further lines are dropped. None: no limit here (the store bounds what it
    keeps). interval: seconds between flushes at least (flush_forever), and between messages.
    """

    def __init__(self, write: Callable[[str], Stored | None], show: Callable[[str], Awaitable[None]],
                 tell: Callable[[int, int, str | None], Awaitable[None]] | None = None, limit: int | None = None,
                 stored_bytes: int = 0, interval: float = FLUSH_INTERVAL) -> None:
        self._write = write
        self._show = show
        self._tell = tell
        self.limit = limit
        self.interval = interval
        self._stored = stored_bytes
        self._lines: list[str] = []
        self._pending = 0
        self._truncated = limit is not None and stored_bytes >= limit
        self._writing: asyncio.Task | None = None
        self._telling: asyncio.Task | None = None
        self._untold: tuple[int, int, list[str] | None] | None = None  # (after, seq, texts or None) not told yet
        self._untold_chars = 0
        self._partial: Callable[[int], str] | None = None
        self._partial_sent = ""
        self._showing: asyncio.Future | None = None
        self._wanted = asyncio.Event()  # something to flush: a line, or the message being written may have changed
        self._room = asyncio.Event()  # set while at most PENDING_LIMIT bytes wait
        self._room.set()
        self._full = asyncio.Event()  # the opposite

    def follow_partial(self, source: Callable[[int], str] | None) -> None:
        """Show viewers, at each flush, the message being written: `source(limit)` returns its last
        `limit` characters (EventParser.partial_text). None stops (the next flush clears it)."""
        self._partial = source
        self._wanted.set()

    def add(self, lines: list[str]) -> None:
        """Queue display lines (without newlines) for the next flush (also when `lines` is empty:
        the message being written may have changed)."""
        self._wanted.set()
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
        if self._pending > PENDING_LIMIT:
            self._room.clear()
            self._full.set()

    def stored_already(self, stored: Stored | None) -> None:
        """Count lines the caller stored itself (with `write`'s store: an attempt's first line,
        written with its claim) against the limit. Viewers are not told here: the claim's own
        notification of the run (run.changed) brings each viewer the output it has not seen.
        None: nothing was stored."""
        if stored is not None:
            self._stored += len((stored[2] or "").encode("utf-8", "replace"))

    async def pace(self) -> None:
        """Wait while more than PENDING_LIMIT bytes wait for a flush (the reader of the output
        calls it between reads: backpressure, so memory stays bounded however fast a task writes)."""
        await self._room.wait()

    async def flush(self) -> None:
        """Write the queued lines (in chunks of at most CHUNK_CHARS characters) and tell the run's
        viewers; then show them the message being written, when it changed (never waiting for the
        channel layer).

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
        partial = shown_while_written(self._partial(PARTIAL_LIMIT)) if self._partial is not None else ""
        if partial != self._partial_sent:  # after the lines: a completed message replaces its partial
            self._partial_sent = partial
            self._showing = asyncio.ensure_future(self._show(partial))

    async def _store(self) -> None:
        text = "\n".join(self._lines) + "\n"
        self._lines, size, self._pending = [], self._pending, 0
        self._room.set()
        self._full.clear()
        self._stored += size
        self._writing = asyncio.ensure_future(db(self._write, text))
        stored = await asyncio.shield(self._writing)
        if self._tell is not None and stored is not None:
            self._told_later(stored)

    def _told_later(self, stored: Stored) -> None:
        """Add what was stored to what viewers are told next; tell them now unless a message
        went out less than `interval` seconds ago (then once that time is up)."""
        after, seq, text = stored
        chars = len(text) if text is not None else TELL_LIMIT + 1
        if self._untold is None:
            self._untold, self._untold_chars = (after, seq, [text] if text is not None else None), chars
        else:
            first, last, texts = self._untold
            self._untold_chars += chars
            keep = texts is not None and text is not None and after == last  # else viewers read it stored
            self._untold = (first, seq, [*texts, text] if keep else None)
        if self._untold_chars > TELL_LIMIT:
            self._untold = (*self._untold[:2], None)
        if self._telling is None or self._telling.done():
            self._telling = asyncio.ensure_future(self._tell_paced())

    async def _tell_paced(self) -> None:
        while self._untold is not None:
            (after, seq, texts), self._untold, self._untold_chars = self._untold, None, 0
            await self._tell(after, seq, "".join(texts) if texts is not None else None)
            await asyncio.sleep(self.interval)

    async def flush_forever(self) -> None:
        """Flush whenever there is something to, at most every `interval` seconds (at once when
        the reader waits for room), until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.flush()
            if not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.interval)


def task_output(task_run_id: int, run_id: int, attempt: int, stored_bytes: int) -> OutputBuffer:
    """The buffer of attempt `attempt` of a task run: its lines stored as chunks (append_chunk),
    at most MAGICBOX_OUTPUT_LIMIT bytes counting the `stored_bytes` of earlier attempts; the
    run's viewers sent what was stored, and shown the message being written (engine.signals)."""
    return OutputBuffer(functools.partial(append_chunk, task_run_id, attempt), functools.partial(asend_partial, run_id, task_run_id),
                        functools.partial(asend_output, run_id, task_run_id), settings.MAGICBOX_OUTPUT_LIMIT, stored_bytes,
                        interval=LIVE_INTERVAL)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> str:
    """`text` with NUL and lone surrogates shown as U+FFFD: PostgreSQL text, argv and environment
    values cannot carry NUL, and no database driver encodes a lone surrogate (an agent CLI's
    JSON event may hold one as a "\\ud800" escape; a Python str holds no valid pair)."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", "\ufffd"))


def storable(text: str) -> str:
    """`text` ready to store: secret values masked (engine.secrets), NUL and lone surrogates
    shown as U+FFFD (_encodable; a result is handed to downstream tasks as argv and
    environment values too)."""
    return _encodable(mask(text))


def shown_while_written(text: str) -> str:
    """`text`, the end of a message still being written (at most PARTIAL_LIMIT characters), ready
    to show: as storable, and without what may be part of a secret value cut at either of its
    ends (secrets.mask_unfinished): a message written token by token never shows a secret piece by piece."""
    return _encodable(mask_unfinished(text, cut=len(text) >= PARTIAL_LIMIT))


def chunked(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """`text` in pieces of at most `size` characters, each cut after a newline where the piece
    has one (a longer line is cut where the size ends)."""
    pieces = []
    while len(text) > size:
        newline = text.rfind("\n", 0, size)
        cut = newline + 1 if newline > 0 else size
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text] if text else pieces


def append_chunk(task_run_id: int, attempt: int, text: str) -> Stored | None:
    """Append `text` (whole lines, newline-terminated) to a task run's stored output, as written
    by attempt `attempt`; secrets masked; in rows of at most CHUNK_CHARS characters. One
    transaction. Returns (the seq before, the last seq stored, the text as stored), or None when
    nothing was stored: once a later attempt has started (a stale attempt, taken over, must not
    write between its lines), or for empty text."""
    pieces = chunked(storable(text))
    if not pieces:
        return None
    size = sum(len(piece.encode("utf-8", "replace")) for piece in pieces)
    with transaction.atomic():  # its statements written directly (orchestration.direct_sql): every line goes through here
        if not direct_sql.update_where(TaskRun, {"pk": task_run_id, "attempt__lte": attempt},
                                       {"output_seq": Add(len(pieces)), "output_bytes": Add(size)}):
            return None
        seq = direct_sql.number(TaskRun, task_run_id, "output_seq")
        after = seq - len(pieces)
        now = timezone.now()
        direct_sql.insert(OutputChunk, [{"task_run_id": task_run_id, "seq": after + n, "attempt": attempt, "text": piece,
                                         "newlines": piece.count("\n"), "created_at": now} for n, piece in enumerate(pieces, 1)])
    return after, seq, "".join(pieces) if len(pieces) == 1 or sum(map(len, pieces)) <= TELL_LIMIT else None
