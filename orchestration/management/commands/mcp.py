"""`manage.py mcp --user <name>`: Magic Box's MCP server on stdin/stdout (orchestration.api.mcp_server),
for an agent CLI to start: `claude mcp add magicbox -- <python> <checkout>/manage.py mcp --user alice`."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Serve Magic Box's MCP tools on stdio, acting as --user (validate, start, follow, read and cancel runs)."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="the Magic Box user the tools act as (their roles apply)")

    def handle(self, *args, user: str, **options):
        from orchestration.api.mcp_server import acting, acting_via, server

        found = get_user_model().objects.filter(username=user, is_active=True).first()
        if found is None:
            raise CommandError(f"no active user named {user!r}: create one in the admin, or name another with --user")
        acting.set(found)
        acting_via.set("MCP (manage.py mcp)")
        server.run("stdio")
