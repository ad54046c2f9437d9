"""A long run history made fast (bulk inserts): for query-count tests and bench/run_page.py."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from orchestration.models import Plan, Run, TaskRun

STATES = ["succeeded", "failed", "cancelled", "succeeded", "timed_out"]


def many_runs(plan: Plan, count: int, user=None, batch: int = 2000) -> None:
    """Add `count` finished runs of `plan`'s latest revision, one a minute back from now, each with
    a task run per task of the revision (mixed states, some with a cost and tokens), every fifth
    a re-run of the one before. Bulk inserts in batches of `batch` runs."""
    revision = plan.latest_revision
    tasks = revision.spec["tasks"]
    now = timezone.now()
    made = 0
    while made < count:
        size = min(batch, count - made)
        runs = Run.objects.bulk_create([
            Run(plan=plan, revision=revision, started_by=user, state=STATES[(made + i) % len(STATES)],
                created_at=now - timedelta(minutes=made + i), started_at=now - timedelta(minutes=made + i),
                finished_at=now - timedelta(minutes=made + i) + timedelta(seconds=30))
            for i in range(size)])
        if not runs or runs[0].pk is None:  # backends that do not return keys from bulk inserts
            runs = list(Run.objects.filter(plan=plan).order_by("-id")[:size])[::-1]
        for i, run in enumerate(runs):
            if i % 5 == 4:
                run.rerun_of_id = runs[i - 1].pk
        Run.objects.bulk_update([r for i, r in enumerate(runs) if i % 5 == 4], ["rerun_of"])
        TaskRun.objects.bulk_create([
            TaskRun(run=run, task_id=task["id"], position=p, worker=task["worker"], upstream=task["depends_on"],
                    state=STATES[(i + p) % len(STATES)], cost_usd=0.01 if p == 0 else None,
                    input_tokens=100 if p == 0 else None, output_tokens=10 if p == 0 else None)
            for i, run in enumerate(runs) for p, task in enumerate(tasks)], batch_size=5000)
        made += size
