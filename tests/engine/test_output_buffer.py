"""Output is never dropped between the buffer and the database, even when a flush is cancelled."""
from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.output import task_output
from orchestration.engine.scheduler import start_run
from orchestration.models import TaskRun
from tests.conftest import make_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

PLAN = "name: p\nparallel_execution:\n  tasks:\n    - {id: t, worker: shell, command: [python, -V]}\n"


async def test_lines_taken_by_a_flush_that_is_cancelled_are_still_stored_in_order():
    run = await sync_to_async(start_run)(await sync_to_async(make_plan)(PLAN))
    task_run = await TaskRun.objects.aget(run=run)
    buffer = task_output(task_run.pk, run.pk, attempt=1, stored_bytes=0)
    # Keep the database thread busy, so the periodic flush's write waits in its queue...
    busy, release = threading.Event(), threading.Event()
    blocker = asyncio.ensure_future(sync_to_async(lambda: (busy.set(), release.wait(10)))())
    await asyncio.get_running_loop().run_in_executor(None, busy.wait, 10)
    buffer.add(["first line"])
    periodic = asyncio.ensure_future(buffer.flush())
    await asyncio.sleep(0)  # it has taken the line and queued its write
    periodic.cancel()  # ...when the process ends and the flusher is cancelled
    buffer.add(["last line"])
    final = asyncio.ensure_future(buffer.flush())
    release.set()
    await blocker
    await final
    assert await sync_to_async(lambda: TaskRun.objects.get(pk=task_run.pk).output_text())() == "first line\nlast line\n"


async def test_a_flood_of_output_is_stored_in_bounded_chunks_while_its_reader_waits_for_room():
    from orchestration.engine import output

    run = await sync_to_async(start_run)(await sync_to_async(make_plan)(PLAN))
    task_run = await TaskRun.objects.aget(run=run)
    buffer = task_output(task_run.pk, run.pk, attempt=1, stored_bytes=0)
    buffer.interval = 3600  # only the first line of a quiet spell, or a full buffer, is flushed at once
    flusher = asyncio.ensure_future(buffer.flush_forever())
    lines = [f"{n:06d} " + "x" * 93 for n in range(2 * output.PENDING_LIMIT // 100)]
    buffer.add(lines[:1])
    await asyncio.wait_for(buffer.pace(), 10)
    buffer.add(lines[1:])  # twice the bound: the reader must wait until a flush takes it
    waiting = asyncio.ensure_future(buffer.pace())
    await asyncio.sleep(0)
    assert not waiting.done()
    await asyncio.wait_for(waiting, 30)  # stored without waiting out the interval
    flusher.cancel()
    await buffer.flush()
    stored = await sync_to_async(lambda: TaskRun.objects.get(pk=task_run.pk).output_text())()
    assert stored == "".join(line + "\n" for line in lines)
    sizes = await sync_to_async(lambda: [len(t) for t in task_run.output_chunks.values_list("text", flat=True)])()
    assert max(sizes) <= output.CHUNK_CHARS and len(sizes) > 2


async def test_viewers_are_sent_the_stored_text_of_each_flush_with_its_chunks():
    from orchestration.engine.output import OutputBuffer

    told = []
    stored = iter([(0, 1, "one\n"), (1, 3, None), (3, 4, "four\n")])

    async def tell(after, seq, text):
        told.append((after, seq, text))

    async def show(text):
        pass

    buffer = OutputBuffer(lambda text: next(stored), show, tell, interval=0)
    for line in ("one", "two-and-three", "four"):
        buffer.add([line])
        await buffer.flush()
        await asyncio.sleep(0)
    while buffer._telling is not None and not buffer._telling.done():
        await asyncio.sleep(0)
    assert told[0] == (0, 1, "one\n")
    # Too long to carry (None): viewers read it stored; later text is sent again once contiguous.
    assert [t for t in told[1:] if t[2] is None] and told[-1][1] == 4


async def test_a_secret_written_token_by_token_is_never_shown_while_it_is_written(monkeypatch):
    from orchestration.engine.output import PARTIAL_LIMIT, OutputBuffer

    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    shown = []

    async def show(text):
        shown.append(text)

    message = []
    buffer = OutputBuffer(lambda text: None, show, interval=0)
    buffer.follow_partial(lambda limit: "".join(message)[-limit:])
    # The agent writes the key a few characters at a time, and later writes on until its
    # beginning scrolls out of the part of the message viewers are shown.
    tokens = ["the key is "] + [secret[i:i + 3] for i in range(0, len(secret), 3)] + ["x" * (PARTIAL_LIMIT - 30)] + ["y"] * 40
    for token in tokens:
        message.append(token)
        buffer.add([])
        await buffer.flush()
        await asyncio.sleep(0)
    assert shown and any("[secret OPENAI_API_KEY]" in text for text in shown)
    for text in shown:
        for size in range(4, len(secret)):
            assert secret[:size] not in text and secret[-size:] not in text, (size, text[:40], text[-40:])
