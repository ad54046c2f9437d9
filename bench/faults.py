"""Fault injection: every kind of background work goes on while processes die at random.

Each cycle runs a 12-task plan (3 layers of shell tasks appending to a ledger) whose plan has a
command completion criterion and a git workspace with a check, then integrates the run, and
drafts a plan (a stand-in for the claude CLI, configured as an administrator would): so task
runs, checks, integrations and drafts are all in progress while the faults land. Scenarios,
each with its own cycles, a hit every 1-3 s:

- workers: a random `runworker` process is killed (SIGKILL) or stopped (SIGTERM), and started
  again a moment later;
- redis: Redis is killed and started again 0.5-3 s later (the workers must listen again);
- serve: `manage.py serve` runs everything, and a random child of it (the web server, a
  worker, the embedded Redis) is killed with SIGKILL; serve must restart it.

Setups: "embedded" (a temporary SQLite file, a redis-server on a unix socket like the embedded
one) and "scaled" (PostgreSQL, a fresh database on --postgres, and a redis-server on TCP like
an external one). The report has a row per setup, scenario and kind of work: how many ended
(and how), how many times work was queued again after a stopped or dead worker, the longest
time from a kill to that re-queue (the lease is LEASE_SECONDS), work stuck (not ended when its
cycle timed out) and work lost (a succeeded task without its ledger line, a run that never
ended, a draft or integration left unfinished).

    .venv/bin/python bench/faults.py [--setups embedded,scaled] [--scenarios workers,redis,serve]
                                     [--cycles 2] [--seed 1] [--postgres postgres://postgres@127.0.0.1:5432/magicbox_faults]

Exit status 0 when nothing was stuck or lost.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LEASE_SECONDS = 3
KINDS = ("task run", "check", "draft", "integration")
DRAFT_ANSWER = "name: Drafted\nparallel_execution:\n  tasks:\n    - {id: a, worker: shell, command: 'true'}\n"
SLOW_THEN_PRINT = "import sys, time; time.sleep(float(sys.argv[1])); print(sys.argv[2], flush=True)"


# --- the work ---------------------------------------------------------------------------------

def plan_spec(number: int, ledger: Path, repo: Path, rng: random.Random) -> dict:
    """12 shell tasks in 3 layers of 4 (each waits for one or two of the layer before), a command
    criterion and a workspace whose check takes a moment."""
    tasks = []
    for layer in range(3):
        for i in range(4):
            upstream = sorted({f"l{layer - 1}t{rng.randrange(4)}" for _ in range(rng.randint(1, 2))}) if layer else []
            script = 'echo "$1 working"; sleep "$2"; echo "$1" >> "$3"; echo "$1 DONE-MARKER"'
            tasks.append({"id": f"l{layer}t{i}", "worker": "shell", "retries": 2, "depends_on": upstream,
                          "command": ["sh", "-c", script, "sh", f"l{layer}t{i}", f"{rng.uniform(0.3, 1.5):.2f}", str(ledger)]})
    slow = ["python", "-c", SLOW_THEN_PRINT, f"{rng.uniform(1, 2):.2f}", "checked"]
    return {"name": f"Fault injection {number}",
            "workspace": {"repository": str(repo), "base": "main", "check": slow},
            "parallel_execution": {"tasks": tasks, "completion_criteria": [{"name": "slow check", "command": slow}]}}


def make_repo(directory: Path) -> Path:
    repo = directory / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "base"]):
        subprocess.run(["git", "-c", "user.name=F", "-c", "user.email=f@example.com", *args], cwd=repo, check=True,
                       capture_output=True, timeout=60)
    return repo


# --- processes --------------------------------------------------------------------------------

class Redis:
    """A redis-server of the bench's own: on a unix socket (embedded) or TCP (external)."""

    def __init__(self, directory: Path, tcp: bool) -> None:
        if tcp:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
        else:
            self.url = f"unix://{directory / 'redis.sock'}"
        self.directory, self.proc = directory, None

    def start(self) -> None:
        from orchestration import embedded_redis

        self.proc = embedded_redis.spawn(self.url, self.directory / "redis", timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Workers:
    """`runworker` processes started, hit and restarted by slot number."""

    def __init__(self, count: int, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen | None] = [None] * count
        for slot in range(count):
            self.start(slot)

    def start(self, slot: int) -> None:
        with (self.logs / f"worker{slot}.log").open("a") as log:
            self.procs[slot] = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runworker", "magicbox.engine"],
                                                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def children_of(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid and stat[0] != "Z":
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                pass
    return found


# --- one setup --------------------------------------------------------------------------------

def run_setup(args) -> dict:
    """Run every scenario on one setup (in this process); return the tallies."""
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix=f"magicbox-faults-{args.setup}-"))
    scaled = args.setup == "scaled"
    if scaled:
        import psycopg

        admin = re.sub(r"/[^/]*$", "/postgres", args.postgres)
        name = args.postgres.rsplit("/", 1)[1]
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        database_url = args.postgres
    else:
        database_url = f"sqlite:///{work / 'faults.sqlite3'}"
    redis = Redis(work, tcp=scaled)
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(MAGICBOX_DATA_DIR=str(work / "data"), DATABASE_URL=database_url, REDIS_URL=redis.url, MAGICBOX_SWEEP_INTERVAL="1",
               MAGICBOX_LEASE_SECONDS=str(LEASE_SECONDS), MAGICBOX_LOG_LEVEL="WARNING")
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from orchestration.models import WorkerSetting

    call_command("migrate", verbosity=0)
    WorkerSetting.objects.create(worker="claude", program=sys.executable,
                                 args=["-c", SLOW_THEN_PRINT, "2", json.dumps({"type": "result", "subtype": "success",
                                                                                "is_error": False, "result": DRAFT_ANSWER})],
                                 env={"ANTHROPIC_API_KEY": "bench"})
    repo = make_repo(work)
    results = {}
    try:
        for scenario in args.scenarios:
            results[scenario] = scenario_run(scenario, args, rng, env, work, redis, repo)
    finally:
        redis.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def scenario_run(scenario: str, args, rng: random.Random, env: dict[str, str], work: Path, redis: Redis, repo: Path) -> dict:
    """Cycles of one scenario; the tally per kind of work."""
    from orchestration.engine.integration import request_integration
    from orchestration.engine.scheduler import start_run
    from orchestration.models import Integration, PlanDraft, StateChange, TaskRun, Verdict
    from orchestration.plans.store import import_text

    logs = work / f"logs-{scenario}"
    logs.mkdir()
    serve = workers = None
    if scenario == "serve":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve_env = dict(env)
        if args.setup == "embedded":  # serve starts and watches its own Redis
            redis.kill()
            serve_env.pop("REDIS_URL")
        with (logs / "serve.log").open("w") as log:
            serve = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port), "--workers", "3",
                                      "--no-examples"], cwd=ROOT, env=serve_env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    else:
        workers = Workers(3, env, logs)
    hits, killed_at = Counter(), {}  # killed_at: pid -> when it was killed
    failures: list[str] = []
    tally = {kind: Counter() for kind in KINDS}
    latency: dict[str, list[float]] = defaultdict(list)
    models = {"task run": TaskRun, "check": Verdict, "draft": PlanDraft, "integration": Integration}
    restart_at: dict[int, float] = {}
    redis_back_at: float | None = None

    def hit() -> None:
        nonlocal redis_back_at
        if scenario == "workers":
            alive = [s for s, p in enumerate(workers.procs) if p is not None and p.poll() is None]
            if len(alive) > 1:
                slot = rng.choice(alive)
                how = rng.choice([signal.SIGKILL, signal.SIGTERM])
                proc = workers.procs[slot]
                killed_at[proc.pid] = time.time()
                proc.send_signal(how)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                workers.procs[slot] = None
                restart_at[slot] = time.monotonic() + rng.uniform(0.2, 2.0)
                hits[f"worker {signal.Signals(how).name}"] += 1
        elif scenario == "redis" and redis_back_at is None:
            redis.kill()
            redis_back_at = time.monotonic() + rng.uniform(0.5, 3.0)
            hits["redis killed"] += 1
        elif scenario == "serve":
            children = children_of(serve.pid)
            if children:
                pid, cmd = rng.choice(sorted(children.items()))
                what = "redis" if "redis-server" in cmd else "daphne" if "daphne" in cmd else "worker"
                killed_at[pid] = time.time()
                os.kill(pid, signal.SIGKILL)
                hits[f"{what} SIGKILL"] += 1

    def heal() -> None:
        nonlocal redis_back_at
        now = time.monotonic()
        for slot, when in list(restart_at.items()):
            if now >= when:
                workers.start(slot)
                del restart_at[slot]
        if redis_back_at is not None and now >= redis_back_at:
            redis.start()
            redis_back_at = None

    try:
        for cycle in range(1, args.cycles + 1):
            ledger = work / f"{scenario}-ledger{cycle}.txt"
            ledger.touch()
            revision, _ = import_text(json.dumps(plan_spec(cycle, ledger, repo, rng)), f"faults-{scenario}-{cycle}.yaml")
            run = start_run(revision.plan, revision=revision, via="bench/faults.py")
            draft = PlanDraft.objects.create(goal=f"cycle {cycle}", worker="claude")
            integration = None
            began = time.monotonic()
            next_hit = began + rng.uniform(1, 3)
            while time.monotonic() - began < args.timeout:
                run.refresh_from_db()
                if run.is_finished and integration is None:
                    integration = request_integration(run) if run.state == "succeeded" else None
                    if integration is None:
                        break
                if run.is_finished and Integration.objects.get(pk=integration.pk).is_finished and PlanDraft.objects.get(pk=draft.pk).is_finished:
                    break
                heal()
                if time.monotonic() >= next_hit:
                    hit()
                    next_hit = time.monotonic() + rng.uniform(1, 3)
                time.sleep(0.1)
            # Heal everything, then let what is left end before judging (a bounded wait).
            for slot in list(restart_at):
                restart_at[slot] = 0
            if redis_back_at is not None:
                redis_back_at = 0
            heal()
            settle = time.monotonic()
            rows = {"task run": list(TaskRun.objects.filter(run=run)), "check": list(Verdict.objects.filter(run=run)),
                    "draft": [PlanDraft.objects.get(pk=draft.pk)],
                    "integration": [Integration.objects.get(pk=integration.pk)] if integration else []}
            while any(not r.is_finished for kind_rows in rows.values() for r in kind_rows) and time.monotonic() - settle < 60:
                time.sleep(0.5)
                rows = {kind: [type(r).objects.get(pk=r.pk) for r in kind_rows] for kind, kind_rows in rows.items()}
            run.refresh_from_db()
            done_lines = Counter(ledger.read_text().split())
            for kind, kind_rows in rows.items():
                for row in kind_rows:
                    t = tally[kind]
                    t["total"] += 1
                    t[row.state if row.is_finished else "stuck"] += 1
                    if row.state == "failed" and kind != "task run":
                        failures.append(f"{scenario} {kind} {row.pk}: {row.state_reason or getattr(row, 'summary', '')}"[:400])
                    changes = StateChange.objects.filter(kind=models[kind].KIND, object_id=row.pk, from_state="running")
                    for change in changes.filter(reason__startswith="interrupted"):
                        t["requeued after a stop"] += 1
                    for change in changes.filter(reason__startswith="worker lost"):
                        t["requeued after a death"] += 1
                        owner = re.search(r":(\d+):\d+", change.reason)
                        if owner and int(owner.group(1)) in killed_at:
                            latency[kind].append(change.at.timestamp() - killed_at[int(owner.group(1))])
                    if kind == "task run" and row.state == "succeeded" and (
                            f"{row.task_id} DONE-MARKER" not in row.output_text() or not done_lines[row.task_id]):
                        t["lost"] += 1
                    if kind == "task run":
                        t["ran twice"] += max(0, done_lines[row.task_id] - 1)
            if not run.is_finished:
                tally["task run"]["runs not ended"] += 1
    finally:
        if workers is not None:
            workers.stop_all()
        if serve is not None:
            os.killpg(serve.pid, signal.SIGTERM)
            try:
                serve.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
                serve.wait()
        if scenario == "serve" and args.setup == "embedded":
            redis.start()
    return {"hits": dict(hits), "tally": {k: dict(v) for k, v in tally.items()},
            "latency": {k: max(v) for k, v in latency.items() if v}, "failures": failures}


