"""How long the run page of a large run takes to render (server side), and its size.

Creates, in a temporary SQLite database, a plan of --tasks shell tasks in layers of 25 and a
finished run of it (every task succeeded, with a little output each), then renders the run
page --repeat times through Django's test client and prints the median and worst time.

    .venv/bin/python bench/run_page.py [--tasks 500] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ["MAGICBOX_DATA_DIR"] = tempfile.mkdtemp(prefix="magicbox-page-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}  # no engine here
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from orchestration.engine.output import append_chunk
    from orchestration.engine.scheduler import start_run
    from orchestration.models import TaskRun
    from orchestration.plans.store import import_text

    call_command("migrate", verbosity=0)
    tasks = [{"id": f"t{i}", "worker": "shell", "command": ["true"], "depends_on": [f"t{i - 25}"] if i >= 25 else []}
             for i in range(args.tasks)]
    revision, _ = import_text(json.dumps({"name": "Large", "parallel_execution": {"tasks": tasks}}), "large.yaml")
    run = start_run(revision.plan)
    now = timezone.now()
    for n, task_run in enumerate(run.task_runs.all()):
        append_chunk(task_run.pk, 1, f"output of {task_run.task_id}\n" * 20)
        TaskRun.objects.filter(pk=task_run.pk).update(
            state="succeeded", attempt=1, queued_at=now, started_at=now + timedelta(seconds=n // 25),
            finished_at=now + timedelta(seconds=n // 25 + 1), exit_code=0)
    run.state, run.started_at, run.finished_at = "succeeded", now, now + timedelta(seconds=args.tasks // 25 + 1)
    run.save()
    client = Client()
    client.force_login(User.objects.create_superuser("bench", password="bench-password-1"))
    times, size = [], 0
    for _ in range(args.repeat):
        began = time.perf_counter()
        response = client.get(f"/runs/{run.pk}/")
        times.append(time.perf_counter() - began)
        size = len(response.content)
        assert response.status_code == 200
    print(f"run page of {args.tasks} tasks: median {statistics.median(times):.3f} s, worst {max(times):.3f} s, "
          f"{size / 1024:.0f} KiB ({args.repeat} renders)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
