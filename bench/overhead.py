"""Benchmark: what the engine costs per task, beside the cost of starting the task's process.

Runs plans of shell tasks through the real engine, hosted as `manage.py runplan` and `runworker`
host it (an EngineWorker listening on the channel layer), on a temporary SQLite database with
the embedded Redis (the default installation), or with --postgres on that PostgreSQL server
(database created and dropped by the bench) and the Redis at --redis. Tasks run in the task
sandbox (bwrap) unless MAGICBOX_SANDBOX=off is set, as the engine runs them; the bare-spawn
floor is measured the same way, in the same run. Prints tables of median (min–max) over
--repeat repeats, and the machine's load average before and after.

    .venv/bin/python bench/overhead.py [--repeat 5] [--sizes 40,400,2000]
    .venv/bin/python bench/overhead.py --postgres postgres://postgres@127.0.0.1:5432/magicbox_bench_overhead \
        [--redis redis://127.0.0.1:6379/7]

What is measured (wall time: from before start_run to the run's finished_at):
- chain of 40 `true` tasks: per-task overhead = (wall − 40 bare sandboxed `true` spawns in
  sequence, measured just before) / 40, in ms;
- 200 independent `true` tasks, MAGICBOX_MAX_PARALLEL=16, one engine process: tasks/s;
- with --postgres: the same 200 tasks with one and with two `runworker` processes (16 at once
  over both), tasks/s and the ratio;
- chains of --sizes tasks: per-task cost (wall / N − one bare spawn), ms, to show it flat;
- a fan-out of 16 (a root, 16 leaves printing their start time): the spread of the leaves'
  start times, ms;
- the floors of the last two in the same run: 200 sandboxed `true`s spawned 16 at a time by a
  bare asyncio loop (per s), and the start spread of 16 sandboxed `sh`s spawned together (ms)
  (bench/floors.py);
- the whole machine's CPU per task (/proc/stat, kernel included) for the bare spawns and for the
  engine's 200 tasks, and the rate the cores would allow at that cost; with --postgres, how busy
  the cores were with one process, which bounds what a second one can add.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from database import recreate  # bench/database.py
from floors import TRUE, MachineCPU, bare_fan_out, bare_parallel  # bench/floors.py
from spread import spread  # bench/spread.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

def loadavg() -> str:
    """The first three fields of /proc/loadavg (1, 5 and 15 minute load averages)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def chain(n: int) -> list[dict]:
    """n `true` tasks, each waiting for the one before."""
    return [{"id": f"t{i}", "worker": "shell", "command": [TRUE], "depends_on": [f"t{i - 1}"] if i else []} for i in range(n)]


def independent(n: int) -> list[dict]:
    """n `true` tasks waiting for nothing."""
    return [{"id": f"t{i}", "worker": "shell", "command": [TRUE], "depends_on": []} for i in range(n)]


def fan_out(width: int) -> list[dict]:
    """A root and `width` leaves; each leaf prints its start time (ns since the epoch), then sleeps
    0.3 s, so all leaves are running at once."""
    leaves = [{"id": f"leaf{i}", "worker": "shell", "command": ["sh", "-c", "date +%s%N; sleep 0.3"], "depends_on": ["root"]}
              for i in range(width)]
    return [{"id": "root", "worker": "shell", "command": [TRUE], "depends_on": []}, *leaves]



_plans = 0


def _start(tasks: list[dict]):
    """Import a plan of `tasks` and start a run of it; return (run id, wall-clock start)."""
    from django.utils import timezone

    from orchestration.engine.scheduler import start_run
    from orchestration.plans.store import import_text

    global _plans
    _plans += 1
    revision, _ = import_text(json.dumps({"name": f"bench {_plans}", "parallel_execution": {"tasks": tasks}}), "bench.json")
    began = timezone.now()
    return start_run(revision.plan).pk, began


def _ended(run_id: int):
    from orchestration.models import Run

    return Run.objects.filter(pk=run_id).values_list("state", "state_reason", "finished_at").get()


async def run_and_time(tasks: list[dict], timeout: float = 600) -> tuple[float, int]:
    """Start a run of `tasks` (the engine, wherever it runs, takes it from there) and wait for it
    to succeed; return (seconds from before start_run to the run's finished_at, run id)."""
    def ended(run_id):
        # The polling thread keeps its connection: a new one every 50 ms costs PostgreSQL a
        # backend process each time, CPU the engine being measured shares on a small machine.
        return _ended(run_id)

    run_id, began = await asyncio.to_thread(_start_closing, tasks)
    deadline = time.monotonic() + timeout
    while True:
        # Polled from a thread of its own, not the engine's database thread.
        state, reason, finished = await asyncio.to_thread(ended, run_id)
        if finished is not None:
            assert state == "succeeded", (state, reason)
            return (finished - began).total_seconds(), run_id
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {state} after {timeout} s")
        await asyncio.sleep(0.05)


