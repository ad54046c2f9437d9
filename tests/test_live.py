"""What a run page's viewer is sent: every output line of the task it shows exactly once."""
from __future__ import annotations

import pytest

from orchestration.engine.output import append_chunk
from orchestration.engine.scheduler import start_run
from orchestration.live import RunView, attach_output
from orchestration.models import TaskRun
from tests.conftest import make_plan

pytestmark = pytest.mark.django_db

PLAN = "name: p\nparallel_execution:\n  tasks:\n    - {id: t, worker: shell, command: [python, -V]}\n"


@pytest.fixture
def task_run():
    return start_run(make_plan(PLAN)).task_runs.get()


def test_output_written_after_a_task_run_was_loaded_is_left_for_the_next_update(task_run):
    append_chunk(task_run.pk, 1, "alpha-line\n")
    loaded = TaskRun.objects.get(pk=task_run.pk)
    append_chunk(task_run.pk, 1, "beta-line\n")  # arrives while the page is being rendered
    attach_output([loaded])
    assert loaded.shown_output == "alpha-line\n"


def test_a_viewer_gets_each_line_once_across_snapshot_and_updates(task_run):
    append_chunk(task_run.pk, 1, "alpha-line\n")
    view = RunView(task_run.run_id)
    snapshot = "".join(view.snapshot() + view.select(task_run.pk))
    append_chunk(task_run.pk, 1, "beta-line\n")
    first, second = "".join(view.update()), "".join(view.update())
    assert snapshot.count("alpha-line") == 1 and "beta-line" not in snapshot
    assert first.count("beta-line") == 1 and "alpha-line" not in first
    assert second == ""


def test_a_page_that_has_the_output_up_to_a_chunk_gets_only_what_came_after(task_run):
    append_chunk(task_run.pk, 1, "alpha-line\n")  # chunk 1: in the page as it was rendered
    append_chunk(task_run.pk, 1, "beta-line\n")  # chunk 2: stored before its socket connected
    view = RunView(task_run.run_id)
    view.snapshot()
    sent = "".join(view.select(task_run.pk, seq=1))
    assert sent.count("beta-line") == 1 and "alpha-line" not in sent
    assert f'id="summary-{task_run.pk}"' in sent  # its state may have changed meanwhile


def test_only_the_selected_tasks_output_is_sent_and_another_selection_brings_its_whole_log():
    run = start_run(make_plan(PLAN.replace("tasks:\n", "tasks:\n    - {id: other, worker: shell, command: [python, -V]}\n")))
    shown, other = run.task_runs.get(task_id="t"), run.task_runs.get(task_id="other")
    append_chunk(other.pk, 1, "other-early\n")
    view = RunView(run.pk)
    view.snapshot()
    view.select(shown.pk)
    append_chunk(shown.pk, 1, "shown-line\n")
    append_chunk(other.pk, 1, "other-late\n")
    update = "".join(view.update())
    assert "shown-line" in update and "other-" not in update
    switched = "".join(view.select(other.pk))
    assert "other-early" in switched and "other-late" in switched and "shown-line" not in switched
    assert view.select(10**9) == []  # not a task run of this run: nothing, and the selection stays
    assert view.selected == other.pk


FRAME_LIMIT = 1024 * 1024  # daphne refuses to send a websocket message larger than this


def test_a_huge_output_reaches_a_new_viewer_as_its_tail_in_messages_daphne_can_send(task_run):
    for i in range(20):
        append_chunk(task_run.pk, 1, f"<chunk {i}>" + "<" * 1_000_000 + "\n")  # escaping makes '<' 4x longer
    view = RunView(task_run.run_id)
    messages = view.snapshot() + view.select(task_run.pk)
    assert all(len(m.encode()) < FRAME_LIMIT for m in messages)
    page = "".join(messages)
    assert "download the whole output" in page and "&lt;chunk 0&gt;" not in page
    assert "&lt;" * 10_000 in page  # the end of the last chunk


