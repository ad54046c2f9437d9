"""What this machine allows, measured without Magic Box: the floors the engine's figures stand on.

Each helper starts processes sandboxed exactly as the engine sandboxes a task
(`orchestration.workers.sandbox`, bwrap) unless MAGICBOX_SANDBOX=off, with the sandbox's argv built
beforehand, from a bare asyncio loop: no database, no scheduling. `MachineCPU` reads the whole
machine's CPU time from /proc/stat (proc(5)), so kernel work done outside any process, such as
tearing down a sandbox's namespaces, counts too.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

TRUE = shutil.which("true") or "/bin/true"


def sandboxed(argv: list[str], scratch: Path) -> tuple[list[str], Path]:
    """(`argv` sandboxed as the engine sandboxes a task, in a fresh work directory under
    `scratch`, unless MAGICBOX_SANDBOX=off; that directory)."""
    from orchestration.workers import sandbox

    work, home, tmp = scratch / "work", scratch / "home", scratch / "tmp"
    for d in (work, home, tmp):
        d.mkdir(parents=True, exist_ok=True)
    return (sandbox.command(argv, work, sandbox.for_attempt(work, home, tmp)) if sandbox.enabled() else argv), work


async def spawn_and_reap(argv: list[str], work: Path, stdout=subprocess.DEVNULL) -> bytes:
    """Run one prepared argv to its end in its own session; return its stdout (b"" unless piped)."""
    proc = await asyncio.create_subprocess_exec(*argv, cwd=str(work), stdin=subprocess.DEVNULL, stdout=stdout,
                                                stderr=subprocess.DEVNULL, start_new_session=True)
    out, _ = await proc.communicate()
    return out or b""


async def bare_parallel(n: int, at_once: int, scratch: Path) -> float:
    """tasks/s of `n` sandboxed `true`s spawned and reaped `at_once` at a time: the floor of the
    200-task throughput (and, with at_once=1, of a chain's hops)."""
    prepared = [sandboxed([TRUE], scratch / f"p{i}") for i in range(at_once)]
    gate = asyncio.Semaphore(at_once)

    async def one(i: int) -> None:
        async with gate:
            await spawn_and_reap(*prepared[i % at_once])

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - began)


async def bare_fan_out(width: int, scratch: Path) -> float:
    """The spread in ms of the start times of `width` sandboxed `sh -c 'date +%s%N'`s spawned
    together: the floor of a fan-out's spread."""
    prepared = [sandboxed(["/bin/sh", "-c", "date +%s%N"], scratch / f"f{i}") for i in range(width)]
    outs = await asyncio.gather(*(spawn_and_reap(argv, work, subprocess.PIPE) for argv, work in prepared))
    starts = [int(out.split()[0]) for out in outs]
    return (max(starts) - min(starts)) / 1e6


async def ideal_makespan(tasks: list[dict], argv_for, scratch: Path) -> float:
    """Seconds an ideal scheduler takes over `tasks` ({id, depends_on, ...}): each task spawned,
    sandboxed, the moment its last upstream task's process is reaped, by one asyncio loop with no
    bookkeeping. `argv_for(task)` gives its command. The floor of bench/makespan.py's ratios."""
    done = {t["id"]: asyncio.Event() for t in tasks}

    async def one(task: dict) -> None:
        for upstream in task["depends_on"]:
            await done[upstream].wait()
        await spawn_and_reap(*sandboxed(argv_for(task), scratch / task["id"]))
        done[task["id"]].set()

    began = time.monotonic()
    await asyncio.gather(*(one(t) for t in tasks))
    return time.monotonic() - began


class MachineCPU:
    """Whole-machine CPU use over a `with` block, from /proc/stat's first line (proc(5)).

    After the block: `busy_seconds` (CPU-seconds not idle or waiting on I/O, summed over all
    cores), `wall_seconds`, and `cores` (os.cpu_count()). Reads nothing if /proc/stat is missing:
    then busy_seconds stays 0.0.
    """

    def __init__(self) -> None:
        self.busy_seconds = 0.0
        self.wall_seconds = 0.0
        self.cores = os.cpu_count() or 1

    @staticmethod
    def _ticks() -> tuple[int, int]:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except OSError:
            return 0, 0
        return sum(fields), fields[3] + fields[4]  # (all, idle + iowait)

    def __enter__(self) -> "MachineCPU":
        self._began, self._start = time.perf_counter(), self._ticks()
        return self

    def __exit__(self, *exc) -> None:
        total, idle = (a - b for a, b in zip(self._ticks(), self._start))
        self.wall_seconds = time.perf_counter() - self._began
        self.busy_seconds = (total - idle) / os.sysconf("SC_CLK_TCK")

    def per(self, n: int) -> float:
        """Machine CPU in ms per one of `n` units of work done in the block."""
        return 1000 * self.busy_seconds / n
