"""Live output latency: a printed line to every websocket viewer of the run page.

Starts the whole stack (`manage.py serve`: daphne, one worker process, the embedded Redis; see
bench/stack.py) and, for each viewer count, a run whose one shell task prints a timestamped line
every --interval seconds for --seconds seconds. That many websocket clients (logged in with a
session cookie, as a browser is) open the run page's socket and select the task, as the page
does. For every line printed once every viewer was shown the task, the delay until each viewer
receives a message containing it is recorded: p50 / p95 / max over all (line, viewer) pairs,
and the web server's (daphne's) CPU use over the printing window, in cores (/proc/<pid>/stat).
A line some viewer never receives counts as missing.

Prints median (min–max) over --repeat rounds (each round tries every viewer count in turn), and
the load average.

    .venv/bin/python bench/live.py [--viewers 1,10,50] [--repeat 5] [--seconds 6] [--interval 0.05]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import threading
import time

from spread import spread  # bench/spread.py (this script's directory is on sys.path)
from stack import Stack, WebSocket, cpu_seconds, loadavg

LINE = re.compile(r"LINE (\d+) (\d+\.\d+)")

TASK = """import sys, time
time.sleep(float(sys.argv[1]))
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    print(f"LINE {n} {time.time():.6f}", flush=True)
    n += 1
    time.sleep(float(sys.argv[3]))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="1,10,50", help="viewer counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (at least 5 for the table)")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long the task prints")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between printed lines")
    args = parser.parse_args()
    counts = [int(n) for n in args.viewers.split(",")]
    print(f"load average before: {loadavg()}", flush=True)
    stack = Stack()
    results: dict[int, list[dict]] = {n: [] for n in counts}
    try:
        for round_ in range(args.repeat):
            for n in counts:
                result = asyncio.run(measure(stack, n, args.seconds, args.interval))
                results[n].append(result)
                print(f"round {round_ + 1}, {n} viewers: p50 {result['p50']:.0f} ms, p95 {result['p95']:.0f} ms, "
                      f"max {result['max']:.0f} ms, missing {result['missing']}, web CPU {result['cpu']:.3f} cores, "
                      f"load {loadavg()}", flush=True)
    finally:
        stack.stop()
    print(f"\nA line printed every {args.interval * 1000:.0f} ms for {args.seconds:g} s, to each websocket viewer; "
          f"{args.repeat} rounds, median (min–max)")
    print(f"{'viewers':>8} {'p50 ms':>18} {'p95 ms':>18} {'max ms':>20} {'web CPU (cores)':>20} {'missing':>8}")
    for n in counts:
        rows = results[n]
        print(f"{n:>8} {spread([r['p50'] for r in rows], 0):>18} {spread([r['p95'] for r in rows], 0):>18} "
              f"{spread([r['max'] for r in rows], 0):>20} {spread([r['cpu'] for r in rows], 3):>20} "
              f"{sum(r['missing'] for r in rows):>8}")
    print(f"load average after: {loadavg()}")
    return 0


async def measure(stack: Stack, viewers: int, seconds: float, interval: float) -> dict:
    """One run with `viewers` viewers: {"p50", "p95", "max" (ms), "cpu" (cores), "missing"}."""
    warmup = 2.0 + 0.04 * viewers  # the viewers connect meanwhile
    run_id, task_run_id = await asyncio.to_thread(
        stack.start_run, f"live-{viewers}-{time.monotonic_ns()}", ["python3", "-c", TASK, str(warmup), str(seconds), str(interval)])
    arrivals: list[dict[int, float]] = [{} for _ in range(viewers)]
    ready: list[float] = [float("inf")] * viewers
    samples: list[tuple[float, float]] = []
    sampling = threading.Event()

    def sample() -> None:  # the web server's CPU, every 0.1 s
        while not sampling.is_set():
            samples.append((time.time(), cpu_seconds(stack.web_pid)))
            time.sleep(0.1)

    async def viewer(index: int) -> None:
        ws = await WebSocket.connect(stack.port, f"/ws/runs/{run_id}/", stack.cookie)
        await ws.send(json.dumps({"select": task_run_id}))
        seen = arrivals[index]
        try:
            while (message := await ws.recv()) is not None:
                now = time.time()
                if 'id="task-detail"' in message:
                    ready[index] = min(ready[index], now)
                for match in LINE.finditer(message):
                    seen.setdefault(int(match[1]), now - float(match[2]))
        finally:
            ws.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    tasks = [asyncio.create_task(viewer(i)) for i in range(viewers)]
    await asyncio.to_thread(stack.wait_finished, run_id)
    await asyncio.sleep(1.0)  # lines still on their way
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    sampling.set()
    sampler.join()

    printed = await asyncio.to_thread(_printed_lines, task_run_id)  # {n: printed at (epoch s)}
    start = max(ready) + 0.2
    counted = {n: at for n, at in printed.items() if at >= start}
    if not counted:
        raise SystemExit(f"{viewers} viewers: no line was printed after every viewer was shown the task")
    delays, missing = [], 0
    for seen in arrivals:
        for n in counted:
            if n in seen:
                delays.append(seen[n] * 1000)
            else:
                missing += 1
    delays.sort()
    first, last = min(counted.values()), max(counted.values())
    window = [(t, c) for t, c in samples if first <= t <= last]
    cpu = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) if len(window) > 1 else float("nan")
    return {"p50": statistics.median(delays), "p95": delays[int(0.95 * (len(delays) - 1))], "max": delays[-1],
            "cpu": cpu, "missing": missing}


def _printed_lines(task_run_id: int) -> dict[int, float]:
    """{line number: when it was printed} from the task's stored output."""
    from orchestration.models import TaskRun

    return {int(m[1]): float(m[2]) for m in LINE.finditer(TaskRun.objects.get(pk=task_run_id).output_text())}


if __name__ == "__main__":
    sys.exit(main())
