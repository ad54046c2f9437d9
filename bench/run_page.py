"""How long the run page of a large run takes to render (server side), its queries and size.

Creates, in a temporary SQLite database, for each size of --tasks a plan of that many shell
tasks in layers of 25 and a finished run of it (every task but one succeeded, with 20 lines of
output each: tests/history.py large_run), then renders the run page --repeat times through
Django's test client and prints a table of median (min-max) ms, queries and KiB:

    .venv/bin/python bench/run_page.py [--tasks 100,500,2000] [--repeat 5]

With --history N it instead measures the runs list (unfiltered, and filtered by state, plan
name and starter) and the plan page over a plan with N finished runs of 3 tasks, and prints
median (min-max) server time and query count. --postgres URL uses that PostgreSQL server
(database magicbox_bench_runs, created and dropped by the bench) instead of SQLite:

    .venv/bin/python bench/run_page.py --history 10000 [--postgres postgres://postgres@127.0.0.1:5432/magicbox_bench_runs]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from database import recreate  # bench/database.py
from spread import spread  # bench/spread.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="100,500,2000", help="run sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--history", type=int, default=0, help="runs of one plan: measure the runs list and plan page")
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL whose database the bench creates and drops")
    args = parser.parse_args()
    os.environ["MAGICBOX_DATA_DIR"] = tempfile.mkdtemp(prefix="magicbox-page-")
    if args.postgres:
        os.environ["DATABASE_URL"] = args.postgres
        recreate(args.postgres)
    try:
        return history(args) if args.history else run_page(args)
    finally:
        if args.postgres:
            from django.db import connections

            connections.close_all()
            recreate(args.postgres, create=False)



def _setup():
    """Django set up for the bench (no engine: an in-memory channel layer), migrated."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}  # no engine here
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def history(args) -> int:
    """The runs list and plan page over --history runs: a table of median (min-max) ms and queries."""
    _setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from orchestration.plans.store import import_text
    from tests.history import many_runs

    tasks = [{"id": "build", "worker": "shell", "command": ["true"]},
             {"id": "review", "worker": "claude", "description": "Review", "depends_on": ["build"]},
             {"id": "api", "worker": "codex", "description": "API"}]
    revision, _ = import_text(json.dumps({"name": "History", "parallel_execution": {"tasks": tasks}}), "history.yaml")
    user = User.objects.create_superuser("bench", password="bench-password-1")
    many_runs(revision.plan, args.history, user)
    client = Client()
    client.force_login(user)
    pages = {"runs list": "/runs/", "runs list, page 100": "/runs/?page=100",
             "runs list, filtered": f"/runs/?state=failed&q=hist&started_by=bench&plan={revision.plan_id}",
             "plan page": f"/plans/{revision.plan_id}/"}
    database = connection.vendor
    print(f"| page ({args.history} runs, {database}) | median (min–max) ms | queries |\n|---|---|---|")
    for name, url in pages.items():
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                response = client.get(url)
                times.append(1000 * (time.perf_counter() - began))
            assert response.status_code == 200, (url, response.status_code)
        print(f"| {name} | {spread(times, 0)} | {len(captured)} |")
    return 0


def run_page(args) -> int:
    """The run page of one finished run of each size in --tasks: a table of median (min-max) ms,
    queries and KiB over --repeat renders."""
    _setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tests.history import large_run

    client = Client()
    client.force_login(User.objects.create_superuser("bench", password="bench-password-1"))
    print(f"| run page ({connection.vendor}) | median (min–max) ms | queries | KiB |\n|---|---|---|---|")
    for size in [int(n) for n in args.tasks.split(",")]:
        run = large_run(size, f"Large {size}")
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                response = client.get(f"/runs/{run.pk}/")
                times.append(1000 * (time.perf_counter() - began))
            assert response.status_code == 200
        print(f"| {size} tasks | {spread(times, 0)} | {len(captured)} | {len(response.content) / 1024:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
