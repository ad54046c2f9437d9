"""The run page's websocket: who may join, the snapshot on connect, and live updates."""
from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from magicbox_web.asgi import application
from orchestration.engine.scheduler import start_run
from tests.conftest import make_plan, run_to_end
from tests.fakes.model_server import Text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

PLAN = json.dumps({
    "name": "live",
    "parallel_execution": {"tasks": [
        {"id": "hello", "worker": "shell", "command": ["python", "-c", "print('line one'); print('<b>line two</b>')"]},
    ]},
})


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def socket(run_id: int, cookie: bytes | None, origin: bytes = b"http://testserver") -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, f"/ws/runs/{run_id}/", headers=headers)


async def new_run():
    plan = await sync_to_async(make_plan)(PLAN)
    return await sync_to_async(start_run)(plan)


async def show(ws: WebsocketCommunicator, run, task_id: str, **fields) -> None:
    """Say which task the page shows, as static/magicbox/run.js does on connecting."""
    task_run = await run.task_runs.aget(task_id=task_id)
    await ws.send_to(text_data=json.dumps({"select": task_run.pk, **fields}))


async def viewers_of(run, cookie: bytes, count: int, task_id: str = "hello") -> list[WebsocketCommunicator]:
    """`count` viewers of the run's page, connected, each past its snapshot and shown `task_id`."""
    viewers = [socket(run.pk, cookie) for _ in range(count)]
    for ws in viewers:
        assert (await ws.connect())[0]
        await ws.receive_from(timeout=5)  # the snapshot
        await show(ws, run, task_id)
        assert 'id="task-detail"' in await ws.receive_from(timeout=5)
    return viewers


async def test_a_viewer_gets_a_snapshot_then_state_changes_and_output_lines(user):
    run = await new_run()
    ws = socket(run.pk, await sync_to_async(session_cookie)(user))
    connected, _ = await ws.connect()
    assert connected
    snapshot = await ws.receive_from(timeout=5)
    assert 'id="run-header"' in snapshot and 'data-task="hello"' in snapshot and "Queued" in snapshot
    await show(ws, run, "hello")
    assert 'id="task-detail"' in await ws.receive_from(timeout=5)

    await run_to_end(run.pk)
    received = ""
    while "line two" not in received or 'data-state="succeeded"' not in received:
        received += await ws.receive_from(timeout=5)
    assert "line one" in received
    assert "&lt;b&gt;line two&lt;/b&gt;" in received, "output must be escaped"
    assert 'hx-swap-oob="beforeend:#log-' in received
    await ws.disconnect()


async def test_a_reconnecting_viewer_gets_the_whole_stored_output(user):
    run = await new_run()
    await run_to_end(run.pk)
    ws = socket(run.pk, await sync_to_async(session_cookie)(user))
    assert (await ws.connect())[0]
    snapshot = await ws.receive_from(timeout=5)
    assert 'data-state="succeeded"' in snapshot
    await show(ws, run, "hello")
    assert "line one" in await ws.receive_from(timeout=5)
    await ws.disconnect()


async def test_a_message_that_is_not_a_selection_is_ignored_and_the_socket_stays(user):
    run = await new_run()
    ws = socket(run.pk, await sync_to_async(session_cookie)(user))
    assert (await ws.connect())[0]
    await ws.receive_from(timeout=5)
    for junk in ("not json", "[]", '{"select": "x"}', '{"select": 1, "seq": "y"}', '{"other": 1}', '{"select": 1e999}',
                 '{"select": 1, "seq": 1e999}', "[" * 100_000 + "]" * 100_000):
        await ws.send_to(text_data=junk)
    await show(ws, run, "hello")
    assert 'id="task-detail"' in await ws.receive_from(timeout=5)
    await ws.disconnect()


async def test_an_anonymous_viewer_is_refused():
    run = await new_run()
    connected, _ = await socket(run.pk, None).connect()
    assert not connected


