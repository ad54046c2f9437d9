"""Hostile output through the whole path: a worker's bytes -> stored chunks -> the run page, its
websocket fragments, the on-demand earlier output and the download."""
from __future__ import annotations

import html
import json
import re

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.output import append_chunk
from orchestration.engine.scheduler import start_run
from orchestration.live import OUTPUT_TAIL, RunView, output_window
from orchestration.models import TaskRun
from tests.conftest import make_plan, py, run_to_end, streamed_body

HOSTILE = r'''
import sys
out = sys.stdout.buffer
out.write(b"FIRST LINE\n")
out.write(b"\x1b[31mred alert\x1b[0m and \x1b[1;32mbold green\x1b[0m\n")
out.write(b"\x1b]0;window title\x07\x1b[2J\x1b[10;5Hmoved cursor\x1b[K\n")
out.write(b"progress 10%\rprogress 50%\rprogress 100%\n")
out.write(b"bad utf-8 \xff\xfe\xc3 and NUL \x00 here\n")
out.write(b"<script>window.pwned = 1</script><img src=x onerror=alert(1)>\n")
out.write(b"x" * (10 * 1024 * 1024) + b"\n")
out.write(b"\x1b[34mLAST LINE\x1b[0m\n")
'''


def _plan():
    return make_plan(json.dumps({"name": "hostile", "parallel_execution": {"tasks": [
        {"id": "noisy", "worker": "shell", "command": py(HOSTILE)}]}}))


