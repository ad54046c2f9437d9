"""Downloads streamed piece by piece under ASGI.

Django's ASGI handler reads a *synchronous* iterator of a StreamingHttpResponse into one list
before sending anything (the whole download in memory, per download). `download` gives it an
asynchronous iterator instead, which takes one piece at a time from the synchronous source in
Django's sync thread (database access allowed); the server's send back-pressure
(magicbox_web.backpressure) paces it to the client's speed.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse


def download(pieces: Iterable[bytes], filename: str, content_type: str) -> StreamingHttpResponse:
    """An attachment named `filename` whose body is `pieces`, each read only when the one before
    has been sent. `pieces` is closed (if it has a close()) when the response ends, also when
    the client left early."""
    response = StreamingHttpResponse(OneAtATime(pieces), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class OneAtATime:
    """An asynchronous iterator of bytes over a synchronous iterable, each item taken in
    Django's sync thread when asked for. close() closes the iterable (Django calls it)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._source = pieces
        self._pieces: Iterator[bytes] = iter(pieces)
        self._take = sync_to_async(next)

    def __aiter__(self) -> OneAtATime:
        return self

    async def __anext__(self) -> bytes:
        piece = await self._take(self._pieces, None)
        if piece is None:
            raise StopAsyncIteration
        return piece

    def close(self) -> None:
        for closeable in (self._pieces, self._source):
            if close := getattr(closeable, "close", None):
                close()
