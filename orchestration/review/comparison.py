"""Two runs side by side, task by task: state, duration, cost, attempts, and the differences
between their results, their code changes and the plan revisions they ran."""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestration.models import Run, TaskChange, TaskRun
from orchestration.plans.compare import DiffLine, revision_diff, text_diff
from orchestration.review import cost


@dataclass
class TaskPair:
    """One task id in both runs (a or b is None when only one run has it)."""

    task_id: str
    a: TaskRun | None
    b: TaskRun | None
    result_diff: list[DiffLine] = field(default_factory=list)
    change_diff: list[DiffLine] = field(default_factory=list)

    @property
    def same(self) -> bool:
        """Nothing a reviewer would look at differs (state, result, code change)."""
        return (self.a is not None and self.b is not None and self.a.state == self.b.state
                and not self.result_diff and not self.change_diff)


def _patch(task_run: TaskRun | None, changes: dict[int, TaskChange]) -> str:
    change = changes.get(task_run.pk) if task_run is not None else None
    return change.patch if change is not None else ""


def compare(a: Run, b: Run) -> dict:
    """Template context comparing runs `a` and `b`: pairs (TaskPair in plan order, b's tasks
    first), revision_diff (of the plan revisions, [] when the same), totals per run."""
    runs = {"a": list(a.task_runs.order_by("position")), "b": list(b.task_runs.order_by("position"))}
    changes = {c.task_run_id: c for c in TaskChange.objects.filter(task_run__run__in=[a, b])}
    by_id = {side: {t.task_id: t for t in rows} for side, rows in runs.items()}
    order = list(dict.fromkeys([t.task_id for t in runs["b"]] + [t.task_id for t in runs["a"]]))
    pairs = []
    for task_id in order:
        ta, tb = by_id["a"].get(task_id), by_id["b"].get(task_id)
        pairs.append(TaskPair(
            task_id, ta, tb,
            result_diff=text_diff(ta.result if ta else "", tb.result if tb else ""),
            change_diff=text_diff(_patch(ta, changes), _patch(tb, changes), max_lines=3000),
        ))
    totals = {side: {"cost": cost.total(rows), "attempts": sum(t.attempt for t in rows)} for side, rows in runs.items()}
    return {"a": a, "b": b, "pairs": pairs, "changed": sum(not p.same for p in pairs), "totals": totals,
            "revision_diff": revision_diff(a.revision, b.revision) if a.revision_id != b.revision_id else []}
