"""The shape of a plan: figures (critical path, width, ideal speed-up), warnings, and DAG data.

The seed warns against running in parallel "tasks that modify the same files" and "shared
resources that would conflict"; tasks declare those with `writes:` and `resources:`, and two
tasks that may run at the same time (neither is upstream of the other) and share one are named.
"""
from __future__ import annotations

import fnmatch
import statistics
from dataclasses import dataclass, field
from typing import Any

from orchestration.plans import graph
from orchestration.plans.spec import PlanSpec


@dataclass
class PlanShape:
    """Figures of a plan. Seconds are estimates: past runs' durations, else the tasks' timeouts.

    width: the most tasks at one depth (tasks whose longest upstream chain is equally long).
    """

    tasks: int
    critical_path: list[str]
    width: int
    critical_seconds: float | None = None
    estimated_from: str = ""
    total_seconds: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        """Ideal speed-up over running the tasks one by one: total work / critical path."""
        if self.critical_seconds and self.total_seconds:
            return self.total_seconds / self.critical_seconds
        return self.tasks / max(1, len(self.critical_path))


def analyse(spec: PlanSpec, past: dict[str, float] | None = None) -> PlanShape:
    """Figures and warnings of `spec`; `past`: task id -> typical seconds."""
    upstream = spec.dependencies
    _, path = graph.critical_path(upstream, dict.fromkeys(upstream, 1.0))
    shape = PlanShape(tasks=len(upstream), critical_path=path, width=graph.max_width(upstream))
    past = past or {}
    estimates = {}
    for task in spec.tasks:
        if task.id in past:
            estimates[task.id] = past[task.id]
        elif task.timeout:
            estimates[task.id] = float(task.timeout)
    if estimates and len(estimates) == len(upstream):
        seconds, seconds_path = graph.critical_path(upstream, estimates)
        shape.critical_seconds, shape.total_seconds = seconds, sum(estimates.values())
        sources = {"past runs" if t in past else "timeouts" for t in estimates}
        shape.estimated_from = " and ".join(sorted(sources, reverse=True))
        shape.critical_path = seconds_path
    shape.warnings = [notice_text(n) for n in spec.notices] + conflicts(spec)
    return shape


def notice_text(notice) -> str:
    """A warning found at import (PlanSpec.notices) as shown: "line 12, subtasks[2].dependencies: …"."""
    where = ", ".join(part for part in (f"line {notice.line}" if notice.line else "", notice.field) if part)
    return f"{where}: {notice.message}" if where else notice.message


def _overlap(a: str, b: str) -> bool:
    return a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a)


def conflicts(spec: PlanSpec) -> list[str]:
    """Warnings for pairs of tasks that may run at once and write the same files or share a resource."""
    declared = [t for t in spec.tasks if t.writes or t.resources]
    if len(declared) < 2:
        return []
    ancestors = spec.ancestors
    warnings = []
    for i, a in enumerate(declared):
        for b in declared[i + 1:]:
            if a.id in ancestors[b.id] or b.id in ancestors[a.id]:
                continue  # one waits for the other: they never run at once
            pairs = [(x, y) for x in a.writes for y in b.writes if _overlap(x, y)]
            files = sorted({x for x, _ in pairs} | {y for _, y in pairs})
            shared = sorted(set(a.resources) & set(b.resources))
            if files:
                warnings.append(f"{a.id} and {b.id} may run at the same time and both write {', '.join(files)}: "
                                f"make one depend on the other, or split the files.")
            if shared:
                warnings.append(f"{a.id} and {b.id} may run at the same time and both use {', '.join(shared)}: "
                                f"make one depend on the other.")
    return warnings


def past_durations(plan, runs: int = 10) -> dict[str, float]:
    """task id -> median seconds of its successful task runs in the plan's last `runs` runs."""
    from orchestration.models import TaskRun, TaskState

    recent = list(plan.runs.order_by("-created_at").values_list("id", flat=True)[:runs])
    samples: dict[str, list[float]] = {}
    rows = TaskRun.objects.filter(run_id__in=recent, state=TaskState.SUCCEEDED, started_at__isnull=False,
                                  finished_at__isnull=False).values_list("task_id", "started_at", "finished_at")
    for task_id, started, finished in rows:
        samples.setdefault(task_id, []).append((finished - started).total_seconds())
    return {task_id: statistics.median(values) for task_id, values in samples.items()}


def dag_data(spec: PlanSpec, states: dict[str, str] | None = None) -> dict[str, Any]:
    """What static/magicbox/dag.js draws: {"nodes": [{id, worker, phase, state, depth}], "edges": [[from, to]],
    "contracts": [{name, between: [ids]}], "critical": [ids], "run": bool}.

    depth: the task's longest-path layer (graph.depths; 0 for a task that waits for none), by
    which the drawing groups a large plan without phases. state: the task's state in `states`
    ("" when not given). run: whether `states` was given (a run page, whose nodes can be selected).
    Raises ValueError if the tasks' dependencies form a cycle.
    """
    upstream = spec.dependencies
    _, critical = graph.critical_path(upstream, dict.fromkeys(upstream, 1.0))
    depth = graph.depths(upstream)
    contracts = []
    for name, contract in spec.contracts.items():
        members = [t.id for t in spec.tasks if contract.phase and t.phase == contract.phase]
        members = members or [x for x in (contract.provider, contract.consumer) if x]
        contracts.append({"name": name, "between": members})
    return {
        "nodes": [{"id": t.id, "worker": t.worker, "phase": t.phase,
                   "state": (states or {}).get(t.id, ""), "depth": depth[t.id]} for t in spec.tasks],
        "edges": [[dep, task_id] for task_id, ups in spec.dependencies.items() for dep in ups],
        "contracts": contracts,
        "critical": critical,
        "run": states is not None,
    }