@pytest.mark.parametrize("groups, allowed", [
    (("Viewers",), True), (("Authors",), True), (("Operators",), True), ((), False),
])
async def test_each_role_may_watch_a_run_and_a_user_in_no_role_may_not(django_user_model, groups, allowed):
    from tests.conftest import user_in

    run = await new_run()
    member = await sync_to_async(user_in)(django_user_model, "member", *groups)
    ws = socket(run.pk, await sync_to_async(session_cookie)(member))
    connected, _ = await ws.connect()
    assert connected is allowed
    if connected:
        assert "hello" in await ws.receive_from(timeout=5)
        await ws.disconnect()


async def test_a_viewer_of_a_run_that_does_not_exist_is_refused(user):
    connected, _ = await socket(999_999, await sync_to_async(session_cookie)(user)).connect()
    assert not connected


async def test_a_socket_from_a_foreign_origin_is_refused(user):
    run = await new_run()
    ws = socket(run.pk, await sync_to_async(session_cookie)(user), origin=b"http://evil.example")
    connected, _ = await ws.connect()
    assert not connected


async def test_a_socket_from_another_port_of_the_same_host_is_refused(user):
    run = await new_run()
    ws = socket(run.pk, await sync_to_async(session_cookie)(user), origin=b"http://testserver:9999")
    connected, _ = await ws.connect()
    assert not connected


async def test_a_socket_to_an_unknown_path_is_refused_not_an_error(user):
    ws = WebsocketCommunicator(application, "/ws/runs/abc/", headers=[(b"origin", b"http://testserver"), (b"host", b"testserver")])
    connected, _ = await ws.connect()
    assert not connected