def test_a_burst_of_output_is_sent_in_pieces_daphne_can_send(task_run):
    view = RunView(task_run.run_id)
    view.snapshot()
    view.select(task_run.pk)
    append_chunk(task_run.pk, 1, ("b" * 199 + "\n") * 6000 + "done\n")
    messages = view.update()
    assert messages and all(len(m.encode()) < FRAME_LIMIT for m in messages)
    assert "done" in messages[-1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_failed_row_gets_its_retry_button_when_the_run_ends_without_a_reload(user):
    import asyncio

    from asgiref.sync import sync_to_async

    from orchestration.engine.runtime import Engine

    gate_free = "import time; time.sleep(1)"
    plan = await sync_to_async(make_plan)("""
        name: ends later
        parallel_execution:
          tasks:
            - {id: flaky, worker: shell, command: [python, -c, "raise SystemExit(1)"]}
            - {id: slow, worker: shell, command: [python, -c, "%s"]}
        """ % gate_free)
    run = await sync_to_async(start_run)(plan)
    view = RunView(run.pk, user=user)  # an author and operator: may retry
    await sync_to_async(view.snapshot)()
    flaky = await TaskRun.objects.aget(run=run, task_id="flaky")
    await sync_to_async(view.select)(flaky.pk)
    engine = Engine()
    await engine.wake()
    failed = TaskRun.objects.filter(run=run, task_id="flaky", state="failed")
    while not await failed.aexists():
        await asyncio.sleep(0.05)
    while_running = "".join(await sync_to_async(view.update)())
    await asyncio.wait_for(engine.settle(), 60)
    await run.arefresh_from_db()
    assert run.is_finished, run.state
    after_end = "".join(await sync_to_async(view.update)())
    assert "flaky" in while_running and "Retry" not in while_running
    assert "Retry" in after_end and "flaky" in after_end


def test_output_told_by_the_engine_is_appended_once_and_a_viewer_missing_chunks_reads_them(task_run):
    view = RunView(task_run.run_id)
    view.snapshot()
    view.select(task_run.pk)
    after, seq, text = append_chunk(task_run.pk, 1, "alpha-line\n")
    sent = "".join(view.appended(task_run.pk, after, seq, text))
    assert sent.count("alpha-line") == 1 and f"beforeend:#log-{task_run.pk}" in sent
    assert view.appended(task_run.pk, after, seq, text) == []  # the same message again: nothing
    append_chunk(task_run.pk, 1, "beta-line\n")  # its message was lost
    after, seq, text = append_chunk(task_run.pk, 1, "gamma-line\n")
    assert view.appended(task_run.pk, after, seq, text) is None  # the viewer lacks beta: read from the database
    caught_up = "".join(view.catch_up(seq))
    assert caught_up.count("beta-line") == 1 and caught_up.count("gamma-line") == 1 and "alpha-line" not in caught_up
    assert view.update() == [] or "line" not in "".join(view.update())


def test_every_viewer_of_a_process_gets_output_rendered_once(task_run, monkeypatch):
    from orchestration import live

    rendered = []
    real = live.terminal.render
    monkeypatch.setattr(live.terminal, "render", lambda text: rendered.append(text) or real(text))
    views = [RunView(task_run.run_id) for _ in range(5)]
    for view in views:
        view.snapshot()
        view.select(task_run.pk)
    after, seq, text = append_chunk(task_run.pk, 1, "shared-line\n")
    rendered.clear()
    sent = ["".join(view.appended(task_run.pk, after, seq, text)) for view in views]
    assert all(message.count("shared-line") == 1 for message in sent)
    assert rendered == ["shared-line\n"]


def test_a_change_is_loaded_once_for_the_viewers_told_of_it_together(task_run):
    import time

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    views = [RunView(task_run.run_id) for _ in range(5)]
    for view in views:
        view.snapshot()
    TaskRun.objects.filter(pk=task_run.pk).update(state="running")
    told = time.monotonic()
    first = "".join(views[0].update(told))
    with CaptureQueriesContext(connection) as queries:
        others = ["".join(view.update(told)) for view in views[1:]]
    assert all('data-task="t"' in update and 'data-state="running"' in update for update in [first, *others])
    assert not [q for q in queries.captured_queries if "orchestration_taskrun" in q["sql"]]
    TaskRun.objects.filter(pk=task_run.pk).update(state="succeeded")  # a later change: loaded afresh
    assert 'data-state="succeeded"' in "".join(views[0].update(time.monotonic()))


def test_a_log_showing_only_its_tail_numbers_its_lines_as_in_the_whole_output(task_run):
    from orchestration.live import OUTPUT_TAIL, first_line, output_window

    # 3,000 numbered lines, stored over many chunks and bigger than the page's tail.
    lines = [f"line {n:05d} " + "x" * 80 for n in range(1, 3001)]
    for start in range(0, 3000, 250):
        append_chunk(task_run.pk, 1, "\n".join(lines[start:start + 250]) + "\n")
    seq = TaskRun.objects.get(pk=task_run.pk).output_seq
    window = output_window(task_run.pk, seq)
    assert window.earlier is not None and len(window.text) <= OUTPUT_TAIL  # only the tail is shown
    number = first_line(task_run.pk, window.earlier)
    shown_first = window.text.split("\n", 1)[0]
    assert shown_first == lines[number - 1], (number, shown_first[:20])  # #L<n> names the same line


def test_long_lines_appended_live_show_what_a_reload_shows(task_run):
    import html
    import re

    from orchestration import terminal
    from orchestration.live import APPEND_PIECE

    lines = ["".join(f"\r\x1b[32mProgress: {n:5d}%\x1b[0m" for n in range(1700)),  # a progress bar: one line of 45,000 characters
             "A" * (APPEND_PIECE - 2) + "\x1b[31mRED\x1b[0m tail",  # a colour sequence across an appended piece's end
             "\x1b[1;34m" + "b" * (APPEND_PIECE + 1000) + " still blue\x1b[0m"]  # a colour across pieces
    view = RunView(task_run.run_id)
    view.snapshot()
    view.select(task_run.pk)
    live = []
    for line in lines:
        after, seq, stored = append_chunk(task_run.pk, 1, line + "\n")
        live.append("".join(view.appended(task_run.pk, after, seq, stored)))
    appended = [re.findall(r'<div hx-swap-oob="beforeend:#log-\d+">(.*?)</div>', message, re.S) for message in live]
    shown = [html.unescape(re.sub(r"<[^>]+>", "", "".join(pieces))) for pieces in appended]
    assert shown == [terminal.plain(line + "\n") for line in lines]
    assert shown[0] == "Progress:  1699%\n"
    assert '<span style="color: #aa0000">RED</span>' in live[1]
    last = live[2].rsplit("beforeend", 1)[1]
    assert "still blue" in last and "font-weight: bold" in last


def test_a_log_followed_live_through_a_flood_stays_bounded_and_numbered_as_stored(task_run):
    import html
    import re

    from orchestration import terminal
    from orchestration.live import LIVE_LOG_LIMIT, OUTPUT_TAIL

    view = RunView(task_run.run_id)
    view.snapshot()
    log = {"text": "", "first": 1}
    fragment = re.compile(r'<pre class="log[^"]*" id="log-\d+" data-first-line="(\d+)"[^>]*>(.*?)</pre>'
                          r'|<div hx-swap-oob="beforeend:#log-\d+">(.*?)</div>', re.S)

    def show(messages):  # as htmx does: a log fragment replaces the log, an append adds to it
        for match in fragment.finditer("".join(messages)):
            first, replaced, appended = match.groups()
            if appended is not None:
                log["text"] += html.unescape(re.sub(r"<[^>]+>", "", appended))
            else:
                log["text"], log["first"] = html.unescape(re.sub(r"<[^>]+>", "", replaced)), int(first)

    show(view.select(task_run.pk))
    longest = 0
    for burst in range(60):  # 60 flushes of 20,000 characters: ten times what a log keeps
        text = "".join(f"line {burst:02d}-{n:04d} " + "x" * 50 + "\n" for n in range(320))
        after, seq, stored = append_chunk(task_run.pk, 1, text)
        messages = view.appended(task_run.pk, after, seq, stored)
        show(messages if messages is not None else view.catch_up(seq))
        longest = max(longest, len(log["text"]))
    whole = terminal.plain(TaskRun.objects.get(pk=task_run.pk).output_text())
    assert whole.endswith(log["text"]) and len(log["text"]) >= OUTPUT_TAIL // 2
    assert longest <= LIVE_LOG_LIMIT + OUTPUT_TAIL
    assert log["first"] == whole.count("\n") - log["text"].count("\n") + 1
