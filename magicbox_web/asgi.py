"""ASGI entry point: HTTP (Django), websockets (live run pages) and the engine's channel."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
# Django must be set up before the consumers (and the models they import) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from magicbox_web.backpressure import Backpressure  # noqa: E402
from orchestration.consumers import EngineConsumer, RefusingConsumer, RunConsumer, RunsConsumer  # noqa: E402
from orchestration.security import SameOriginValidator  # noqa: E402

django_http = Backpressure(django_asgi_app)


async def http(scope, receive, send):
    """HTTP: /mcp/ is the MCP server's streamable HTTP (orchestration.api.mcp_server, with a
    token), everything else Django."""
    if scope["path"] == "/mcp" or scope["path"].startswith("/mcp/"):
        from orchestration.api.mcp_server import http_app

        return await http_app(scope, receive, send)
    return await django_http(scope, receive, send)

application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": AllowedHostsOriginValidator(
            SameOriginValidator(
                AuthMiddlewareStack(
                    URLRouter([
                        path("ws/runs/<int:run_id>/", RunConsumer.as_asgi()),
                        path("ws/runs/", RunsConsumer.as_asgi()),
                        re_path(r"", RefusingConsumer.as_asgi()),  # any other path: a 403, not a 500
                    ])
                )
            )
        ),
        "channel": ChannelNameRouter({settings.MAGICBOX_ENGINE_CHANNEL: EngineConsumer.as_asgi()}),
    }
)
