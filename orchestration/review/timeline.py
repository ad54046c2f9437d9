"""A run's timeline (Gantt): when each task waited, ran and finished, and the critical path —
the chain of tasks whose durations set the makespan."""
from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from orchestration.models import Run, TaskRun
from orchestration.plans.graph import critical_path


@dataclass
class Bar:
    """One task's row, positions in percent of the run's span: wait (queued -> started) and run
    (started -> finished, or now while running)."""

    task_run: TaskRun
    wait_left: float
    wait_width: float
    run_left: float
    run_width: float
    critical: bool
    # Unix seconds of the same moments, for the page to keep the bars growing with its clock
    # (None: not yet, or still going).
    wait_from: float | None = None
    wait_to: float | None = None
    run_from: float | None = None
    run_to: float | None = None


MOST_BARS = 200  # a larger run's timeline shows these: the critical path, failures, running, then the earliest


TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)  # seconds


def ticks(span: float, most: int = 8) -> list[tuple[float, float]]:
    """[(percent of the span, seconds from the start)] for a time axis: the first step of
    TICK_STEPS that needs at most `most` ticks over `span` seconds. (static/magicbox/app.js
    draws the same axis again as the span grows.)"""
    step = next((s for s in TICK_STEPS if span / s <= most), TICK_STEPS[-1])
    return [(round(100 * t / span, 3), t) for t in range(0, int(span) + 1, step)]


def timeline(run: Run, task_runs: list[TaskRun], most: int = MOST_BARS) -> dict:
    """{"bars": [Bar], "span": seconds, "critical": [task ids], "critical_seconds": seconds,
    "start_ts": unix seconds, "end_ts": unix seconds or None while the run goes on, "ticks":
    see `ticks`, "hidden": bars left out}; bars only for tasks that started or were queued in
    this run (not for those a re-run kept from an earlier run), at most `most` of them: those on
    the critical path, failed, timed out or running first, then the earliest to start, in plan
    order."""
    now = timezone.now()
    start = run.started_at or run.created_at
    end = run.finished_at or now
    # Tasks a re-run kept as they ended ran in an earlier run: not on this run's clock.
    task_runs = [t for t in task_runs if not t.kept_from]
    for t in task_runs:
        for moment in (t.queued_at, t.started_at, t.finished_at):
            if moment is not None:
                start, end = min(start, moment), max(end, moment)
    span = max((end - start).total_seconds(), 1e-3)
    durations = {t.task_id: t.duration or 0.0 for t in task_runs}
    critical_seconds, critical = critical_path({t.task_id: t.upstream for t in task_runs}, durations)
    on_path = set(critical) if critical_seconds > 0 else set()

    def pct(moment) -> float:
        return round(100 * (moment - start).total_seconds() / span, 3)

    bars = []
    for t in task_runs:
        if t.started_at is None and t.queued_at is None:
            continue
        run_from = t.started_at
        run_to = t.finished_at or (now if t.started_at else None)
        wait_from = t.queued_at if t.queued_at and (run_from is None or t.queued_at <= run_from) else None
        wait_to = run_from or now
        bars.append(Bar(
            task_run=t,
            wait_left=pct(wait_from) if wait_from else 0.0,
            wait_width=max(pct(wait_to) - pct(wait_from), 0.0) if wait_from else 0.0,
            run_left=pct(run_from) if run_from else 0.0,
            run_width=max(pct(run_to) - pct(run_from), 0.3) if run_from and run_to else 0.0,
            critical=t.task_id in on_path,
            wait_from=wait_from.timestamp() if wait_from else None,
            wait_to=run_from.timestamp() if (wait_from and run_from) else None,
            run_from=run_from.timestamp() if run_from else None,
            run_to=t.finished_at.timestamp() if t.finished_at else None,
        ))
    hidden = max(0, len(bars) - most)
    if hidden:
        def rank(bar: Bar) -> tuple:
            t = bar.task_run
            urgent = bar.critical or t.state in ("failed", "timed_out", "running")
            return (not urgent, t.started_at or t.queued_at, t.position)
        kept = {id(bar) for bar in sorted(bars, key=rank)[:most]}
        bars = [bar for bar in bars if id(bar) in kept]
    return {"bars": bars, "hidden": hidden, "span": span, "critical": critical if on_path else [], "critical_seconds": critical_seconds,
            "start_ts": start.timestamp(), "end_ts": run.finished_at.timestamp() if run.finished_at else None,
            "ticks": ticks(span)}
