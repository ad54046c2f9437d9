"""Keep `serve`'s child processes running: a child that dies is restarted with backoff, and logged.

The children (the embedded Redis, the daphne web server, the `runworker` processes) each run in
a session of their own. `Supervisor.watch` polls them; one that exited is started again after
RESTART_DELAY seconds, doubling for each further death in a row up to RESTART_DELAY_MAX; a
child that stayed up STABLE_AFTER seconds starts over at RESTART_DELAY. Stopping ends them in
reverse order of start (workers first, Redis last): SIGTERM to each group, SIGKILL after
STOP_GRACE seconds.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

RESTART_DELAY = 0.5  # seconds before the first restart of a child that died
RESTART_DELAY_MAX = 10.0
STABLE_AFTER = 10.0  # seconds up after which a child's deaths in a row are forgotten (it was no crash loop)
STOP_GRACE = 10.0  # seconds a child has to stop after SIGTERM
POLL = 0.2  # seconds between looks at the children


@dataclass
class Child:
    """One supervised process. start() returns the running Popen (or raises OSError / any
    error, logged and retried like a death)."""

    name: str
    start: Callable[[], subprocess.Popen]
    proc: subprocess.Popen | None = None
    stop_last: bool = False  # stopped after the others (the Redis they talk through)
    started_at: float = 0.0
    deaths_in_a_row: int = 0
    restart_at: float | None = None
    restarts: int = field(default=0)


class Supervisor:
    """Starts children, restarts those that die, stops them all. `report(text)` is told of each
    death and restart (serve prints it); `record(pids)` of the children's pids whenever they
    change (serve keeps them in a file, to stop them should it die itself)."""

    def __init__(self, children: list[Child], report: Callable[[str], None],
                 record: Callable[[list[int]], None] = lambda pids: None) -> None:
        self.children = children
        self.report = report
        self.record = record

    def pids(self) -> list[int]:
        """The pids of the children running now."""
        return [c.proc.pid for c in self.children if c.proc is not None]

    def start_all(self) -> None:
        """Start every child not already running (one that fails to start is retried by `check`)."""
        for child in self.children:
            if child.proc is None:
                self._start(child)
            else:
                child.started_at = time.monotonic()
        self.record(self.pids())

    def _start(self, child: Child) -> None:
        child.restart_at = None
        try:
            child.proc = child.start()
            child.started_at = time.monotonic()
        except Exception as error:  # noqa: BLE001 — e.g. Redis did not come up: try again later
            child.proc = None
            self._schedule_restart(child, f"{child.name} could not start ({error})")

    def _schedule_restart(self, child: Child, what: str) -> None:
        child.deaths_in_a_row += 1
        delay = min(RESTART_DELAY * 2 ** (child.deaths_in_a_row - 1), RESTART_DELAY_MAX)
        child.restart_at = time.monotonic() + delay
        self.report(f"{what}; restarting it in {delay:g} s")

    def check(self) -> None:
        """Notice dead children and restart those whose backoff is over."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                up = now - child.started_at
                if up >= STABLE_AFTER:
                    child.deaths_in_a_row = 0
                code = child.proc.returncode
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exited with code {code}"
                child.proc = None
                self._schedule_restart(child, f"{child.name} {how} after {up:.1f} s")
            elif child.proc is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)
                if child.proc is not None:
                    self.report(f"{child.name} restarted (pid {child.proc.pid})")
                    self.record(self.pids())

    def watch(self, stopping: Callable[[], bool]) -> None:
        """Check the children every POLL seconds until `stopping()` is true."""
        while not stopping():
            self.check()
            time.sleep(POLL)

    def stop_all(self) -> None:
        """Stop the children together (SIGTERM, then SIGKILL after STOP_GRACE seconds), then
        those marked stop_last."""
        for wave in ([c for c in self.children if not c.stop_last], [c for c in self.children if c.stop_last]):
            running = [c.proc for c in wave if c.proc is not None and c.proc.poll() is None]
            for proc in running:
                _signal_group(proc, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            for proc in running:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
            for child in wave:
                child.proc = None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
