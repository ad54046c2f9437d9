"""A long run history, and large runs, made fast (bulk inserts): for query-count tests and
bench/run_page.py."""
from __future__ import annotations

import json
from datetime import timedelta

from django.utils import timezone

from orchestration.models import OutputChunk, Plan, Run, TaskRun

STATES = ["succeeded", "failed", "cancelled", "succeeded", "timed_out"]


def many_runs(plan: Plan, count: int, user=None, batch: int = 2000) -> None:
    """Add `count` finished runs of `plan`'s latest revision, one a minute back from now, each with
    a task run per task of the revision (mixed states, some with a cost and tokens), every fifth
    a re-run of the one before. Bulk inserts in batches of `batch` runs."""
    revision = plan.latest_revision
    tasks = revision.spec.tasks
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
            TaskRun(run=run, task_id=task.id, position=p, worker=task.worker, upstream=task.depends_on,
                    state=STATES[(i + p) % len(STATES)], cost_usd=0.01 if p == 0 else None,
                    input_tokens=100 if p == 0 else None, output_tokens=10 if p == 0 else None)
            for i, run in enumerate(runs) for p, task in enumerate(tasks)], batch_size=5000)
        made += size


def large_run(tasks: int, name: str = "Large", layer: int = 25) -> Run:
    """A finished run of a new plan of `tasks` shell tasks, in layers of `layer` (each task waits
    for the one `layer` before it), one second a layer: every task succeeded with 20 lines of
    output, except task t1, which failed. Bulk inserts."""
    from orchestration.plans.store import import_text

    spec = [{"id": f"t{i}", "worker": "shell", "command": ["true"], "depends_on": [f"t{i - layer}"] if i >= layer else []}
            for i in range(tasks)]
    revision, _ = import_text(json.dumps({"name": name, "parallel_execution": {"tasks": spec}}), "large.yaml")
    now = timezone.now()
    run = Run.objects.create(plan=revision.plan, revision=revision, state="failed", created_at=now, started_at=now,
                             finished_at=now + timedelta(seconds=tasks // layer + 1), state_reason="1 of %d tasks did not succeed: t1 failed" % tasks)
    output = "".join(f"output line {n} of the task\n" for n in range(20))
    task_runs = TaskRun.objects.bulk_create([
        TaskRun(run=run, task_id=t["id"], position=p, worker="shell", upstream=t["depends_on"],
                state="failed" if p == 1 else "succeeded", attempt=1, exit_code=1 if p == 1 else 0,
                error="exited with code 1" if p == 1 else "", queued_at=now + timedelta(seconds=p // layer),
                started_at=now + timedelta(seconds=p // layer), finished_at=now + timedelta(seconds=p // layer + 1),
                output_seq=1, output_bytes=len(output))
        for p, t in enumerate(spec)], batch_size=2000)
    if not task_runs or task_runs[0].pk is None:  # backends that do not return keys from bulk inserts
        task_runs = list(run.task_runs.order_by("position"))
    OutputChunk.objects.bulk_create([OutputChunk(task_run=t, seq=1, text=output, newlines=output.count("\n")) for t in task_runs], batch_size=2000)
    return run
