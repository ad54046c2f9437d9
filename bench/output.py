"""Memory under a flood of output: a task writing --megabytes MB as fast as it can.

Starts the whole stack (`manage.py serve`: daphne, one worker process, the embedded Redis; see
bench/stack.py) and, each round, runs a shell task `head -c <N>M /dev/urandom | base64` (76-
character lines; the product's MAGICBOX_OUTPUT_LIMIT applies: past it a marker is stored and the
rest dropped). Samples the worker process's resident memory (RSS) every 20 ms: its growth at the
peak during the run and 2 s after it ended (kept, not given back), over its RSS just before the
round (and, to see memory kept from round to round, over its RSS before the first round). Then the biggest stored chunk row (bytes), and the web server's (daphne's) RSS over
--loads loads of the run page and --downloads downloads of the whole output: growth at the
peak and after, over its RSS before them (and before the first round).

Prints median (min–max) over --repeat rounds, and the load average.

    .venv/bin/python bench/output.py [--megabytes 200] [--repeat 5] [--loads 10] [--downloads 3]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

from spread import spread  # bench/spread.py (this script's directory is on sys.path)
from stack import MIB, Stack, loadavg, rss_mib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=200, help="bytes the task reads from /dev/urandom (MB)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (at least 5 for the table)")
    parser.add_argument("--loads", type=int, default=10, help="run-page loads per round")
    parser.add_argument("--downloads", type=int, default=3, help="whole-output downloads per round")
    args = parser.parse_args()
    print(f"load average before: {loadavg()}", flush=True)
    stack = Stack()
    rows = []
    baseline = {"worker": rss_mib(stack.worker_pid), "web": rss_mib(stack.web_pid)}  # RSS before the first round
    try:
        for round_ in range(args.repeat):
            row = one_round(stack, args.megabytes, args.loads, args.downloads, baseline)
            rows.append(row)
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()) + f"; load {loadavg()}", flush=True)
    finally:
        stack.stop()
    print(f"\n`head -c {args.megabytes}M /dev/urandom | base64` as a task, {args.repeat} rounds: median (min–max)")
    labels = {
        "seconds": "run time (s)",
        "stored_mib": "output stored (MiB)",
        "worker_peak": "worker RSS growth at peak (MiB)",
        "worker_after": "worker RSS growth 2 s after (MiB)",
        "worker_kept": "worker RSS 2 s after, over its RSS before round 1 (MiB)",
        "chunk_kib": "biggest chunk row (KiB)",
        "web_peak": f"web RSS growth at peak, {args.loads} page loads + {args.downloads} downloads (MiB)",
        "web_after": "web RSS growth after them (MiB)",
        "web_kept": "web RSS after them, over its RSS before round 1 (MiB)",
    }
    for key, label in labels.items():
        print(f"{label:<70}{spread([r[key] for r in rows]):>22}")
    print(f"load average after: {loadavg()}")
    return 0


class Sampler:
    """The peak RSS of a process, sampled every 20 ms between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._done = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def one_round(stack: Stack, megabytes: int, loads: int, downloads: int, baseline: dict[str, float]) -> dict:
    from django.db.models import Max
    from django.db.models.functions import Length

    from orchestration.models import OutputChunk, TaskRun

    worker_before = rss_mib(stack.worker_pid)
    began = time.monotonic()
    with Sampler(stack.worker_pid) as worker:
        run_id, task_run_id = stack.start_run(f"flood-{time.monotonic_ns()}",
                                              ["sh", "-c", f"head -c {megabytes}M /dev/urandom | base64"])
        stack.wait_finished(run_id)
        seconds = time.monotonic() - began
        time.sleep(2.0)  # memory the worker gives back
    worker_after = rss_mib(stack.worker_pid)
    chunks = OutputChunk.objects.filter(task_run_id=task_run_id)
    biggest = chunks.aggregate(n=Max(Length("text")))["n"] or 0
    stored = TaskRun.objects.get(pk=task_run_id).output_bytes
    web_before = rss_mib(stack.web_pid)
    with Sampler(stack.web_pid) as web:
        for _ in range(loads):
            stack.get(f"/runs/{run_id}/?task=t")
        for _ in range(downloads):
            if stack.get(f"/runs/{run_id}/tasks/{task_run_id}/output.txt") != stored:
                raise SystemExit("a download was not whole")
    web_after = rss_mib(stack.web_pid)
    return {"seconds": seconds, "stored_mib": stored / MIB, "worker_peak": worker.peak - worker_before,
            "worker_after": worker_after - worker_before, "chunk_kib": biggest / 1024,
            "worker_kept": worker_after - baseline["worker"], "web_peak": web.peak - web_before,
            "web_after": web_after - web_before, "web_kept": web_after - baseline["web"]}


if __name__ == "__main__":
    sys.exit(main())