async def test_an_operators_live_fragments_keep_the_cancel_button_with_a_working_csrf_token(django_user_model):
    import re

    from orchestration.models import Run
    from tests.conftest import user_in

    run = await new_run()
    operator = await sync_to_async(user_in)(django_user_model, "olga", "Operators")
    viewer = await sync_to_async(user_in)(django_user_model, "vic", "Viewers")
    browser = Client(enforce_csrf_checks=True)
    await sync_to_async(browser.force_login)(operator)
    await sync_to_async(browser.get)(f"/runs/{run.pk}/")  # sets the CSRF cookie, as a page visit does
    cookie = f"sessionid={browser.cookies['sessionid'].value}; csrftoken={browser.cookies['csrftoken'].value}".encode()

    ws = socket(run.pk, cookie)
    assert (await ws.connect())[0]
    snapshot = await ws.receive_from(timeout=5)
    await show(ws, run, "hello")
    detail = await ws.receive_from(timeout=5)
    await ws.disconnect()
    assert f'action="/runs/{run.pk}/cancel/"' in snapshot
    assert f'/tasks/{(await run.task_runs.aget()).pk}/cancel/"' in detail
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', snapshot).group(1)
    response = await sync_to_async(browser.post)(f"/runs/{run.pk}/cancel/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and (await Run.objects.aget(pk=run.pk)).state == "cancelled"

    watcher = socket(run.pk, await sync_to_async(session_cookie)(viewer))
    assert (await watcher.connect())[0]
    assert "cancel/" not in await watcher.receive_from(timeout=5)
    await show(watcher, run, "hello")
    assert "cancel/" not in await watcher.receive_from(timeout=5)
    await watcher.disconnect()


@pytest.mark.cli
async def test_an_agents_answer_reaches_a_viewer_as_it_is_written_and_is_stored_once(user, model):
    import re

    from orchestration.engine.runtime import Engine
    from orchestration.models import TaskRun

    answer = "The migration plan: first copy the table, then switch the readers, then drop the old column."
    model.reply(Text(answer, pieces=6, delay=0.5))
    plan = await sync_to_async(make_plan)(json.dumps({"name": "stream", "parallel_execution": {"tasks": [
        {"id": "think", "worker": "claude", "prompt": "Plan the migration."}]}}))
    run = await sync_to_async(start_run)(plan)
    ws = socket(run.pk, await sync_to_async(session_cookie)(user))
    assert (await ws.connect())[0]
    await ws.receive_from(timeout=5)  # the snapshot
    await show(ws, run, "think")
    await ws.receive_from(timeout=5)  # its detail
    engine = Engine()
    await engine.wake()
    partials = []  # the texts the viewer was shown of the answer being written
    received = ""
    while 'data-state="succeeded"' not in received or (partials and partials[-1] != ""):  # shown, then cleared
        message = await ws.receive_from(timeout=60)
        received += message
        partials += re.findall(r'<pre class="log-partial" id="partial-\d+" hx-swap-oob="true">(.*?)</pre>', message, re.S)
    await asyncio.wait_for(engine.settle(), 60)
    growing = [p for p in partials if p and answer.startswith(p) and p != answer]
    assert growing, f"no part of the answer was shown before it was complete; shown: {partials}"
    task_run = await sync_to_async(TaskRun.objects.get)(run=run)
    assert (await sync_to_async(task_run.output_text)()).count(answer) == 1
    await ws.disconnect()


async def test_the_viewers_of_a_run_in_one_process_share_one_group_membership_and_each_gets_its_output(user):
    from channels.layers import get_channel_layer

    from orchestration.engine.output import append_chunk
    from orchestration.engine.signals import asend_output, run_group

    run = await new_run()
    cookie = await sync_to_async(session_cookie)(user)
    viewers = await viewers_of(run, cookie, 3)
    layer = get_channel_layer()
    assert len(layer.groups[run_group(run.pk)]) == 1
    task_run = await run.task_runs.aget(task_id="hello")
    after, seq, text = await sync_to_async(append_chunk)(task_run.pk, 1, "told-line\n")
    await asend_output(run.pk, task_run.pk, after, seq, text)
    await asend_output(run.pk, task_run.pk, after, seq, text)  # delivered twice: shown once
    for ws in viewers:
        assert (await ws.receive_from(timeout=5)).count("told-line") == 1
        assert await ws.receive_nothing(timeout=0.2)
    for ws in viewers:
        await ws.disconnect()
    assert not layer.groups.get(run_group(run.pk))


async def test_output_stored_while_a_viewer_selects_its_task_reaches_that_viewer_once(user, monkeypatch):
    import threading

    from asgiref.sync import async_to_sync

    from orchestration.consumers import RunConsumer
    from orchestration.engine.output import append_chunk
    from orchestration.engine.signals import asend_output
    from orchestration.live import RunView

    run = await new_run()
    task_run = await run.task_runs.aget(task_id="hello")
    told = threading.Event()
    real_output, real_load = RunConsumer.run_output, RunView._load

    async def run_output(self, event):
        told.set()
        await real_output(self, event)

    def load(self):  # the task writes a line just after the selection read how much output it has
        loaded = real_load(self)
        if not told.is_set():
            after, seq, text = append_chunk(task_run.pk, 1, "raced-line\n")
            async_to_sync(asend_output)(run.pk, task_run.pk, after, seq, text)
            told.wait(5)  # the viewer has been handed the message
        return loaded

    monkeypatch.setattr(RunConsumer, "run_output", run_output)
    monkeypatch.setattr(RunView, "_load", load)
    ws = socket(run.pk, await sync_to_async(session_cookie)(user))
    assert (await ws.connect())[0]
    await ws.receive_from(timeout=5)  # the snapshot
    await show(ws, run, "hello")
    received = await ws.receive_from(timeout=5)
    while not await ws.receive_nothing(timeout=0.5):
        received += await ws.receive_from(timeout=5)
    assert 'id="task-detail"' in received and received.count("raced-line") == 1
    await ws.disconnect()


async def test_a_viewer_of_a_run_deleted_while_watched_is_told_so_without_an_error(user, caplog):
    from orchestration.engine.output import append_chunk
    from orchestration.engine.signals import anotify_run, asend_output
    from orchestration.models import Run

    run = await new_run()
    task_run = await run.task_runs.aget(task_id="hello")
    cookie = await sync_to_async(session_cookie)(user)
    viewers = await viewers_of(run, cookie, 2)
    after, seq, _ = await sync_to_async(append_chunk)(task_run.pk, 1, "last-line\n")
    await sync_to_async(Run.objects.filter(pk=run.pk).delete)()
    await anotify_run(run.pk)  # the first viewer hears the run changed...
    assert (await viewers[0].receive_output(timeout=5)) == {"type": "websocket.close", "code": 4404}
    await asend_output(run.pk, task_run.pk, after, seq, None)  # ...the second that output it must read was stored
    outputs = [await viewers[1].receive_output(timeout=5)]
    while outputs[-1]["type"] != "websocket.close":
        outputs.append(await viewers[1].receive_output(timeout=5))
    assert outputs[-1] == {"type": "websocket.close", "code": 4404}
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def closed_with(ws: WebsocketCommunicator, deadline: float) -> int | None:
    """The close code `ws` is sent before `deadline` (event-loop time), skipping text messages;
    None when it is not closed by then."""
    loop = asyncio.get_running_loop()
    while (left := deadline - loop.time()) > 0:
        try:
            output = await ws.receive_output(timeout=left)
        except asyncio.TimeoutError:
            return None
        if output["type"] == "websocket.close":
            return output.get("code")
    return None


async def watched_pages(user) -> list[WebsocketCommunicator]:
    """Three run pages (two of one run) and the runs list, connected."""
    cookie = await sync_to_async(session_cookie)(user)
    pages = [*await viewers_of(await new_run(), cookie, 1), *await viewers_of(await new_run(), cookie, 2)]
    runs_list = WebsocketCommunicator(application, "/ws/runs/", headers=[(b"origin", b"http://testserver"),
                                                                         (b"host", b"testserver"), (b"cookie", cookie)])
    assert (await runs_list.connect())[0]
    return [*pages, runs_list]


@pytest.fixture
def redis_layer(settings, tmp_path):
    """A Redis channel layer on a redis-server of the test's own (tests.redis_server.RedisServer)."""
    from tests.redis_server import RedisServer

    redis = RedisServer(tmp_path, "unix")
    redis.start()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis.url]}}}
    yield redis
    redis.stop()


