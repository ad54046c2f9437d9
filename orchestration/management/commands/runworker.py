"""`manage.py runworker magicbox.engine`: Channels' runworker, plus the engine's periodic sweep.

The sweep starts with the process (not with its first message), so work whose wake-up message
was lost is found even by a worker that never received one.
"""
import asyncio
import logging
import signal

from channels.management.commands.runworker import Command as ChannelsRunworker
from channels.worker import Worker

from orchestration.engine.runtime import get_engine

logger = logging.getLogger("orchestration.worker")


class EngineWorker(Worker):
    """A Channels worker whose process also runs the engine's sweep loop.

    On SIGTERM or SIGINT (when handle_signals) it stops listening, kills the process groups of
    the tasks it runs and queues those tasks again for another worker, then exits cleanly.
    """

    handle_signals = True

    async def handle(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = (signal.SIGTERM, signal.SIGINT) if self.handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        engine = get_engine()
        engine.start_sweeping()
        listening = asyncio.create_task(super().handle())
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({listening, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if listening in done:
                listening.result()  # the listener failed: let its exception through
            else:
                logger.info("stopping: re-queueing %d running task(s)", len(engine.executing))
        finally:
            listening.cancel()
            stopping.cancel()
            await asyncio.gather(listening, stopping, return_exceptions=True)
            await engine.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)


class Command(ChannelsRunworker):
    help = "Run background consumers; `runworker magicbox.engine` executes Magic Box tasks."
    worker_class = EngineWorker
