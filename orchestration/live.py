"""What a run page's websocket sends: full-state HTML fragments rendered from the database.

The page and the push render the same named partials of templates/runs/detail.html, so they
cannot drift. A RunView remembers what it already sent to one viewer, so updates carry only
the rows that changed and the output chunks the viewer has not had.
"""
from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.html import escape

from orchestration.models import OutputChunk, Run, TaskRun

TEMPLATE = "runs/detail.html"


def attach_output(task_runs: list[TaskRun]) -> None:
    """Set `task_run.shown_output`: its stored output up to `output_seq` as loaded, not beyond.

    A viewer is told it has everything up to output_seq; rendering chunks written after the
    task run was loaded would make the next update send them a second time.
    """
    if not task_runs:
        return
    upto = {t.pk: t.output_seq for t in task_runs}
    texts: dict[int, list[str]] = {pk: [] for pk in upto}
    chunks = OutputChunk.objects.filter(task_run_id__in=list(upto)).order_by("task_run_id", "seq")
    for task_run_id, seq, text in chunks.values_list("task_run_id", "seq", "text").iterator():
        if seq <= upto[task_run_id]:
            texts[task_run_id].append(text)
    for task_run in task_runs:
        task_run.shown_output = "".join(texts[task_run.pk])


def run_context(run: Run, task_runs: list[TaskRun]) -> dict:
    """Template context shared by the run page and its pushed fragments."""
    counts: dict[str, int] = {}
    for task_run in task_runs:
        counts[task_run.state] = counts.get(task_run.state, 0) + 1
    total = len(task_runs) or 1
    order = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "running", "queued", "pending"]
    segments = [{"state": s, "count": counts[s], "percent": round(100 * counts[s] / total, 2)} for s in order if counts.get(s)]
    done = sum(counts.get(s, 0) for s in order[:5])
    return {"run": run, "task_runs": task_runs, "segments": segments, "done": done, "total": len(task_runs)}


def _row_fingerprint(task_run: TaskRun) -> tuple:
    return (task_run.state, task_run.attempt, task_run.exit_code, task_run.error, task_run.started_at,
            task_run.finished_at, task_run.state_reason, task_run.cost_usd)


class RunView:
    """The state one viewer of one run has been sent."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.sent_seq: dict[int, int] = {}
        self.rows: dict[int, tuple] = {}
        self.header: tuple | None = None

    def _load(self) -> tuple[Run, list[TaskRun]]:
        run = Run.objects.select_related("plan", "started_by").get(pk=self.run_id)
        return run, list(run.task_runs.order_by("position"))

    def snapshot(self) -> str:
        """Every fragment of the page, outputs included in full (for a (re)connecting viewer)."""
        run, task_runs = self._load()
        attach_output(task_runs)
        context = run_context(run, task_runs)
        parts = [render_to_string(f"{TEMPLATE}#run-header", context)]
        for task_run in task_runs:
            parts.append(render_to_string(f"{TEMPLATE}#task-row", {**context, "task_run": task_run}))
            parts.append(render_to_string(f"{TEMPLATE}#task-output", {**context, "task_run": task_run}))
            self.rows[task_run.pk] = _row_fingerprint(task_run)
            self.sent_seq[task_run.pk] = task_run.output_seq
        self.header = (run.state, run.state_reason, tuple((s["state"], s["count"]) for s in context["segments"]))
        return "\n".join(parts)

    def update(self) -> str:
        """The fragments that changed since the last snapshot or update ("" if none)."""
        run, task_runs = self._load()
        context = run_context(run, task_runs)
        parts = []
        header = (run.state, run.state_reason, tuple((s["state"], s["count"]) for s in context["segments"]))
        if header != self.header:
            parts.append(render_to_string(f"{TEMPLATE}#run-header", context))
            self.header = header
        for task_run in task_runs:
            fingerprint = _row_fingerprint(task_run)
            if self.rows.get(task_run.pk) != fingerprint:
                parts.append(render_to_string(f"{TEMPLATE}#task-row", {**context, "task_run": task_run}))
                parts.append(render_to_string(f"{TEMPLATE}#task-result", {**context, "task_run": task_run}))
                self.rows[task_run.pk] = fingerprint
            sent = self.sent_seq.get(task_run.pk, 0)
            if task_run.output_seq > sent:
                text = "".join(
                    OutputChunk.objects.filter(task_run=task_run, seq__gt=sent, seq__lte=task_run.output_seq)
                    .order_by("seq")
                    .values_list("text", flat=True)
                )
                parts.append(f'<div hx-swap-oob="beforeend:#log-{task_run.pk}">{escape(text)}</div>')
                self.sent_seq[task_run.pk] = task_run.output_seq
        return "\n".join(parts)
