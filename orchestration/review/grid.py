"""A plan's recent runs as a grid (tasks down, runs across, cells coloured by task state), like
the grid views of Airflow-style DAG runners."""
from __future__ import annotations

from orchestration.models import Plan, TaskRun
from orchestration.plans.spec import PlanSpec

GRID_RUNS = 25


def run_grid(plan: Plan, spec: PlanSpec, limit: int = GRID_RUNS) -> dict:
    """{"runs": [Run] oldest to newest (the latest `limit`), "rows": [{"task_id", "cells":
    [{"run_id", "task_run_id", "state"} or {} when the run had no such task]}]} for the tasks of
    `spec` (the latest revision), then tasks only older revisions had. Two queries."""
    runs = list(reversed(plan.runs.order_by("-created_at", "-id")[:limit]))
    states = {(r["run_id"], r["task_id"]): r for r in
              TaskRun.objects.filter(run__in=runs).values("run_id", "task_id", "state", "id")}
    task_ids = spec.ids
    task_ids += sorted({task for _, task in states} - set(task_ids))
    rows = [{"task_id": task, "cells": [
        {"run_id": run.pk, "task_run_id": states[(run.pk, task)]["id"], "state": states[(run.pk, task)]["state"]}
        if (run.pk, task) in states else {} for run in runs]} for task in task_ids]
    return {"runs": runs, "rows": rows}