def visible_text(fragment: str) -> str:
    """What a browser shows of an HTML fragment (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_hostile_output_is_stored_whole_and_shown_safely_with_colours_and_its_tail(async_client, user):
    plan = await sync_to_async(_plan)()
    run = await sync_to_async(start_run)(plan)
    run = await run_to_end(run.pk)
    task_run = await TaskRun.objects.aget(run=run)
    assert task_run.state == "succeeded"
    await sync_to_async(async_client.force_login)(user)

    # The download is everything that was kept, escape sequences included.
    response = await async_client.get(f"/runs/{run.pk}/tasks/{task_run.pk}/output.txt")
    download = await streamed_body(response)
    text = download.decode()
    assert text.startswith("[Magic Box] attempt 1") and "\nFIRST LINE\n" in text and "\x1b[31mred alert" in text and "x" * (10 * 1024 * 1024) in text
    assert "bad utf-8 \ufffd\ufffd\ufffd and NUL \ufffd here" in text

    page = (await async_client.get(f"/runs/{run.pk}/")).content.decode()
    log = re.split(f'id="log-{task_run.pk}"[^>]*>', page, maxsplit=1)[1].split("</pre>", 1)[0]
    assert len(page) < 3 * OUTPUT_TAIL, "a 10 MB line does not make a 10 MB page"
    assert re.search(r'<span style="[^"]*color: #0000aa[^"]*">LAST LINE</span>', log), "ANSI colours are colours"
    assert "\x1b" not in page and "\x00" not in page and "\r" not in log
    assert "load earlier" in page and "of earlier output not shown here" in page

    # Load earlier output until the beginning: the windows together are the whole output.
    windows, url = [log], re.search(r'hx-get="([^"]*/output/earlier/[^"]*)"', page).group(1)
    while True:
        response = (await async_client.get(html.unescape(url))).content.decode()
        shown, _, rest = response.partition("</span><")
        windows.insert(0, shown)
        if "load earlier" not in rest:
            assert "All output is shown." in rest
            break
        url = rest.split('hx-get="', 1)[1].split('"', 1)[0]
    assert len(windows) >= 80  # 10 MB in 128 KiB windows
    shown = visible_text("".join(windows))
    assert shown.startswith("[Magic Box] attempt 1")
    assert "\nFIRST LINE\nred alert and bold green\nmoved cursor\nprogress 100%\n" in shown
    assert "progress 10%" not in shown and "window title" not in shown
    assert "<script>window.pwned = 1</script><img src=x onerror=alert(1)>" in shown  # as text
    assert "<script>window" not in "".join(windows) and "<img" not in "".join(windows)
    assert "\n" + "x" * (10 * 1024 * 1024) + "\nLAST LINE\n" in shown


@pytest.mark.django_db
def test_websocket_fragments_render_output_like_the_page(user):
    run = start_run(_plan())
    task_run = run.task_runs.get()
    append_chunk(task_run.pk, 1, "\x1b[32mgreen start\x1b[0m\n")
    view = RunView(run.pk)
    snapshot = "".join(view.snapshot() + view.select(task_run.pk))
    append_chunk(task_run.pk, 1, "step 1/3\rstep 3/3\n\x1b]8;;http://evil.example\x07link\x1b]8;;\x07 <b>bold?</b>\n")
    update = "".join(view.update())
    assert re.search(r'<span style="[^"]*color: #00aa00[^"]*">green start</span>', snapshot)
    assert "step 3/3" in update and "step 1/3" not in update
    assert "evil.example" not in update and "link &lt;b&gt;bold?&lt;/b&gt;" in update
    assert "\x1b" not in snapshot + update


@pytest.mark.django_db
def test_earlier_output_windows_cover_the_output_exactly_once(user):
    run = start_run(_plan())
    task_run = run.task_runs.get()
    lines = [f"line {i:06d} " + "y" * (i % 300) for i in range(20_000)]
    for start in range(0, len(lines), 1000):
        append_chunk(task_run.pk, 1, "\n".join(lines[start:start + 1000]) + "\n")
    seq = TaskRun.objects.get(pk=task_run.pk).output_seq
    windows, cursor = [], {"seq": seq}
    while cursor is not None:
        window = output_window(task_run.pk, cursor["seq"], cursor.get("chars"))
        windows.insert(0, window.text)
        assert len(window.text) <= OUTPUT_TAIL
        cursor = window.earlier
    assert "".join(windows) == "\n".join(lines) + "\n"
    assert all(w.startswith("line ") for w in windows), "windows start at line boundaries"


def test_a_bad_cursor_is_refused_clearly(logged_in_client, db):
    run = start_run(_plan())
    task_run = run.task_runs.get()
    response = logged_in_client.get(f"/runs/{run.pk}/tasks/{task_run.pk}/output/earlier/?seq=abc")
    assert response.status_code == 400 and b"seq" in response.content


@pytest.mark.django_db
def test_every_websocket_message_stays_under_daphnes_frame_limit_however_the_output_escapes(user):
    from orchestration.live import RunView

    run = start_run(_plan())
    task_run = run.task_runs.get()
    append_chunk(task_run.pk, 1, ('"' * 99 + "\n") * 1400)  # each " becomes &quot;
    append_chunk(task_run.pk, 1, "\x1b[1m\x1b[4m\x1b[31mX" * 9000 + "\n")  # each X becomes a styled span
    view = RunView(run.pk)
    snapshot = view.snapshot() + view.select(task_run.pk)
    append_chunk(task_run.pk, 1, "\x1b[1m\x1b[4m\x1b[31mY" * 6000 + "\n")
    update = view.update()
    assert all(len(m.encode()) < 1024 * 1024 for m in snapshot + update)
    assert "earlier output not shown here" in "".join(snapshot) and "Y</span>" in "".join(update)


@pytest.mark.django_db
def test_an_unterminated_title_sequence_hides_nothing_after_its_line(user):
    from orchestration.terminal import render

    shown = visible_text(render("before\n\x1b]0;building\nstep 1\nerror: it broke\n"))
    assert shown == "before\n\nstep 1\nerror: it broke\n"


def test_a_negative_cursor_is_refused(logged_in_client, db):
    run = start_run(_plan())
    task_run = run.task_runs.get()
    assert logged_in_client.get(f"/runs/{run.pk}/tasks/{task_run.pk}/output/earlier/?seq=1&chars=-5").status_code == 400
