"""Channels consumers: the engine's background consumer and the live run page's websocket."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from redis.exceptions import RedisError

from orchestration.engine.runtime import get_engine
from orchestration.engine.signals import RUNS_GROUP, run_group
from orchestration.live import RunView
from orchestration.roles import VIEWER

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.25  # viewers get at most ~4 updates a second per run
LIST_COALESCE_SECONDS = 1.0  # the runs list is rendered again at most once a second
RESYNC_CLOSE_CODE = 4011  # "reload to resync" (app.js); servers may not send 1011 themselves
# "Connect again in a moment" (app.js). Servers may not send 1012 themselves (autobahn allows
# 1000 and 3000-4999 only), and the ws extension reconnects by itself after 1006/1011-1013 only.
RECONNECT_CLOSE_CODE = 4012
RUN_GONE_CLOSE_CODE = 4404  # the run was deleted while its page was open (app.js says so, and does not reconnect)
RECHECK_SECONDS = 10  # how often an open socket checks its user may still watch
CANARY_SECONDS = 10.0  # how often a process's run hub checks the channel layer still has its groups
CANARY_WAIT = 5.0  # seconds the hub's canary may take to come back


class EngineConsumer(AsyncConsumer):
    """`runworker magicbox.engine`: each message is a wake-up; the work happens in asyncio tasks.

    A Channels consumer awaits each handler before reading the next message (channels#1924),
    so handlers only start the engine's work and return.
    """

    async def __call__(self, scope, receive, send) -> None:
        # The channel layer went away (Redis restarted): this instance ends quietly; the worker
        # listens again (runworker) and the next wake-up starts a new one.
        with contextlib.suppress(RedisError, OSError):
            await super().__call__(scope, receive, send)

    async def engine_wake(self, message: dict) -> None:
        engine = get_engine()
        engine.start_sweeping()
        engine.wake_soon()


class ReconnectingConsumer(AsyncWebsocketConsumer):
    """A websocket whose page connects again by itself when the channel layer goes away (Redis
    restarted): the socket is closed with RECONNECT_CLOSE_CODE (see lose_layer)."""

    async def __call__(self, scope, receive, send) -> None:
        _sockets.add(self)
        try:
            await super().__call__(scope, receive, send)
        except (RedisError, OSError) as error:
            await lose_layer(self.channel_layer, f"a viewer of {self.describe(scope)}", error)
            with contextlib.suppress(Exception):  # the socket may be gone already
                await send({"type": "websocket.close", "code": RECONNECT_CLOSE_CODE})
        finally:
            _sockets.discard(self)

    def describe(self, scope) -> str:
        """What the socket's viewer watches, for the log."""
        return "a page"


_sockets: weakref.WeakSet[ReconnectingConsumer] = weakref.WeakSet()  # the open sockets of this process


async def lose_layer(layer, who: str, error: BaseException | str) -> None:
    """The channel layer went away (Redis restarted, or lost this process's groups): every
    socket of this process is closed with RECONNECT_CLOSE_CODE, so each page connects again and
    gets a fresh snapshot, and the run hub starts afresh with the next viewer.

    All of them, not only the one that saw the error: channels_redis hands a broken connection's
    error to one receiver of the process, and the others go on listening to the restarted Redis,
    which knows none of their groups: their pages would stay open and never change again.
    who: what noticed, for the log."""
    detail = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
    log.warning("%s lost the channel layer (%s); every page watched here reconnects", who, detail)
    hub_for(layer).reset()
    for socket in list(_sockets):
        with contextlib.suppress(Exception):  # the socket may be gone already
            await socket.close(code=RECONNECT_CLOSE_CODE)


class RunHub:
    """The pages watched in this process (run pages and the runs list), joined to the channel
    layer once per group.

    Each group (a run's, engine.signals.run_group, or the runs list's, RUNS_GROUP) gets one
    member per process, the hub's own channel, whatever the number of viewers: a message of the
    engine's is fetched from Redis and decoded once, then handed to every local viewer of its
    group (`deliver(message)`), in order.

    A Redis that restarted between two reads raises nothing and has forgotten every group, so
    every CANARY_SECONDS the hub renews its groups and sends itself a canary through a group of
    its own; a canary that does not come back within CANARY_WAIT seconds, like a broken
    connection, is a lost channel layer (lose_layer: the pages connect again).
    One hub per channel layer (hub_for): the layer belongs to one event loop.
    """

    def __init__(self, layer) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.viewers: dict[str, set[ReconnectingConsumer]] = {}  # {group: its viewers here}
        self._tasks: list[asyncio.Task] = []
        self._joining = asyncio.Lock()
        self._canary_back = asyncio.Event()

    async def join(self, viewer: ReconnectingConsumer, group: str) -> None:
        """Hand `viewer` the messages of `group` from now on. Raises what the layer raises."""
        async with self._joining:
            if self.channel is None:
                self.channel = channel = await self.layer.new_channel()
                await self.layer.group_add(self._canary_group(channel), channel)
                self._tasks = [asyncio.create_task(self._while_held(channel, work)) for work in (self._listen, self._watch)]
            # Every time: a group membership expires (channels_redis's group_expiry), a join renews it.
            await self.layer.group_add(group, self.channel)
            self.viewers.setdefault(group, set()).add(viewer)

    async def leave(self, viewer: ReconnectingConsumer, group: str) -> None:
        """Stop handing `viewer` messages; leave `group` when it was its last viewer here, and
        the channel layer when nothing is watched here any more."""
        async with self._joining:
            viewers = self.viewers.get(group)
            if viewers is None or viewer not in viewers:
                return
            viewers.discard(viewer)
            if not viewers:
                del self.viewers[group]
                with contextlib.suppress(RedisError, OSError):
                    await self.layer.group_discard(group, self.channel)
            if not self.viewers:
                channel = self.channel
                self.reset()
                with contextlib.suppress(RedisError, OSError):
                    await self.layer.group_discard(self._canary_group(channel), channel)

    def reset(self) -> None:
        """Forget the channel, its groups and viewers (the layer was lost); the next join starts afresh."""
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._tasks, self.channel, self.viewers = [], None, {}

    @staticmethod
    def _canary_group(channel: str) -> str:
        return "hub-" + channel.rsplit("!", 1)[-1]

    async def _while_held(self, channel: str, work) -> None:
        """Run `work(channel)` (_listen or _watch) until it ends; whatever ends it (RedisError,
        OSError, a lost canary, anything: never silently) loses the layer, unless the hub has
        moved on to another channel meanwhile."""
        try:
            await work(channel)
        except Exception as error:  # noqa: BLE001 — see the docstring
            if channel == self.channel:
                await lose_layer(self.layer, "the viewers of runs", error)

    async def _listen(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            kind = message.get("type")
            if kind == "hub.canary":
                self._canary_back.set()
                continue
            try:
                group = RUNS_GROUP if kind == "runs.changed" else run_group(int(message["run_id"]))
            except (KeyError, TypeError, ValueError):
                continue
            for viewer in list(self.viewers.get(group, ())):
                viewer.deliver(message)

    async def _watch(self, channel: str) -> None:
        """Renew the groups and send the canary every CANARY_SECONDS (see the class docstring)."""
        while True:
            await asyncio.sleep(CANARY_SECONDS)
            self._canary_back.clear()
            for group in list(self.viewers):
                await self.layer.group_add(group, channel)
            await self.layer.group_send(self._canary_group(channel), {"type": "hub.canary"})
            try:
                await asyncio.wait_for(self._canary_back.wait(), CANARY_WAIT)
            except TimeoutError:
                raise ConnectionError(f"no canary came back within {CANARY_WAIT:g} s") from None


_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # {channel layer: its RunHub}


def hub_for(layer) -> RunHub:
    """The RunHub of channel layer `layer` (one per layer, made on first use)."""
    hub = _hubs.get(layer)
    if hub is None:
        hub = _hubs[layer] = RunHub(layer)
    return hub


class RunConsumer(ReconnectingConsumer):
    """Websocket of a run page: sends a full snapshot on connect, then coalesced updates.

    Pushed HTML fragments are swapped by htmx's ws extension by id (out of band); output is
    appended from the stored chunks the page has not been sent yet, so a dropped message only
    delays an update. When the channel layer goes away (Redis restarted), the socket is closed
    with RECONNECT_CLOSE_CODE: the page connects again, and gets a fresh snapshot, by itself.

    The page says which task it shows with a JSON message {"select": <task run id>, "seq":
    <the output chunk its log already has, optional>} (static/magicbox/app.js), on connecting and
    whenever the viewer picks another task; that task's detail and output follow (live.RunView.select).
    """

    def describe(self, scope) -> str:
        return f"run {scope.get('url_route', {}).get('kwargs', {}).get('run_id')}"

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if not user or not user.is_authenticated or not await self._may_watch(user):
            await self.close(code=4403)
            return
        self.user_id = user.pk
        self._checked_at = asyncio.get_running_loop().time()
        self.view = RunView(self.run_id, user, self.scope.get("cookies", {}).get(settings.CSRF_COOKIE_NAME, ""))
        self._pending: asyncio.Task | None = None
        self._changed_at = time.monotonic()  # when the viewer was last told the run changed
        self._sending = asyncio.Lock()  # one computation and its messages at a time, in order
        self._handling: set[asyncio.Task] = set()  # messages of the run being handled (deliver)
        await hub_for(self.channel_layer).join(self, run_group(self.run_id))
        await self.accept()
        async with self._sending:
            for message in await database_sync_to_async(self.view.snapshot)():
                await self.send(text_data=message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """{"select": <task run id>[, "seq": <chunk>]}: show that task. Anything else is ignored."""
        try:
            message = json.loads(text_data or "")
            task_run_id = int(message["select"])
            seq = int(message["seq"]) if message.get("seq") is not None else None
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
            return
        from orchestration.models import Run

        async with self._sending:
            try:
                replies = await database_sync_to_async(self.view.select)(task_run_id, seq)
            except Run.DoesNotExist:
                await self.close(code=RUN_GONE_CLOSE_CODE)  # the run was deleted
                return
            for reply in replies:
                await self.send(text_data=reply)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "view"):
            await hub_for(self.channel_layer).leave(self, run_group(self.run_id))

    def deliver(self, message: dict) -> None:
        """Handle `message`, one of the run's group (RunHub), in its own task: "run.changed",
        "run.output" or "run.partial". Messages handed over in order are handled in order (the
        handlers that send take the viewer's lock, which serves its waiters first come, first
        served); one that fails closes this socket only."""
        handler = {"run.changed": self.run_changed, "run.output": self.run_output, "run.partial": self.run_partial}.get(message.get("type"))
        if handler is not None:
            task = asyncio.create_task(handler(message))
            self._handling.add(task)
            task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task) -> None:
        self._handling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a message of run %s could not be handled; asking the viewer to reconnect", self.run_id,
                      exc_info=task.exception())
            asyncio.ensure_future(self.close(code=RESYNC_CLOSE_CODE))

    async def run_changed(self, event: dict) -> None:
        self._changed_at = time.monotonic()
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._push_update())

    async def run_output(self, event: dict) -> None:
        """Output the engine just stored (engine.signals.asend_output): appended at once when it
        is the shown task's, from the message's text when this viewer has everything before it,
        else read from the database (RunView.appended, catch_up). Not coalesced: the engine sends
        at most one such message per task every output.LIVE_INTERVAL seconds."""
        task_run_id = int(event["task_run_id"])
        if task_run_id != self.view.selected:
            return  # another task's: this page does not show its log
        text = event.get("text")
        try:
            async with self._sending:
                messages = self.view.appended(task_run_id, int(event["after"]), int(event["seq"]),
                                              str(text) if text is not None else None)
                if messages is None:
                    messages = await database_sync_to_async(self.view.catch_up)(int(event["seq"]))
                for message in messages:
                    await self.send(text_data=message)
        except ObjectDoesNotExist:
            await self.close(code=RUN_GONE_CLOSE_CODE)  # the run was deleted while watched
        except Exception:
            log.exception("output of run %s could not be sent; asking the viewer to reconnect", self.run_id)
            await self.close(code=RESYNC_CLOSE_CODE)

    async def run_partial(self, event: dict) -> None:
        """The message an agent is writing (engine.signals.asend_partial): sent at once, after
        the stored output sent so far (the engine sends it after the lines it stored)."""
        task_run_id = int(event["task_run_id"])
        if task_run_id != self.view.selected:
            return  # another task's: this page does not show its log
        async with self._sending:
            if task_run_id == self.view.selected:
                await self.send(text_data=self.view.partial_fragment(task_run_id, str(event["text"])))

    async def _push_update(self) -> None:
        """After COALESCE_SECONDS, the fragments that changed, from a load of the run begun after
        the last change this viewer was told of (shared with the run's other viewers in this
        process: live.shared_load); again while changes arrived during it."""
        await asyncio.sleep(COALESCE_SECONDS)
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked_at > RECHECK_SECONDS:
            self._checked_at = loop.time()
            if not await self._still_allowed():
                await self.close(code=4403)  # deactivated or out of every role since it joined
                return
        from orchestration.models import Run

        try:
            async with self._sending:
                since = None
                while since != self._changed_at:
                    since = self._changed_at
                    for message in await database_sync_to_async(self.view.update)(since):
                        await self.send(text_data=message)
        except Run.DoesNotExist:
            await self.close(code=RUN_GONE_CLOSE_CODE)  # the run was deleted while watched
        except Exception:
            # The viewer can no longer be kept exact: close abnormally so the page reconnects
            # and receives a fresh snapshot.
            log.exception("update of run %s failed; asking the viewer to reconnect", self.run_id)
            await self.close(code=RESYNC_CLOSE_CODE)

    @database_sync_to_async
    def _still_allowed(self) -> bool:
        """The viewer's account, read afresh, is active and still has a role that watches runs."""
        from django.contrib.auth import get_user_model

        from orchestration.roles import VIEWER

        user = get_user_model().objects.filter(pk=self.user_id, is_active=True).first()
        return user is not None and user.has_perm(VIEWER)

    @database_sync_to_async
    def _may_watch(self, user) -> bool:
        """The user has a role that watches runs (roles.VIEWER) and the run exists."""
        from orchestration.models import Run
        from orchestration.roles import VIEWER

        return user.has_perm(VIEWER) and Run.objects.filter(pk=self.run_id).exists()


