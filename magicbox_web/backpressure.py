"""Send back-pressure for daphne: a response body is produced no faster than the client reads it.

Daphne's ASGI `send` returns at once and Twisted buffers whatever was sent, so a slow client
downloading a large streamed response made daphne hold all of it in memory. This middleware
registers a push producer with daphne's Twisted request while a response body streams (the
Twisted way to be told "the socket's buffer is full" and "it drained"), and makes `send` of the
next body message wait until the buffer has drained. Under another ASGI server, whose `send`
already waits, requests pass through untouched.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any, Awaitable, Callable

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]


class Backpressure:
    """ASGI middleware around an HTTP application (see the module's docstring)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[Message]], send: Send) -> None:
        request = _daphne_request(send) if scope["type"] == "http" else None
        if request is None:
            return await self.app(scope, receive, send)
        paced = PacedSend(send, request)
        try:
            await self.app(scope, receive, paced)
        finally:
            paced.close()


class PacedSend:
    """An ASGI send that, after each body message with more to come, waits while the Twisted
    request's transport has asked its producer to pause (the socket's buffer is full).

    request: a twisted.web.http.Request (daphne's WebRequest). The producer is registered with
    it for the body's duration and unregistered before the last body message, as Twisted wants.
    """

    def __init__(self, send: Send, request: Any) -> None:
        self._send = send
        self._request = request
        self._writable = asyncio.Event()
        self._writable.set()
        self._registered = False

    async def __call__(self, message: Message) -> None:
        streaming = message["type"] == "http.response.body" and message.get("more_body", False)
        if streaming and not self._registered:
            self._request.registerProducer(self, True)
            self._registered = True
        elif not streaming and self._registered:
            self._unregister()
        await self._send(message)
        if self._registered:
            await self._writable.wait()

    def close(self) -> None:
        """Unregister the producer if the response ended without its last body message."""
        if self._registered:
            self._unregister()

    def _unregister(self) -> None:
        self._registered = False
        with contextlib.suppress(AttributeError):  # the connection is gone (Twisted dropped its channel)
            self._request.unregisterProducer()

    # twisted.internet.interfaces.IPushProducer, called by Twisted in the event loop's thread.
    def pauseProducing(self) -> None:
        self._writable.clear()

    def resumeProducing(self) -> None:
        self._writable.set()

    def stopProducing(self) -> None:  # the client went away: stop waiting (the app is cancelled)
        self._writable.set()


def _daphne_request(send: Send) -> Any | None:
    """Daphne's Twisted request behind `send` (daphne passes partial(server.handle_reply, request)),
    or None under any other server."""
    if isinstance(send, functools.partial) and send.args and hasattr(send.args[0], "registerProducer"):
        return send.args[0]
    return None