def _start_closing(tasks):
    from django.db import connection

    try:
        return _start(tasks)
    finally:
        connection.close()


async def bare_spawns(n: int, scratch: Path) -> float:
    """Seconds to spawn and reap `n` sandboxed `true`s in sequence (bench/floors.py)."""
    return n / await bare_parallel(n, 1, scratch)


def _leaf_starts(run_id: int) -> list[int]:
    from django.db import connection

    from orchestration.models import TaskRun

    try:
        return [int(r.strip()) for r in TaskRun.objects.filter(run_id=run_id, task_id__startswith="leaf").values_list("result", flat=True)]
    finally:
        connection.close()


class InProcess:
    """An engine hosted in this process as runplan hosts it: an EngineWorker on the channel layer."""

    async def __aenter__(self):
        from channels.layers import get_channel_layer
        from channels.routing import get_default_application
        from django.conf import settings

        from orchestration.management.commands.runworker import EngineWorker

        worker = EngineWorker(application=get_default_application(), channels=[settings.MAGICBOX_ENGINE_CHANNEL],
                              channel_layer=get_channel_layer())
        worker.handle_signals = False
        self.serving = asyncio.create_task(worker.handle())
        return self

    async def __aexit__(self, *exc):
        self.serving.cancel()
        await asyncio.gather(self.serving, return_exceptions=True)


def spawn_workers(n: int, env: dict[str, str], data: Path) -> list[subprocess.Popen]:
    """Start `n` `manage.py runworker magicbox.engine` processes with `env`."""
    procs = []
    data.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        log = (data / f"worker{i}.log").open("w")
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runworker", "magicbox.engine"], cwd=ROOT,
                                      env={**env, "MAGICBOX_DATA_DIR": str(data / f"worker{i}")}, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    import signal

    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _owners(run_id: int) -> set[str]:
    from django.db import connection

    from orchestration.models import TaskRun

    try:
        return {c.rsplit(":", 1)[0] for c in TaskRun.objects.filter(run_id=run_id).values_list("claimed_by", flat=True)}
    finally:
        connection.close()


async def workers_rate(n: int, args, env: dict[str, str], data: Path) -> tuple[list[float], list[float]]:
    """(tasks/s of 200 independent tasks done by `n` runworker processes, --repeat times; how many
    of the machine's cores were busy during each of those runs)."""
    procs = spawn_workers(n, env, data / f"workers-{n}")
    try:
        # Warm up until every process has taken work (each is listening).
        for _ in range(20):
            _, run_id = await run_and_time([{**t, "command": ["sleep", "0.2"]} for t in independent(32)])
            if len(await asyncio.to_thread(_owners, run_id)) >= n:
                break
        else:
            raise RuntimeError(f"not all {n} worker processes took work")
        rates, busy = [], []
        for _ in range(args.repeat):
            with MachineCPU() as cpu:
                wall, _ = await run_and_time(independent(200))
            rates.append(200 / wall)
            busy.append(cpu.busy_seconds / cpu.wall_seconds)
        return rates, busy
    finally:
        stop_workers(procs)


