"""An installation heals: runs go on and end by themselves when Redis dies and comes back, when
a child of `serve` dies, or when PostgreSQL ends a worker's connection."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from orchestration.engine.scheduler import start_run
from orchestration.models import Run, StateChange, TaskRun
from tests.conftest import children_of, make_plan, process_alive, wait_until
from tests.engine.conftest import ROOT, test_database_url
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.django_db(transaction=True)


def gated_chain(ledger: Path, gate: Path, length: int = 4) -> str:
    """A chain t0 -> t1 -> …: each task appends its id to the ledger; the middle one first
    waits until the gate file exists (so the test can do harm while the run is under way)."""
    middle = length // 2
    tasks = []
    for i in range(length):
        wait = f"while [ ! -e '{gate}' ]; do sleep 0.05; done; " if i == middle else ""
        tasks.append({"id": f"t{i}", "worker": "shell", "depends_on": [f"t{i - 1}"] if i else [],
                      "command": ["sh", "-c", f"{wait}echo t{i} >> '{ledger}'"]})
    return json.dumps({"name": f"chain-{ledger.parent.name}", "parallel_execution": {"tasks": tasks}})


def middle_task_running(run: Run, length: int = 4) -> bool:
    return TaskRun.objects.filter(run=run, task_id=f"t{length // 2}", state="running").exists()


@pytest.mark.parametrize("kind", ["unix", "tcp"], ids=["embedded-redis", "external-redis"])
def test_workers_survive_redis_dying_and_coming_back_and_the_run_finishes_with_nothing_lost(kind, spawn_worker, tmp_path):
    redis = RedisServer(tmp_path, kind)
    redis.start()
    try:
        workers = [spawn_worker(REDIS_URL=redis.url) for _ in range(2)]
        ledger, gate = tmp_path / "ledger", tmp_path / "gate"
        run = start_run(make_plan(gated_chain(ledger, gate)))
        wait_until(lambda: middle_task_running(run), 120, "the run to reach its middle task")

        redis.kill()
        gate.touch()  # the run goes on without Redis: the sweep and local wake-ups carry it
        wait_until(lambda: all("cannot listen on the channel layer" in w.log.read_text() for w in workers), 60,
                   "both workers to notice Redis is gone")
        redis.start()
        wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 120, "the run to finish")
        assert Run.objects.get(pk=run.pk).state == "succeeded"
        assert ledger.read_text().split() == ["t0", "t1", "t2", "t3"], "every task ran, each once"
        assert all(w.poll() is None for w in workers), "no worker process exited"

        # Once Redis is back, wake-ups reach the workers again (a run started now finishes).
        second_ledger = tmp_path / "second" / "ledger"
        second_ledger.parent.mkdir()
        second = start_run(make_plan(gated_chain(second_ledger, gate)))
        wait_until(lambda: Run.objects.get(pk=second.pk).is_finished, 120, "a run started after Redis came back to finish")
        assert Run.objects.get(pk=second.pk).state == "succeeded"
    finally:
        redis.stop()


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="needs PostgreSQL: SQLite has no connection a server can end (CI's second pass runs it)")
def test_a_worker_whose_postgresql_connection_is_terminated_goes_on_and_the_run_finishes(spawn_worker, tmp_path):
    worker = spawn_worker(PGAPPNAME="magicbox-healing-worker")  # libpq names its connections so
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    run = start_run(make_plan(gated_chain(ledger, gate)))
    wait_until(lambda: middle_task_running(run), 120, "the run to reach its middle task")

    def end_the_workers_connections() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND application_name = 'magicbox-healing-worker'")
            return cursor.fetchone()[0]

    # The worker may be between two connections at any given moment (a thread's first query
    # opens one): end them as soon as there is one.
    wait_until(lambda: end_the_workers_connections() >= 1, 60, "the worker's connection to be ended")
    gate.touch()
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 120, "the run to finish")
    assert Run.objects.get(pk=run.pk).state == "succeeded"
    assert ledger.read_text().split() == ["t0", "t1", "t2", "t3"]
    assert worker.poll() is None, worker.log.read_text()[-3000:]
    assert "reconnecting" in worker.log.read_text(), "the worker's own connection was the one ended"


def child_running(serve: subprocess.Popen, needle: str) -> int | None:
    return next((pid for pid, cmd in children_of(serve.pid).items() if needle in cmd), None)


def page_answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def test_serve_restarts_each_child_that_dies_and_the_run_finishes(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k != "REDIS_URL"}
    env.update(DATABASE_URL=test_database_url(), MAGICBOX_DATA_DIR=str(tmp_path / "data"), MAGICBOX_SWEEP_INTERVAL="1",
               MAGICBOX_SANDBOX_WRITABLE=str(tmp_path))
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port), "--workers", "1",
                                  "--no-examples"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/schema/plan.json"
    try:
        wait_until(lambda: page_answers(url), 120, f"serve to answer:\n{log.read_text()}")
        ledger, gate = tmp_path / "ledger", tmp_path / "gate"
        run = start_run(make_plan(gated_chain(ledger, gate)))
        wait_until(lambda: middle_task_running(run), 120, "the run to reach its middle task")

        for needle in ("redis-server", "daphne", "runworker"):
            victim = wait_until(lambda: child_running(serve, needle), 60, f"serve's {needle} child")
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: (pid := child_running(serve, needle)) and pid != victim and pid, 60, f"serve to restart its {needle}")
        assert "restarted" in log.read_text()
        wait_until(lambda: page_answers(url), 60, "the restarted web server to answer")

        # The restarted worker's sweep finds the dead one's task (killing what its attempt left
        # running); the task then runs again to its end.
        middle = TaskRun.objects.get(run=run, task_id="t2")
        wait_until(lambda: StateChange.objects.filter(task_run=middle, reason__startswith="worker lost").exists(), 60,
                   "the killed worker's task to be recovered")
        gate.touch()
        wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 120, f"the run to finish:\n{log.read_text()[-3000:]}")
        assert Run.objects.get(pk=run.pk).state == "succeeded"
        assert ledger.read_text().split() == ["t0", "t1", "t2", "t3"]
        assert serve.poll() is None, "serve itself goes on"
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


@pytest.mark.usefixtures("unsandboxed")  # pids from inside a sandbox mean nothing here
def test_serve_stops_its_children_on_sighup_and_a_serve_killed_outright_has_its_children_stopped_at_the_next_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k != "REDIS_URL"}
    env.update(DATABASE_URL=test_database_url(), MAGICBOX_DATA_DIR=str(tmp_path / "data"), MAGICBOX_SANDBOX_WRITABLE=str(tmp_path))

    def start(log_name: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        with (tmp_path / log_name).open("w") as out:
            serve = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port), "--workers", "1",
                                      "--no-examples"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: page_answers(f"http://127.0.0.1:{port}/schema/plan.json"), 120, "serve to answer")
        wait_until(lambda: len(children_of(serve.pid)) == 3, 60, "redis, daphne and a worker")
        return serve, port

    serve, _ = start("first.log")
    children = list(children_of(serve.pid))
    serve.send_signal(signal.SIGHUP)  # its terminal was closed
    serve.wait(60)
    wait_until(lambda: not any(process_alive(pid) for pid in children), 30, "serve's children to stop with it")

    serve, port = start("second.log")
    children = list(children_of(serve.pid))
    serve.kill()  # serve itself dies: its children run on, unsupervised, holding the port
    serve.wait(60)
    assert all(process_alive(pid) for pid in children)
    serve, _ = start("third.log")  # same port is free again: the leftovers were stopped first
    try:
        assert "stopped 3 process(es) an earlier serve left running" in (tmp_path / "third.log").read_text()
        assert not any(process_alive(pid) for pid in children)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(60)