# --- the report -------------------------------------------------------------------------------

def report(results: dict[str, dict]) -> int:
    print(f"\nLease {LEASE_SECONDS} s. Per setup and scenario: the faults, then each kind of work.\n")
    print("| setup | scenario | work | total | ended (states) | re-queued after stop / death | longest kill → re-queue | stuck | lost |")
    print("|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for setup, scenarios in results.items():
        for scenario, result in scenarios.items():
            hits = ", ".join(f"{n} {what}" for what, n in sorted(result["hits"].items())) or "none"
            print(f"| {setup} | {scenario} | *faults: {hits}* | | | | | | |")
            for kind in KINDS:
                t = Counter(result["tally"].get(kind, {}))
                states = ", ".join(f"{t[s]} {s}" for s in ("succeeded", "passed", "failed", "unverified", "cancelled", "skipped",
                                                          "timed_out") if t[s])
                longest = result["latency"].get(kind)
                lost = t["lost"] + t["runs not ended"]
                bad += t["stuck"] + lost
                extra = f" ({t['ran twice']} ran twice)" if t["ran twice"] else ""
                print(f"| {setup} | {scenario} | {kind} | {t['total']} | {states or '–'} | {t['requeued after a stop']} / "
                      f"{t['requeued after a death']} | {f'{longest:.1f} s' if longest is not None else '–'} | {t['stuck']} | {lost}{extra} |")
    for setup, scenarios in results.items():
        for scenario, result in scenarios.items():
            for failure in result.get("failures", []):
                print(f"- {setup}: {failure}")
    return 0 if bad == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", default="embedded,scaled")
    parser.add_argument("--scenarios", default="workers,redis,serve")
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=240, help="seconds a cycle may take before what is left counts as stuck")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/magicbox_faults",
                        help="the PostgreSQL database the scaled setup creates afresh")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (databases, logs)")
    parser.add_argument("--setup", help=argparse.SUPPRESS)  # run one setup in this process, print JSON
    args = parser.parse_args()
    args.scenarios = args.scenarios.split(",")
    if args.setup:
        print(json.dumps(run_setup(args)))
        return 0
    results = {}
    for setup in args.setups.split(","):
        print(f"setup {setup}: {', '.join(args.scenarios)}, {args.cycles} cycle(s) each …", flush=True)
        done = subprocess.run([sys.executable, __file__, "--setup", setup, "--scenarios", ",".join(args.scenarios),
                               "--cycles", str(args.cycles), "--seed", str(args.seed), "--timeout", str(args.timeout),
                               "--postgres", args.postgres, *(["--keep"] if args.keep else [])],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-5000:])
            return 2
        results[setup] = json.loads(done.stdout.strip().splitlines()[-1])
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