async def bench(args, data: Path) -> None:
    from django.conf import settings
    from django.db import connection

    vendor = connection.vendor
    sandboxed = "sandboxed (bwrap)" if settings.MAGICBOX_SANDBOX != "off" else "unsandboxed (MAGICBOX_SANDBOX=off)"
    channel = "embedded Redis" if settings.EMBEDDED_REDIS else "Redis"
    print(f"database: {vendor}; channel layer: {channel}; tasks {sandboxed}; load average before: {loadavg()}")
    floor, overhead, rates, spreads, rate_floor, spread_floor, cpu_floor, cpu_rate = [], [], [], [], [], [], [], []
    per_size: dict[int, list[float]] = {n: [] for n in args.sizes}
    async with InProcess():
        await run_and_time(chain(3))  # warm-up: imports, first connections, the sandbox probe
        for i in range(args.repeat):
            settings.MAGICBOX_MAX_PARALLEL = 16
            spawn_s = await bare_spawns(40, data / "bare")
            wall, _ = await run_and_time(chain(40))
            floor.append(1000 * spawn_s / 40)
            overhead.append(1000 * (wall - spawn_s) / 40)
            with MachineCPU() as cpu:
                rate_floor.append(await bare_parallel(200, 16, data / "bare"))
            cpu_floor.append(cpu.per(200))
            with MachineCPU() as cpu:
                wall, _ = await run_and_time(independent(200))
            rates.append(200 / wall)
            cpu_rate.append(cpu.per(200))
            settings.MAGICBOX_MAX_PARALLEL = 32
            spread_floor.append(await bare_fan_out(16, data / "bare"))
            _, run_id = await run_and_time(fan_out(16))
            starts = await asyncio.to_thread(_leaf_starts, run_id)
            spreads.append((max(starts) - min(starts)) / 1e6)
            settings.MAGICBOX_MAX_PARALLEL = 16
            print(f"  repeat {i + 1}: {overhead[-1]:.1f} ms/task over a {floor[-1]:.1f} ms spawn; {rates[-1]:.0f} tasks/s; "
                  f"fan-out spread {spreads[-1]:.0f} ms; load {loadavg()}", flush=True)
        for n in args.sizes:
            for _ in range(args.scale_repeat or args.repeat):
                spawn_s = await bare_spawns(40, data / "bare")
                wall, _ = await run_and_time(chain(n), timeout=3600)
                per_size[n].append(1000 * (wall / n - spawn_s / 40))
            print(f"  chain of {n}: {spread(per_size[n])} ms/task; load {loadavg()}", flush=True)

    print(f"\n| {vendor}, one engine process | median (min–max) |\n|---|---|")
    print(f"| bare sandboxed `true` spawn, ms | {spread(floor)} |")
    print(f"| per-task overhead, chain of 40, ms | {spread(overhead)} |")
    print(f"| 200 bare sandboxed `true` spawns, 16 at once, per s (floor) | {spread(rate_floor, 0)} |")
    print(f"| 200 independent tasks, 16 at once, tasks/s | {spread(rates, 0)} |")
    cores = os.cpu_count() or 1
    print(f"| machine CPU per bare spawn, ms (all cores, kernel included) | {spread(cpu_floor)} |")
    print(f"| machine CPU per task of the 200, ms | {spread(cpu_rate)} |")
    print(f"| ceiling if every one of the {cores} cores were busy: {cores} × 1000 / CPU per task, tasks/s | "
          f"{spread([cores * 1000 / c for c in cpu_rate], 0)} |")
    print(f"| 16 bare sandboxed `sh` spawned together: start spread, ms (floor) | {spread(spread_floor)} |")
    print(f"| fan-out of 16: leaves' start spread, ms | {spread(spreads)} |")
    for n in args.sizes:
        print(f"| per-task cost, chain of {n}, ms (wall/N − spawn) | {spread(per_size[n])} |")

    if args.postgres:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
        env.update({"DATABASE_URL": args.postgres, "REDIS_URL": args.redis, "MAGICBOX_MAX_PARALLEL": "16",
                    "MAGICBOX_LOG_LEVEL": "WARNING"})
        one, busy_one = await workers_rate(1, args, env, data)
        two, busy_two = await workers_rate(2, args, env, data)
        ratio = [b / a for a, b in zip(sorted(one), sorted(two))]
        print("\n| 200 independent tasks, 16 at once over all processes | tasks/s |\n|---|---|")
        print(f"| one runworker process | {spread(one, 0)} |")
        print(f"| two runworker processes | {spread(two, 0)} |")
        print(f"| ratio two / one (medians: {sorted(two)[len(two) // 2] / sorted(one)[len(one) // 2]:.2f}) | {spread(ratio, 2)} |")
        cores = os.cpu_count() or 1
        print(f"| cores busy (of {cores}), one process / two | {spread(busy_one, 2)} / {spread(busy_two, 2)} |")
        print(f"| ceiling of the ratio: {cores} / cores busy with one process | {spread([cores / b for b in busy_one], 2)} |")
    print(f"\nload average after: {loadavg()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="40,400,2000", help="chain lengths for the per-task cost table, comma-separated")
    parser.add_argument("--scale-repeat", type=int, default=0, help="repeats per chain length (default: --repeat)")
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL whose database the bench creates and drops")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7", help="the Redis used with --postgres")
    args = parser.parse_args()
    args.sizes = [int(n) for n in args.sizes.split(",") if n]

    data = Path(tempfile.mkdtemp(prefix="magicbox-overhead-"))
    os.environ["MAGICBOX_DATA_DIR"] = str(data / "data")
    os.environ["MAGICBOX_LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
    redis = None
    if args.postgres:
        os.environ["DATABASE_URL"] = args.postgres
        os.environ["REDIS_URL"] = args.redis
        recreate(args.postgres)
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("REDIS_URL", None)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from orchestration import embedded_redis

        call_command("migrate", verbosity=0)
        redis = embedded_redis.ensure_running()
        asyncio.run(bench(args, data))
    finally:
        from orchestration import embedded_redis

        embedded_redis.stop(redis)
        if args.postgres:
            from django.db import connections

            connections.close_all()
            recreate(args.postgres, create=False)
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