class RunsConsumer(ReconnectingConsumer):
    """Websocket of the runs list (/ws/runs/?<the page's filters>): whenever a run is created or
    changes (engine.signals.anotify_run), at most once every LIST_COALESCE_SECONDS, the list
    fragment for the viewer's filters and page is rendered again and sent if it differs from the
    last one sent. Closes with RECONNECT_CLOSE_CODE when the channel layer goes away."""

    def describe(self, scope) -> str:
        return "the runs list"

    async def connect(self) -> None:
        from django.http import QueryDict

        user = self.scope.get("user")
        if not user or not user.is_authenticated or not await database_sync_to_async(user.has_perm)(VIEWER):
            await self.close(code=4403)
            return
        self.query = QueryDict(self.scope.get("query_string", b"").decode("latin-1"))
        self._sent = ""
        self._pending: asyncio.Task | None = None
        await hub_for(self.channel_layer).join(self, RUNS_GROUP)
        await self.accept()
        await self._push()  # what changed between the page's render and now

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "query"):
            await hub_for(self.channel_layer).leave(self, RUNS_GROUP)

    def deliver(self, message: dict) -> None:
        """A run was created or changed ("runs.changed", from the RunHub): render the list
        again after LIST_COALESCE_SECONDS, unless that is already planned."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(LIST_COALESCE_SECONDS)
        try:
            await self._push()
        except Exception:
            log.exception("the runs list could not be rendered again; asking the viewer to reconnect")
            await self.close(code=RESYNC_CLOSE_CODE)

    async def _push(self) -> None:
        html = await database_sync_to_async(self._render)()
        if html != self._sent:
            self._sent = html
            await self.send(text_data=html)

    def _render(self) -> str:
        from django.template.loader import render_to_string

        from orchestration.forms import RunFilterForm
        from orchestration.review import history

        form = RunFilterForm(self.query)
        page = history.runs_page(form, self.query.get("page"))
        return render_to_string("runs/list.html#runs-table", history.list_context(form, page))


class RefusingConsumer(AsyncWebsocketConsumer):
    """Any websocket path that is not a run's: refused at the handshake."""

    async def connect(self) -> None:
        await self.close(code=4404)
