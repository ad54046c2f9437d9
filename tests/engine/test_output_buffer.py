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
