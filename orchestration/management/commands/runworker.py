"""`manage.py runworker magicbox.engine`: Channels' runworker, plus the engine's periodic sweep.

The sweep starts with the process (not with its first message), so work whose wake-up message
was lost is found even by a worker that never received one. Losing the channel layer (Redis
restarted, failed over, or killed) does not end the process: it listens again with backoff,
and the sweep goes on finding work in the database meanwhile.
"""
import asyncio
import logging
import signal

from channels.management.commands.runworker import Command as ChannelsRunworker
from channels.worker import Worker

from orchestration.engine.runtime import get_engine

logger = logging.getLogger("orchestration.worker")


LISTEN_RETRY_MAX = 10.0  # seconds between attempts to listen again while the channel layer is away


class EngineWorker(Worker):
    """A Channels worker whose process also runs the engine's sweep loop.

    On SIGTERM or SIGINT (when handle_signals) it stops listening, kills the process groups of
    the tasks it runs and queues those tasks again for another worker, then exits cleanly.
    """

    handle_signals = True

    async def listener(self, channel: str) -> None:
        """Channels' listener, surviving a lost channel layer: a failed receive is logged and
        tried again after 0.5 s, doubling up to LISTEN_RETRY_MAX seconds."""
        failures = 0
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 — Redis away: ConnectionError, TimeoutError, OSError, …
                failures += 1
                delay = min(0.5 * 2 ** (failures - 1), LISTEN_RETRY_MAX)
                logger.warning("cannot listen on the channel layer (%s: %s); trying again in %g s, sweeping the database meanwhile",
                               type(error).__name__, error, delay)
                await asyncio.sleep(delay)
                continue
            if failures:
                logger.warning("listening on the channel layer again after %d failed attempt(s)", failures)
                failures = 0
            if not message.get("type"):
                logger.error("ignored a message without a type on %s", channel)
                continue
            queue = self.get_or_create_application_instance(channel, {"type": "channel", "channel": channel})
            await queue.put(message)

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
