"""`manage.py runworker magicbox.engine`: Channels' runworker, plus the engine's periodic sweep.

The sweep starts with the process (not with its first message), so work whose wake-up message
was lost is found even by a worker that never received one.
"""
from channels.management.commands.runworker import Command as ChannelsRunworker
from channels.worker import Worker

from orchestration.engine.runtime import get_engine


class EngineWorker(Worker):
    """A Channels worker whose process also runs the engine's sweep loop."""

    async def handle(self) -> None:
        get_engine().start_sweeping()
        try:
            await super().handle()
        finally:
            await get_engine().stop()


class Command(ChannelsRunworker):
    help = "Run background consumers; `runworker magicbox.engine` executes Magic Box tasks."
    worker_class = EngineWorker
