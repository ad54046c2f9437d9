"""Two runs side by side, task by task: state, worker, CLI version and model, duration, cost,
attempts, and the differences between the prompts they were sent, their results, their code
changes and the plan revisions they ran."""
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
    prompt_diff: list[DiffLine] = field(default_factory=list)

    @property
    def differences(self) -> list[str]:
        """What differs, in words ("worker", "CLI version", "model", "cost", "result", ...); [] when
        nothing a reviewer would look at does. A cost counts when one is known and the other not,
        or one is more than COST_RATIO times the other (agents' costs vary a little every run)."""
        if self.a is None or self.b is None:
            return ["only in one run"]
        found = [label for label, attr in (("state", "state"), ("worker", "worker"), ("CLI version", "cli_version"),
                                           ("model", "model")) if getattr(self.a, attr) != getattr(self.b, attr)]
        if _cost_changed(self.a, self.b):
            found.append("cost")
        if _duration_changed(self.a, self.b):
            found.append("duration")
        return (found + (["prompt"] if self.prompt_diff else []) + (["result"] if self.result_diff else [])
                + (["code change"] if self.change_diff else []))

    @property
    def same(self) -> bool:
        """Nothing a reviewer would look at differs (see `differences`)."""
        return not self.differences


COST_RATIO = 1.5  # a task's cost changed when one run's is more than this many times the other's


def _cost_changed(a: TaskRun, b: TaskRun) -> bool:
    usd_a, usd_b = (cost.task_cost(t.worker, t.cost_usd, t.input_tokens, t.output_tokens).usd for t in (a, b))
    if usd_a is None or usd_b is None:
        return (usd_a is None) != (usd_b is None)
    low, high = sorted((usd_a, usd_b))
    return high > low * COST_RATIO if low > 0 else high > 0


DURATION_RATIO, DURATION_MARGIN = 1.5, 2.0  # a duration changed: more than 1.5 times the other and 2 s apart


def _duration_changed(a: TaskRun, b: TaskRun) -> bool:
    if a.duration is None or b.duration is None:
        return False
    low, high = sorted((a.duration, b.duration))
    return high - low > DURATION_MARGIN and high > low * DURATION_RATIO


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
            prompt_diff=text_diff(ta.prompt if ta else "", tb.prompt if tb else ""),
            change_diff=text_diff(_patch(ta, changes), _patch(tb, changes), max_lines=3000),
        ))
    totals = {side: {"cost": cost.total(rows), "attempts": sum(t.attempt for t in rows)} for side, rows in runs.items()}
    return {"a": a, "b": b, "pairs": pairs, "changed": sum(not p.same for p in pairs), "totals": totals,
            "revision_diff": revision_diff(a.revision, b.revision) if a.revision_id != b.revision_id else []}
