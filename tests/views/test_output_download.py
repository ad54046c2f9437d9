"""A task's output downloads whole, in pieces of bounded size, paced by the client."""
from __future__ import annotations

import asyncio
import functools

import pytest
from asgiref.sync import sync_to_async

from magicbox_web.backpressure import Backpressure
from orchestration.engine.scheduler import start_run
from orchestration.models import OutputChunk, TaskRun
from orchestration.review.output import PIECE_BYTES, output_pieces
from tests.conftest import make_plan

PLAN = """
name: Loud
parallel_execution:
  tasks:
    - {id: loud, worker: shell, command: [python, -c, "print(1)"]}
"""
# Many-byte characters, so pieces cut inside characters somewhere.
LINE = "plain ascii, é ü, € ₿, 😀 🚀 — line\n"


def stored_output(rows: list[str]) -> TaskRun:
    """A task run whose stored output is `rows`, one OutputChunk each."""
    task_run = start_run(make_plan(PLAN)).task_runs.get()
    OutputChunk.objects.bulk_create([OutputChunk(task_run=task_run, seq=n + 1, text=t, newlines=t.count("\n")) for n, t in enumerate(rows)])
    TaskRun.objects.filter(pk=task_run.pk).update(output_seq=len(rows), output_bytes=sum(len(t.encode()) for t in rows))
    return task_run


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_large_output_downloads_whole_in_pieces_of_bounded_size(async_client, user):
    # Short rows (read together) and rows of several pieces (read a slice at a time).
    rows = [LINE * 10, LINE * (3 * PIECE_BYTES // len(LINE)), LINE * 3, *[LINE * 500] * 50, LINE * (PIECE_BYTES // len(LINE) + 1)]
    task_run = await sync_to_async(stored_output)(rows)
    await sync_to_async(async_client.force_login)(user)

    response = await async_client.get(f"/runs/{task_run.run_id}/tasks/{task_run.pk}/output.txt")

    assert response.status_code == 200 and response.streaming and response.is_async
    assert response["Content-Disposition"] == f'attachment; filename="run{task_run.run_id}-loud.txt"'
    pieces = [piece async for piece in response.streaming_content]
    body = b"".join(pieces)
    assert body == "".join(rows).encode()
    assert len(body) > 6 * PIECE_BYTES and len(pieces) >= 6
    assert max(map(len, pieces)) <= 4 * PIECE_BYTES  # a piece is at most PIECE_BYTES characters


@pytest.mark.django_db
def test_output_is_read_in_pieces_however_its_rows_were_stored():
    rows = ["", LINE * 40, "a" * 5000, LINE, "é" * 3001]
    task_run = stored_output(rows)
    pieces = list(output_pieces(task_run.pk, piece_bytes=1000))
    assert b"".join(pieces) == "".join(rows).encode()
    assert len(pieces) >= 12 and all(0 < len(piece) <= 4000 for piece in pieces)


class TwistedRequest:
    """The part of daphne's Twisted request that its `send` carries: producer registration."""

    def __init__(self) -> None:
        self.producer = None

    def registerProducer(self, producer, streaming: bool) -> None:  # noqa: N802 (Twisted's name)
        assert self.producer is None and streaming
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None


@pytest.mark.asyncio
async def test_a_streamed_body_waits_while_daphnes_socket_buffer_is_full():
    request, sent = TwistedRequest(), []

    async def handle_reply(request: TwistedRequest, message: dict) -> None:  # daphne's Server.handle_reply
        sent.append((message.get("body"), request.producer is not None))
        if message.get("body") == b"first":
            request.producer.pauseProducing()  # Twisted: the socket's write buffer is full

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for body in (b"first", b"second"):
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    served = asyncio.ensure_future(Backpressure(app)({"type": "http"}, None, functools.partial(handle_reply, request)))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(served), 0.3)
    assert [body for body, _ in sent] == [None, b"first"], "nothing more is produced while the buffer is full"

    request.producer.resumeProducing()  # Twisted: the buffer drained
    await asyncio.wait_for(served, 10)
    assert sent == [(None, False), (b"first", True), (b"second", True), (b"", False)]
    assert request.producer is None, "unregistered before the last message, as Twisted requires"
