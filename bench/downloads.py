"""Memory of the web server (daphne) while slow clients download a large task output.

Stores, in a temporary SQLite database, one task run whose output is --megabytes MB (a few rows
of 16 MiB, as one flush of a fast-printing task makes, and many of 64 KiB), starts daphne on it,
and --repeat times lets --clients clients download it at once, each reading at most --rate MB/s.
Prints daphne's resident memory (RSS) before, at its peak during and after each round, as
median (min–max) over the rounds, and the growth per concurrent download. Every download is
checked to be whole.

    .venv/bin/python bench/downloads.py [--megabytes 52] [--clients 6] [--rate 10] [--repeat 5]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from spread import spread  # bench/spread.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=52, help="size of the task's output (MiB)")
    parser.add_argument("--clients", type=int, default=6, help="concurrent downloads per round")
    parser.add_argument("--rate", type=float, default=10.0, help="MiB/s each client reads at most")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (at least 5 for the table)")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="magicbox-downloads-")
    os.environ["MAGICBOX_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
    url, cookie, expected = prepare(args.megabytes)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    daphne = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "magicbox_web.asgi:application"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, daphne)
        fetch(port, url, cookie, expected, rate=None)  # warm up: imports, first connections
        rows = []
        for _ in range(args.repeat):
            rows.append(round_of_downloads(daphne.pid, port, url, cookie, expected, args.clients, args.rate * MB))
    finally:
        os.killpg(daphne.pid, signal.SIGTERM)
        daphne.wait(20)

    def cell(values: list[float]) -> str:
        return f"{spread(values):>14}"

    print(f"\n{args.clients} concurrent downloads of a {expected / MB:.1f} MiB output, each at most {args.rate:g} MiB/s, "
          f"{args.repeat} rounds: median (min–max)")
    print(f"{'daphne RSS before (MiB)':<40}{cell([r['before'] for r in rows])}")
    print(f"{'daphne RSS at peak (MiB)':<40}{cell([r['peak'] for r in rows])}")
    print(f"{'growth per concurrent download (MiB)':<40}{cell([(r['peak'] - r['before']) / args.clients for r in rows])}")
    print(f"{'daphne RSS after (MiB)':<40}{cell([r['after'] for r in rows])}")
    print(f"{'slowest download (s)':<40}{cell([r['seconds'] for r in rows])}")
    return 0


def prepare(megabytes: int) -> tuple[str, str, int]:
    """Migrate a fresh database, store a run with one task whose output is `megabytes` MiB, and
    log a user in. Returns (the output's URL, the session cookie, the output's size in bytes)."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from orchestration.engine.scheduler import start_run
    from orchestration.models import OutputChunk, TaskRun
    from orchestration.plans.store import import_text

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}  # no engine here
    call_command("migrate", verbosity=0)
    revision, _ = import_text(json.dumps({"name": "Loud", "parallel_execution": {"tasks": [
        {"id": "loud", "worker": "shell", "command": ["true"]}]}}), "loud.yaml")
    task_run = start_run(revision.plan).task_runs.get()
    line = "".join(chr(ord("a") + n % 26) for n in range(99)) + "\n"
    big, small = line * (16 * MB // len(line)), line * (64 * 1024 // len(line))
    texts = [big] * min(3, megabytes // 16)
    texts += [small] * ((megabytes * MB - sum(map(len, texts))) // len(small))
    OutputChunk.objects.bulk_create([OutputChunk(task_run=task_run, seq=n + 1, text=t) for n, t in enumerate(texts)], batch_size=20)
    size = sum(map(len, texts))
    TaskRun.objects.filter(pk=task_run.pk).update(output_seq=len(texts), output_bytes=size)
    client = Client()
    client.force_login(User.objects.create_superuser("bench", password="bench-password-1"))
    return f"/runs/{task_run.run_id}/tasks/{task_run.pk}/output.txt", client.cookies["sessionid"].value, size


def round_of_downloads(pid: int, port: int, url: str, cookie: str, expected: int, clients: int, rate: float) -> dict:
    """Run `clients` downloads at once while sampling the server's RSS every 20 ms."""
    before = rss_mib(pid)
    peak, done = before, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    durations: list[float] = []
    threads = [threading.Thread(target=lambda: durations.append(fetch(port, url, cookie, expected, rate))) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    sampler.join()
    if len(durations) != clients:
        raise SystemExit("a download failed (see above)")
    return {"before": before, "peak": peak, "after": rss_mib(pid), "seconds": max(durations)}


def fetch(port: int, url: str, cookie: str, expected: int, rate: float | None) -> float:
    """Download `url`, reading at most `rate` bytes a second; check it is `expected` bytes.
    Returns the seconds it took."""
    began = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("GET", url, headers={"Cookie": f"sessionid={cookie}"})
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"GET {url}: {response.status} {response.read()[:300]!r}")
    received = 0
    while piece := response.read(64 * 1024):
        received += len(piece)
        if rate:
            ahead = received / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)  # pacing the client, not synchronising
    connection.close()
    if received != expected:
        raise SystemExit(f"GET {url}: {received} bytes, expected {expected}")
    return time.monotonic() - began


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"process {pid} has no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("daphne exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"daphne did not listen on {port} within {timeout} s")


if __name__ == "__main__":
    sys.exit(main())
