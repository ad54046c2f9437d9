"""Benchmark: what the task sandbox costs, and how fast a cancel ends a daemonising task.

Three measurements, each with the sandbox on and off (MAGICBOX_SANDBOX), median (min–max) of
--repeat runs:

- start: seconds to run `/bin/true` through `run_process` (the engine's process runner), i.e.
  what a sandbox adds to every task attempt;
- cancel: seconds from cancelling a running task (the asyncio cancel the engine's lease guard
  does) until none of its processes is left on the host. The task starts a daemon that called
  setsid() and cleared its environment, and a child that ignores SIGTERM;
- left: processes of that task still alive 1 s after the cancel (target 0; without the sandbox
  the daemon with a cleared environment escapes both the process group and the marker scan).

    .venv/bin/python bench/sandbox.py [--repeat 7]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from spread import spread  # bench/spread.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.processes import processes_with  # noqa: E402 (after the path is set)

DAEMONISE = """
import os, signal, subprocess, sys, time
token = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve('/bin/sleep', ['sleep', token], {})
    os._exit(0)
subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)', token])
print('ready', flush=True)
time.sleep(300)
"""


def confinement(root: Path):
    from orchestration.workers import sandbox

    dirs = [root / name for name in ("work", "home", "tmp")]
    return sandbox.for_attempt(*dirs)


async def start_once(root: Path) -> float:
    from orchestration.workers.base import Invocation
    from orchestration.workers.process import run_process

    started = time.perf_counter()
    await run_process(Invocation(argv=["/bin/true"], env={"PATH": "/usr/bin:/bin"}, cwd=root / "work"),
                      lambda _: None, lambda _: None, 30, confinement=confinement(root))
    return time.perf_counter() - started


async def cancel_once(root: Path, n: int) -> tuple[float, int]:
    from orchestration.workers.base import Invocation
    from orchestration.workers.process import run_process

    token = f"{990 + n}.{os.getpid()}"
    ready = asyncio.Event()
    invocation = Invocation(argv=[sys.executable, "-c", DAEMONISE, token], env={"PATH": "/usr/bin:/bin"}, cwd=root / "work")
    job = asyncio.create_task(run_process(invocation, lambda line: line == "ready" and ready.set(), lambda _: None, 60,
                                          confinement=confinement(root)))
    await asyncio.wait_for(ready.wait(), 30)
    while len([p for p in processes_with(token) if "bwrap" not in Path(f"/proc/{p}/cmdline").read_bytes()[:200].decode(errors="replace")]) < 3:
        await asyncio.sleep(0.01)
    cancelled = time.perf_counter()
    job.cancel()
    try:
        await job
    except asyncio.CancelledError:
        pass
    gone = None
    while time.perf_counter() - cancelled < 1.0:
        if not processes_with(token):
            gone = time.perf_counter() - cancelled
            break
        await asyncio.sleep(0.005)
    left = processes_with(token)
    for pid in left:  # the bench leaves nothing behind
        os.kill(pid, 9)
    return (gone if gone is not None else float("nan")), len(left)


def summary(values: list[float], unit: float = 1000.0) -> str:
    return spread([v * unit for v in values if v == v])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="magicbox-bench-sandbox-")
    os.environ["MAGICBOX_DATA_DIR"] = data
    os.environ["DJANGO_SETTINGS_MODULE"] = "magicbox_web.settings"
    import django
    from django.conf import settings

    django.setup()
    rows = []
    for mode in ("off", "on"):
        settings.MAGICBOX_SANDBOX = mode
        starts, cancels, lefts = [], [], []
        for n in range(args.repeat):
            root = Path(data) / mode / str(n)
            for name in ("work", "home", "tmp"):
                (root / name).mkdir(parents=True)
            starts.append(asyncio.run(start_once(root)))
            seconds, left = asyncio.run(cancel_once(root, n))
            cancels.append(seconds)
            lefts.append(left)
        rows.append((mode, starts, cancels, lefts))
    print(f"{args.repeat} repeats; median (min–max)\n")
    print("| sandbox | start of /bin/true, ms | cancel → no process left, ms | processes left 1 s after cancel |")
    print("|---|---|---|---|")
    for mode, starts, cancels, lefts in rows:
        never = sum(1 for c in cancels if c != c)
        cancel = summary(cancels) + (f"; {never} of {len(cancels)} never" if never else "")
        print(f"| {mode} | {summary(starts)} | {cancel} | {spread(lefts, 0)} |")


if __name__ == "__main__":
    main()
