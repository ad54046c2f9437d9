"""Benchmark: how close Magic Box's makespan comes to the critical path, against the seed's script.

Runs DAGs of sleeping `shell` tasks — a wide fan-out, a diamond, a chain, and a "ragged" DAG
where one slow branch sits beside a fast chain — through the real engine (in-process, on a
temporary SQLite database), and prints for each the makespan divided by the critical path
(1.00 is ideal), as median (min–max) over --repeat runs (bench/spread.py). In the same run it
executes the same DAGs with the seed's algorithm (all independent tasks at once, then each
dependent task one by one, in list order) and prints its ratio too, and the floor: an ideal
scheduler that spawns each task, sandboxed as the engine does, the moment its upstream tasks are
reaped (bench/floors.py). The runs alternate, and the machine's load average is printed before
and after.

    .venv/bin/python bench/makespan.py [--unit SECONDS] [--repeat N]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from floors import ideal_makespan  # bench/floors.py
from spread import spread  # bench/spread.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def dags(unit: float) -> dict[str, list[dict]]:
    """name -> tasks ({id, seconds, depends_on})."""
    fan_out = [{"id": "root", "seconds": unit, "depends_on": []}]
    fan_out += [{"id": f"leaf{i}", "seconds": unit, "depends_on": ["root"]} for i in range(16)]
    fan_out += [{"id": "join", "seconds": unit, "depends_on": [f"leaf{i}" for i in range(16)]}]
    diamond = [
        {"id": "a", "seconds": unit, "depends_on": []},
        {"id": "b", "seconds": 2 * unit, "depends_on": ["a"]},
        {"id": "c", "seconds": 2 * unit, "depends_on": ["a"]},
        {"id": "d", "seconds": unit, "depends_on": ["b", "c"]},
    ]
    chain = [{"id": f"s{i}", "seconds": unit, "depends_on": [f"s{i - 1}"] if i else []} for i in range(6)]
    ragged = [
        {"id": "slow", "seconds": 4 * unit, "depends_on": []},
        {"id": "fast", "seconds": unit, "depends_on": []},
        {"id": "f1", "seconds": unit, "depends_on": ["fast"]},
        {"id": "f2", "seconds": unit, "depends_on": ["f1"]},
        {"id": "g1", "seconds": unit, "depends_on": ["fast"]},
        {"id": "g2", "seconds": unit, "depends_on": ["fast"]},
        {"id": "end", "seconds": unit, "depends_on": ["slow", "f2", "g1", "g2"]},
    ]
    return {"fan-out (18 tasks)": fan_out, "diamond (4)": diamond, "chain (6)": chain, "ragged (7)": ragged}


def critical_path(tasks: list[dict]) -> float:
    from orchestration.plans.graph import critical_path as longest

    return longest({t["id"]: t["depends_on"] for t in tasks}, {t["id"]: t["seconds"] for t in tasks})[0]


def sleep_argv(seconds: float) -> list[str]:
    """coreutils sleep: starts in ~1 ms, so the figures show scheduling, not interpreter start-up."""
    return [shutil.which("sleep") or "/bin/sleep", f"{seconds:g}"]


async def seed_algorithm(tasks: list[dict]) -> float:
    """The seed's execute_parallel: independent tasks together, then dependents one by one."""

    async def run(task: dict) -> bool:
        proc = await asyncio.create_subprocess_exec(*sleep_argv(task["seconds"]))
        return await proc.wait() == 0

    start = time.monotonic()
    independent = [t for t in tasks if not t["depends_on"]]
    dependent = [t for t in tasks if t["depends_on"]]
    results = await asyncio.gather(*(run(t) for t in independent))
    done = {t["id"] for t, ok in zip(independent, results) if ok}
    for task in dependent:
        if all(d in done for d in task["depends_on"]) and await run(task):
            done.add(task["id"])
    return time.monotonic() - start


async def magic_box(tasks: list[dict], name: str) -> float:
    from asgiref.sync import sync_to_async

    from orchestration.engine.runtime import Engine
    from orchestration.engine.scheduler import start_run
    from orchestration.plans.store import import_text

    plan = {"name": name, "parallel_execution": {"tasks": [
        {"id": t["id"], "worker": "shell", "command": sleep_argv(t["seconds"]), "depends_on": t["depends_on"]} for t in tasks
    ]}}
    revision, _ = await sync_to_async(import_text)(json.dumps(plan), name)
    run = await sync_to_async(start_run)(revision.plan)
    engine = Engine()
    start = time.monotonic()
    await engine.wake()
    while engine.executing:
        await asyncio.gather(*list(engine.executing.values()))
    elapsed = time.monotonic() - start
    await sync_to_async(run.refresh_from_db)()
    assert run.state == "succeeded", run.state_reason
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unit", type=float, default=0.5, help="seconds one unit task sleeps (default 0.5)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per DAG; the median (min–max) is reported")
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="magicbox-bench-")
    os.environ["MAGICBOX_DATA_DIR"] = data
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("MAGICBOX_MAX_PARALLEL", "32")
    os.environ["DJANGO_SETTINGS_MODULE"] = "magicbox_web.settings"
    import django
    from django.conf import settings

    django.setup()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 100_000}}}
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import logging

    logging.getLogger("orchestration").setLevel(logging.ERROR)

    print(f"unit task = {args.unit} s sleep; ratio = makespan / critical path (1.00 is ideal); "
          f"median (min–max) of {args.repeat}; load average before: {_load()}")
    print("| DAG | critical path, s | Magic Box, s | ratio | ideal scheduler, sandboxed: ratio (floor) | seed script, s | ratio |"
          "\n|---|---|---|---|---|---|---|")
    for name, tasks in dags(args.unit).items():
        cp = critical_path(tasks)
        ours, ideal, seed = [], [], []
        for i in range(args.repeat):  # alternated, so a busy moment of the machine hits all three
            ours.append(asyncio.run(magic_box(tasks, f"{name} #{i}")))
            ideal.append(asyncio.run(ideal_makespan(tasks, lambda t: sleep_argv(t["seconds"]), Path(data) / f"ideal-{name}-{i}")))
            seed.append(asyncio.run(seed_algorithm(tasks)))
        print(f"| {name} | {cp:.2f} | {spread(ours, 2)} | {spread([t / cp for t in ours], 2)} | {spread([t / cp for t in ideal], 2)} "
              f"| {spread(seed, 2)} | {spread([t / cp for t in seed], 2)} |", flush=True)
    print(f"load average after: {_load()}")


def _load() -> str:
    """The 1, 5 and 15 minute load averages (/proc/loadavg)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
