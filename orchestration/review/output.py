"""A task run's whole stored output, read in pieces of bounded size (downloads, the run export).

Output is stored as OutputChunk rows of any size (one flush of a busy task can be many MB), so
rows are read a few at a time, and a row longer than a piece is read a slice at a time. On
SQLite, a row's size and slices come from incremental blob I/O (its bytes where they lie: SQL
functions would load the whole value, again for every slice); elsewhere from OCTET_LENGTH and
SUBSTR. Memory stays about one piece, however large the output or its rows.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from django.db import connection
from django.db.models import F, Func, IntegerField
from django.db.models.functions import Substr

from orchestration.models import OutputChunk

# Bytes of short rows read together, and of a long row's slice (characters, with SUBSTR). A
# slice reads the row up to it again, so slices should not be much smaller than this.
PIECE_BYTES = 1024 * 1024
ROWS_PER_QUERY = 200  # rows listed at once


def output_pieces(task_run_id: int, piece_bytes: int = PIECE_BYTES) -> Iterator[bytes]:
    """Yield the task run's stored output in order (every attempt's, as stored) as UTF-8, in
    pieces of at most 4 × `piece_bytes` bytes (exactly `piece_bytes` at most on SQLite). A piece
    may end inside a character; the next one goes on with it.

    Every query is short, so a slow reader holds no transaction open between pieces. Rows
    stored after the first query are included up to the moment the last query runs.
    """
    after = -1
    while True:
        rows = list(OutputChunk.objects.filter(task_run_id=task_run_id, seq__gt=after).order_by("seq")
                    .values_list("pk", "seq")[:ROWS_PER_QUERY])
        if not rows:
            return
        sizes = _sizes([pk for pk, _ in rows])
        batch: list[int] = []  # short rows, read together
        budget = 0
        for pk, _ in rows:
            size = sizes.get(pk, 0)
            if batch and budget + size > piece_bytes:
                yield from _joined(batch)
                batch, budget = [], 0
            if size <= piece_bytes:
                batch.append(pk)
                budget += size
            else:
                yield from _slices(pk, piece_bytes)
        yield from _joined(batch)
        after = rows[-1][1]


def _joined(pks: list[int]) -> Iterator[bytes]:
    """The rows' texts as one piece (nothing when they are empty)."""
    if not pks:
        return
    texts = dict(OutputChunk.objects.filter(pk__in=pks).values_list("pk", "text"))
    if joined := "".join(texts.get(pk, "") for pk in pks):
        yield joined.encode("utf-8", "replace")


def _sizes(pks: list[int]) -> dict[int, int]:
    """{pk: bytes of its text} (rows deleted meanwhile are left out)."""
    if connection.vendor != "sqlite":
        octets = Func(F("text"), function="OCTET_LENGTH", output_field=IntegerField())
        return dict(OutputChunk.objects.filter(pk__in=pks).values_list("pk", octets))
    sizes = {}
    for pk in pks:
        if (blob := _blob(pk)) is not None:
            with blob:
                sizes[pk] = len(blob)
    return sizes


def _slices(pk: int, piece_bytes: int) -> Iterator[bytes]:
    """One long row's text as UTF-8, a slice at a time: of `piece_bytes` bytes on SQLite, else
    of `piece_bytes` characters."""
    if connection.vendor != "sqlite":
        start = 1  # SQL SUBSTR counts from 1
        while text := OutputChunk.objects.filter(pk=pk).values_list(Substr(F("text"), start, piece_bytes), flat=True).first():
            yield text.encode("utf-8", "replace")
            start += piece_bytes
        return
    offset = 0
    while (blob := _blob(pk)) is not None:  # opened per slice: no read transaction stays open
        with blob:
            blob.seek(offset)
            piece = blob.read(piece_bytes)
        if not piece:
            return
        offset += len(piece)
        yield piece


def _blob(pk: int):
    """A read-only SQLite blob handle on the row's text, or None when the row is gone."""
    connection.ensure_connection()
    try:
        return connection.connection.blobopen(OutputChunk._meta.db_table, "text", pk, readonly=True)
    except sqlite3.OperationalError:
        return None
