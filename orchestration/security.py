"""Websocket origin check: the page opening a socket must come from this very site.

Channels' AllowedHostsOriginValidator compares only the host name, so a page served from
another port of the same host (http://localhost:9999) would pass. Here the Origin header's
scheme-less host and port must equal the Host header the browser sent, or be listed in
CSRF_TRUSTED_ORIGINS — the rule Django's CSRF check applies to HTTP posts.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings


class SameOriginValidator:
    """ASGI middleware refusing websockets whose Origin is not this site (HTTP 403 handshake)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not self.allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

    @staticmethod
    def allowed(scope) -> bool:
        """True if the socket's Origin is the Host it connected to, or a trusted origin."""
        headers = dict(scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode("latin-1")
        host = headers.get(b"host", b"").decode("latin-1")
        if not origin or not host:
            return False
        if origin in settings.CSRF_TRUSTED_ORIGINS:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