@pytest.mark.parametrize("harm", ["restart", "forget"])
async def test_every_page_watched_in_the_process_reconnects_when_redis_restarts_or_forgets_the_groups(user, redis_layer, harm, monkeypatch):
    # channels_redis hands a lost connection's error to one receiver of the process only; the
    # others go on listening to the restarted Redis, which knows none of their groups. A Redis
    # that restarts between two reads (here: forgets everything) raises nothing at all. Either
    # way a page that stayed open would never change again.
    import redis

    from orchestration import consumers

    monkeypatch.setattr(consumers, "CANARY_SECONDS", 0.5)
    pages = await watched_pages(user)
    if harm == "restart":
        await asyncio.to_thread(redis_layer.kill)
        await asyncio.to_thread(redis_layer.start)
    else:
        await asyncio.to_thread(redis.Redis.from_url(redis_layer.url).flushall)
    deadline = asyncio.get_running_loop().time() + 60
    codes = [await closed_with(ws, deadline) for ws in pages]
    assert codes == [consumers.RECONNECT_CLOSE_CODE] * len(pages), f"close codes of the 3 run pages and the runs list: {codes}"


async def test_a_run_page_and_the_runs_list_in_one_process_share_one_channel_and_both_get_the_news(user, redis_layer):
    from orchestration.consumers import hub_for

    cookie = await sync_to_async(session_cookie)(user)
    run = await new_run()
    [page] = await viewers_of(run, cookie, 1)
    runs_list = WebsocketCommunicator(application, "/ws/runs/", headers=[(b"origin", b"http://testserver"),
                                                                         (b"host", b"testserver"), (b"cookie", cookie)])
    assert (await runs_list.connect())[0]
    await runs_list.receive_from(timeout=5)  # the list as it is now
    from channels.layers import get_channel_layer

    hub = hub_for(get_channel_layer())
    assert set(hub.viewers) == {f"run-{run.pk}", "runs"}, hub.viewers

    await run_to_end(run.pk)
    seen = ""
    while 'data-state="succeeded"' not in seen:
        seen += await page.receive_from(timeout=10)
    assert "succeeded" in (await runs_list.receive_from(timeout=10)).lower()
    await page.disconnect()
    await runs_list.disconnect()
    assert hub.channel is None and not hub.viewers, "the hub left the channel layer with its last viewer"
