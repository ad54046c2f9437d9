"""What a run page's websocket sends: full-state HTML fragments rendered from the database.

The page and the push render the same named partials of templates/runs/detail.html, so they
cannot drift: every push renders the header, the task list, the timeline (with the critical
path the DAG outlines) and the selected task's summary from one load of the run. A RunView
remembers what it already sent to one viewer, so updates carry only the parts that changed,
and output only of the one task the viewer has selected (RunView.select).

Messages stay well under daphne's 1 MiB websocket frame limit: a page shows the last
OUTPUT_TAIL characters of each task's output (the rest is a download), appends are sent in
pieces, fragments are packed into messages of at most MESSAGE_BUDGET bytes, and a fragment
that would render larger than FRAGMENT_LIMIT bytes (escaping and colours can grow output 20x)
is rendered again from a shorter tail or a smaller piece.
"""
from __future__ import annotations

import copy
import shlex
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from django.contrib.auth.context_processors import PermWrapper
from django.db.models import Prefetch, Sum
from django.template.loader import render_to_string

from orchestration import terminal
from orchestration.engine import candidates, gates, loops
from orchestration.models import LoopRound, OutputChunk, RoundChange, Run, StateChange, TaskChange, TaskRun, TaskState
from orchestration.review import cost
from orchestration.review.integration import onward
from orchestration.review.timeline import timeline
from orchestration.vcs import collisions

T = TypeVar("T")
TEMPLATE = "runs/detail.html"
OUTPUT_TAIL = 128 * 1024  # characters of a task's output shown on its page (escaping may grow it 5x)
APPEND_PIECE = 32 * 1024  # characters of new output per appended fragment
MESSAGE_BUDGET = 256 * 1024  # bytes per websocket message, fragments permitting
FRAGMENT_LIMIT = 768 * 1024  # bytes of one rendered fragment (daphne refuses frames over 1 MiB)
# Characters live appends may add to a viewer's log before it is sent the log's tail again (a
# browser lays the whole log out at each append: a log growing without bound falls behind a flood).
LIVE_LOG_LIMIT = 3 * OUTPUT_TAIL


@dataclass
class OutputWindow:
    """OUTPUT_TAIL characters (at most) of a task run's stored output, ending at a cursor.

    text: the characters. earlier: the cursor of the window just before it, as query parameters
    for the task-output-earlier view ({"seq": 12} or {"seq": 12, "chars": 4096}: chunk 12 up to
    that character), or None when the window starts at the beginning of the output.
    """

    text: str
    earlier: dict | None


def output_window(task_run_id: int, upto_seq: int, upto_chars: int | None = None, size: int = OUTPUT_TAIL) -> OutputWindow:
    """The last `size` characters of the output stored in chunks up to seq `upto_seq` (of which
    only the first `upto_chars` characters, when given). Starts at a line boundary when one is
    near the cut, so a window rarely begins mid-line or mid-escape-sequence."""
    pieces: list[str] = []
    total, first_seq = 0, None
    chunks = OutputChunk.objects.filter(task_run_id=task_run_id, seq__lte=upto_seq).order_by("-seq")
    for seq, text in chunks.values_list("seq", "text").iterator(chunk_size=200):
        if seq == upto_seq and upto_chars is not None:
            text = text[:upto_chars]
        pieces.append(text)
        total, first_seq = total + len(text), seq
        if total >= size:
            break
    if first_seq is None:
        return OutputWindow("", None)
    excess = total - size
    if excess > 0:
        newline = pieces[-1].find("\n", excess, excess + 4096)
        cut = newline + 1 if newline != -1 else excess
        pieces[-1] = pieces[-1][cut:]
        earlier = {"seq": first_seq, "chars": cut}
    elif OutputChunk.objects.filter(task_run_id=task_run_id, seq__lt=first_seq).exists():
        earlier = {"seq": first_seq - 1}
    else:
        earlier = None
    return OutputWindow("".join(reversed(pieces)), earlier)


def attach_output(task_runs: list[TaskRun], size: int = OUTPUT_TAIL) -> None:
    """Set on each task run `shown_output` (the last OUTPUT_TAIL characters of its stored
    output, up to its output_seq as loaded), `earlier_query` (the cursor of the output before
    that, see OutputWindow, as a query string; "" at the start), `hidden_output` (bytes not
    shown) and `first_line` (the line number, from 1, of the first line shown).

    Only output up to output_seq is rendered: a viewer is told it has everything up to there,
    so chunks written after the task run was loaded are left for the next update.
    """
    for task_run in task_runs:
        if not task_run.output_seq:  # nothing stored yet: no query
            task_run.shown_output, task_run.earlier_query, task_run.hidden_output, task_run.first_line = "", "", 0, 1
            continue
        window = output_window(task_run.pk, task_run.output_seq, size=size)
        task_run.shown_output, task_run.earlier_query = window.text, urlencode(window.earlier or {})
        hidden = task_run.output_bytes - len(window.text.encode("utf-8", "replace"))
        task_run.hidden_output = max(0, hidden) if window.earlier else 0
        task_run.first_line = first_line(task_run.pk, window.earlier)


def first_line(task_run_id: int, cursor: dict | None) -> int:
    """The line number (from 1) of the output's line at `cursor` (OutputWindow.earlier: where the
    output before a window ends), counted in the database from the newlines before it: the
    numbers a log's line links (#L<n>) use. 1 when the window starts at the beginning."""
    if not cursor:
        return 1
    chunks = OutputChunk.objects.filter(task_run_id=task_run_id)
    if "chars" not in cursor:  # the window starts after the whole chunk `seq`
        return (chunks.filter(seq__lte=cursor["seq"]).aggregate(n=Sum("newlines"))["n"] or 0) + 1
    before = chunks.filter(seq__lt=cursor["seq"]).aggregate(n=Sum("newlines"))["n"] or 0
    text = chunks.filter(seq=cursor["seq"]).values_list("text", flat=True).first() or ""
    before += text[:cursor["chars"]].count("\n")
    return before + 1


SEGMENT_ORDER = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "waiting", "running", "queued", "pending"]


def state_segments(counts: dict[str, int]) -> list[dict]:
    """The progress bar of task states: [{"state", "count", "percent" (of all counted, 2 decimals)}]
    in SEGMENT_ORDER (ended states first), states with no task left out."""
    total = sum(counts.values()) or 1
    return [{"state": s, "count": counts[s], "percent": round(100 * counts[s] / total, 2)} for s in SEGMENT_ORDER if counts.get(s)]


def run_context(run: Run, task_runs: list[TaskRun]) -> dict:
    """Template context shared by the run page and its pushed fragments."""
    counts: dict[str, int] = {}
    for task_run in task_runs:
        counts[task_run.state] = counts.get(task_run.state, 0) + 1
    segments = state_segments(counts)
    done = sum(counts.get(s, 0) for s in SEGMENT_ORDER[:5])
    verdicts = list(run.verdicts.order_by("kind", "position"))
    return {"run": run, "task_runs": task_runs, "segments": segments, "done": done, "total": len(task_runs),
            "verdicts": verdicts, "timeline": timeline(run, task_runs), "run_cost": cost.total(task_runs),
            **changes_context(run, task_runs)}


def changes_context(run: Run, task_runs: list[TaskRun]) -> dict:
    """The run's captured code changes (`changes`: [(task run, TaskChange)] in plan order), the
    collisions between them, its latest integration (None if never integrated; its patch not
    loaded) and `onward` (review.integration.Onward: how to fetch its branch, once it has one)."""
    if not run.revision.spec.workspace:
        return {"changes": [], "collisions": [], "integration": None, "onward": None}
    by_task_run = {c.task_run_id: c for c in TaskChange.objects.filter(task_run__run_id=run.pk).defer("patch")}
    changes = [(t, by_task_run[t.pk]) for t in task_runs if t.pk in by_task_run]
    found = collisions.find(run.revision.spec, {t.task_id: c for t, c in changes}) if len(changes) > 1 else []
    integration = run.integrations.defer("patch").first()
    return {"changes": changes, "collisions": found, "integration": integration,
            "onward": onward(run.revision.spec.workspace, integration) if integration and integration.head_commit else None}


OPENS_FIRST = (TaskState.WAITING, TaskState.FAILED, TaskState.TIMED_OUT, TaskState.RUNNING)  # in this order: a person's decision first
ATTEMPT_HISTORY = 200  # state changes of the selected task listed under "Attempts"


def task_list(run: Run) -> list[TaskRun]:
    """The run's task runs in plan order, without their prompts and results (a long run's page
    would load megabytes it does not show; detail_context loads the selected one whole)."""
    return list(run.task_runs.order_by("position").defer("prompt", "result"))


def choose_task(task_runs: list[TaskRun], wanted: str | None = None) -> TaskRun | None:
    """The task a run page opens on: the one `wanted` names (a task id), when the run has it;
    else the first waiting for a person (or a check) at a gate or a choice, else the first that
    failed or timed out, else the first running one, else the first task.
    None only for a run without tasks."""
    if wanted:
        for task_run in task_runs:
            if task_run.task_id == wanted:
                return task_run
    for state in OPENS_FIRST:
        for task_run in task_runs:
            if task_run.state == state:
                return task_run
    return task_runs[0] if task_runs else None


def detail_context(run: Run, task_run: TaskRun, task_runs: list[TaskRun], with_output: bool = True) -> dict:
    """What the selected task's detail shows (templates/runs/detail.html#task-detail):
    {"selected": the task run, loaded again whole, "downstream": [task ids that wait for it], "gate": its plans.spec.Gate
    or None, "gate_approvers": the usernames who may decide its gate or
    choose its winner while it waits, "loop_review": the review
    whose loop it belongs to ("" when none), "loop_rounds": that loop's rounds (models.LoopRound, their
    changes without patches), "loop_cost": their cost together in USD (None if unknown), "candidates": the
    candidate task runs of a task with candidates (candidates_of), "choose": how the winner is chosen
    (plans.spec.Choice), "choice_check": the Verdict of a command choice, "sent": the command
    of a shell task, else the prompt its agent was sent ("" before it starts), "sent_kind": "prompt" | "command", "change": its
    TaskChange (patch not loaded) or None, "attempts": its StateChanges, oldest first (the last
    ATTEMPT_HISTORY)}. With `with_output`, its output is attached (attach_output). A constant
    number of queries, whatever the run's size."""
    task_run = TaskRun.objects.get(pk=task_run.pk)
    if with_output:
        attach_output([task_run])
    spec_task = run.revision.spec.by_id.get(task_run.task_id)
    command = spec_task.command if spec_task else None
    if command:  # a shell task: its command as run, references filled in (the prompt it is also given is for programs that read one)
        ran = task_run.command or command  # before its first attempt: as the plan writes it
        sent, kind = (ran if isinstance(ran, str) else shlex.join(ran)), "command"
    else:
        sent, kind = task_run.prompt, "prompt"
    changes = list(StateChange.objects.filter(task_run=task_run).order_by("-id")[:ATTEMPT_HISTORY])
    gate = spec_task.gate if spec_task else None
    review = loop_of(run.revision.spec, task_run.task_id)
    candidates = candidates_of(run, spec_task.id) if spec_task and spec_task.candidates else []
    rounds = list(LoopRound.objects.filter(run=run, review=review).prefetch_related(
        Prefetch("changes", RoundChange.objects.defer("patch"))).order_by("number")) if review else []
    return {"selected": task_run, "downstream": [t.task_id for t in task_runs if task_run.task_id in t.upstream],
            "sent": sent, "sent_kind": kind, "change": TaskChange.objects.filter(task_run=task_run).defer("patch").first(),
            "attempts": changes[::-1], "gate": gate, "loop_review": review, "loop_rounds": rounds,
            "candidates": candidates, "choose": spec_task.candidates.choose if candidates else None,
            "candidate_winner": task_run.state_reason.split(":", 1)[0].removeprefix("chose ")
            if candidates and task_run.state == TaskState.SUCCEEDED and task_run.state_reason.startswith("chose ") else "",
            "choice_check": run.verdicts.filter(kind="choice", position=run.revision.spec.ids.index(spec_task.id)).first()
            if candidates else None,
            "loop_cost": sum(r.cost_usd for r in rounds if r.cost_usd is not None) if any(r.cost_usd is not None for r in rounds) else None,
            "gate_approvers": gates.approvers() if task_run.state == TaskState.WAITING and (
                (gate and gate.approve) or (spec_task.candidates and spec_task.candidates.choose.person)) else []}


def candidates_of(run: Run, task_id: str) -> list[TaskRun]:
    """The candidate task runs of task `task_id` (engine.candidates) in candidate order, each with
    `captured`: its TaskChange without the patch, or None."""
    rows = sorted(TaskRun.objects.filter(run=run, candidate_of=task_id), key=lambda r: candidates.candidate_number(r.task_id))
    changes = {c.task_run_id: c for c in TaskChange.objects.filter(task_run__in=rows).defer("patch")}
    for row in rows:
        row.captured = changes.get(row.pk)
    return rows


def loop_of(spec, task_id: str) -> str:
    """The review task whose loop `task_id` belongs to (as the review or a task it runs again),
    or ""."""
    if spec.by_id.get(task_id) and spec.task(task_id).loop:
        return task_id
    return next((t.id for t in spec.tasks if t.loop and task_id in loops.round_tasks(spec, t.id)), "")


def _row_fingerprint(task_run: TaskRun, run: Run) -> tuple:
    """What a task's row shows depends on: its own fields, and whether its run has ended (the
    Retry button appears then on a row that ended earlier)."""
    return (task_run.state, task_run.attempt, task_run.exit_code, task_run.error, task_run.started_at,
            task_run.finished_at, task_run.state_reason, task_run.cost_usd, task_run.cli_version, task_run.model,
            run.is_finished)


def _detail_key(task_run: TaskRun, run: Run, change: TaskChange | None) -> tuple:
    """What the selected task's detail shows depends on: its row's fields and its captured change."""
    return _row_fingerprint(task_run, run), (change.pk, change.captured_at) if change else None


def _pack(fragments: list[str]) -> list[str]:
    """Join fragments into as few messages as MESSAGE_BUDGET allows (a fragment is never split)."""
    messages: list[str] = []
    current: list[str] = []
    size = 0
    for fragment in fragments:
        length = len(fragment.encode("utf-8", "replace"))
        if current and size + length > MESSAGE_BUDGET:
            messages.append("\n".join(current))
            current, size = [], 0
        current.append(fragment)
        size += length
    if current:
        messages.append("\n".join(current))
    return messages


_LOADS: dict[int, tuple[float, Run, list[TaskRun], dict]] = {}  # {run id: (began at, run, task runs, run_context)}


def shared_load(run_id: int, since: float | None) -> tuple[Run, list[TaskRun], dict]:
    """The run, its task runs (task_list) and run_context, from a load that began after `since`
    (time.monotonic() seconds; None: a load begun now): the last one of this process when it
    began late enough, else a new one. The viewers of a run told of a change together share one
    load (called in the database thread only: the loads are not shared across threads). The
    objects returned are shared: read them, do not change them."""
    cached = _LOADS.get(run_id)
    if since is not None and cached is not None and cached[0] > since:
        return cached[1:]
    began = time.monotonic()
    run = Run.objects.select_related("plan", "started_by", "revision").get(pk=run_id)
    task_runs = task_list(run)
    context = run_context(run, task_runs)
    if len(_LOADS) > 64:
        _LOADS.clear()
    _LOADS[run_id] = (began, run, task_runs, context)
    return run, task_runs, context


class RunView:
    """The state one viewer of one run has been sent.

    user: the viewer, so fragments show the actions their role allows (as the page does);
    csrf_token: the viewer's CSRF cookie value, for the forms in those fragments. `selected`:
    the task run (primary key) whose detail and output the viewer is shown (see select), None
    until the page says.
    """

    def __init__(self, run_id: int, user=None, csrf_token: str = "") -> None:
        self.run_id = run_id
        self.extra_context = {"perms": PermWrapper(user) if user is not None else None, "csrf_token": csrf_token}
        self.selected: int | None = None
        self.sent_seq = 0  # output of the selected task sent, up to this chunk
        self.appended_chars = 0  # characters appended to its log since the log was sent whole
        self.detail: tuple | None = None
        self.rows: dict[int, tuple] = {}
        self.header: tuple | None = None
        self.verdicts: tuple | None = None
        self.changes: tuple | None = None

    def _load(self) -> tuple[Run, list[TaskRun]]:
        run = Run.objects.select_related("plan", "started_by", "revision").get(pk=self.run_id)
        return run, task_list(run)

    @staticmethod
    def _verdicts_key(context: dict) -> tuple:
        return tuple((v.pk, v.state, v.summary) for v in context["verdicts"])

    @staticmethod
    def _changes_key(context: dict) -> tuple:
        integration = context["integration"]
        return (tuple((c.pk, c.captured_at) for _, c in context["changes"]),
                (integration.pk, integration.state, len(integration.merged)) if integration else None)

    def _header_key(self, run: Run, context: dict) -> tuple:
        return (run.state, run.state_reason, tuple((s["state"], s["count"]) for s in context["segments"]),
                context["run_cost"].usd, context["run_cost"].input_tokens)

    def _render(self, name: str, context: dict, task_run: TaskRun | None = None) -> str:
        context = {**context, **self.extra_context}
        return render_to_string(f"{TEMPLATE}#{name}", {**context, "task_run": task_run} if task_run else context)

    def snapshot(self) -> list[str]:
        """Messages holding every run-wide fragment of the page (for a viewer that (re)connects):
        the selected task's detail follows when the page says which it is (select)."""
        run, task_runs = self._load()
        context = run_context(run, task_runs)
        fragments = [self._render("run-header", context), self._render("run-tabs", context)]
        for task_run in task_runs:
            fragments.append(self._render("task-row", context, task_run))
            self.rows[task_run.pk] = _row_fingerprint(task_run, run)
        self.header = self._header_key(run, context)
        fragments.append(self._render("verdicts", context))
        self.verdicts = self._verdicts_key(context)
        fragments.append(self._render("changes", context))
        self.changes = self._changes_key(context)
        fragments.append(self._render("timeline", context))
        return _pack(fragments)

    def select(self, task_run_id: int, seq: int | None = None) -> list[str]:
        """Show the viewer task run `task_run_id` of this run from now on: messages with its
        detail (summary, prompt, result, attempts and output). `seq`: the page already shows its
        output up to that chunk (it was rendered with the page), so only what came after is sent.
        [] when the run has no such task run."""
        run, task_runs = self._load()
        task_run = next((t for t in task_runs if t.pk == task_run_id), None)
        if task_run is None:
            return []
        self.selected = task_run.pk
        if seq is not None and 0 <= seq <= task_run.output_seq:
            context = {"run": run, **detail_context(run, task_run, task_runs, with_output=False)}
            self.detail = _detail_key(task_run, run, context["change"])
            task_run = context["selected"]
            self.sent_seq, self.appended_chars = seq, 0
            fragments = [self._render(name, context, task_run) for name in DETAIL_PARTS]
            return _pack(fragments + self._new_output(context, task_run))
        context = {"run": run, **detail_context(run, task_run, task_runs)}
        self.detail = _detail_key(task_run, run, context["change"])
        task_run = context["selected"]
        self.sent_seq, self.appended_chars = task_run.output_seq, 0
        html = self._render("task-detail", context, task_run)
        if _too_big(html):  # a log that renders too large: the detail without it, then the log from a shorter tail
            task_run.shown_output = ""
            html = self._render("task-detail", context, task_run)
            return _pack([html, self._output_fragment(context, task_run)])
        return _pack([html])

    def update(self, since: float | None = None) -> list[str]:
        """Messages with the fragments that changed since the last snapshot or update ([] if none),
        all rendered from one load of the run: one that began after `since` (time.monotonic()
        seconds: when the viewer was told of the change), shared with the other viewers of the
        run in this process (shared_load); a fresh one when `since` is None."""
        run, task_runs, context = shared_load(self.run_id, since)
        fragments = []
        header = self._header_key(run, context)
        if header != self.header:
            fragments.append(self._render("run-header", context))
            self.header = header
        if self._verdicts_key(context) != self.verdicts or self._changes_key(context) != self.changes:
            fragments.append(self._render("run-tabs", context))
        if self._verdicts_key(context) != self.verdicts:
            fragments.append(self._render("verdicts", context))
            self.verdicts = self._verdicts_key(context)
        if self._changes_key(context) != self.changes:
            fragments.append(self._render("changes", context))
            self.changes = self._changes_key(context)
        rows_changed = False
        for task_run in task_runs:
            fingerprint = _row_fingerprint(task_run, run)
            if self.rows.get(task_run.pk) != fingerprint:
                fragments.append(self._render("task-row", context, task_run))
                self.rows[task_run.pk] = fingerprint
                rows_changed = True
        if rows_changed:
            fragments.append(self._render("timeline", context))
        selected = next((t for t in task_runs if t.pk == self.selected), None)
        if selected is not None:
            selected = copy.copy(selected)  # the load is shared with other viewers: its output is attached to a copy
            key = _detail_key(selected, run, next((c for t, c in context["changes"] if t.pk == selected.pk), None))
            if key != self.detail:
                self.detail = key
                detail = {**context, **detail_context(run, selected, task_runs, with_output=False)}
                fragments += [self._render(name, detail, detail["selected"]) for name in DETAIL_PARTS]
            fragments += self._new_output(context, selected)
        return _pack(fragments)

    def _new_output(self, context: dict, task_run: TaskRun) -> list[str]:
        """Fragments appending the selected task's output stored since what was sent (up to its
        output_seq as loaded)."""
        sent = self.sent_seq
        if task_run.output_seq <= sent:
            return []
        self.sent_seq = task_run.output_seq
        fragments, chars = output_since(task_run, sent, lambda: self._output_fragment(context, task_run),
                                        limit=max(0, min(OUTPUT_TAIL, LIVE_LOG_LIMIT - self.appended_chars)))
        self.appended_chars = 0 if chars is None else self.appended_chars + chars
        return fragments

    def appended(self, task_run_id: int, after: int, seq: int, text: str | None) -> list[str] | None:
        """Messages appending output task run `task_run_id` stored after chunk `after` up to chunk
        `seq`, whose text is `text` (engine.signals.asend_output), for this viewer: [] when it is
        not the selected task's or was sent already; None when this viewer cannot be brought up
        to date from the message alone (it lacks chunks before `after`, or `text` is None): then
        catch_up reads them, as when the log would grow over LIVE_LOG_LIMIT. Rendered once per
        process for all its viewers (shared_appends)."""
        if task_run_id != self.selected or seq <= self.sent_seq:
            return []
        if text is None or after != self.sent_seq or self.appended_chars + len(text) > LIVE_LOG_LIMIT:
            return None
        self.sent_seq, self.appended_chars = seq, self.appended_chars + len(text)
        return _pack(list(shared_appends(task_run_id, after, seq, text)))

    def catch_up(self, seq: int) -> list[str]:
        """Messages appending the selected task's output stored after what was sent, up to chunk
        `seq` at least (read from the database; a whole tail when it is over OUTPUT_TAIL, or would
        make the log grow over LIVE_LOG_LIMIT). The fragments are rendered once per process for
        every viewer needing the same range."""
        if self.selected is None or seq <= self.sent_seq:
            return []
        task_run = TaskRun.objects.select_related("run").defer("prompt", "result").get(pk=self.selected)
        sent, upto = self.sent_seq, max(seq, task_run.output_seq)
        task_run.output_seq = upto
        self.sent_seq = upto
        def tail() -> str:
            return shared(("tail", task_run.pk, upto, task_run.output_bytes), lambda: self._output_fragment({"run": task_run.run}, task_run))

        fragments, chars = shared((task_run.pk, sent, upto, task_run.output_bytes), lambda: output_since(task_run, sent, tail))
        if chars is not None and self.appended_chars + chars > LIVE_LOG_LIMIT:
            fragments, chars = [tail()], None
        self.appended_chars = 0 if chars is None else self.appended_chars + chars
        return _pack(list(fragments))

    @staticmethod
    def partial_fragment(task_run_id: int, text: str) -> str:
        """The fragment showing `text`, the message a task run's agent is writing now, below its
        stored output ("" empties it: the complete message is in the output by then). Rendered
        once per process for all its viewers."""
        return shared(("partial", int(task_run_id), text),
                      lambda: f'<pre class="log-partial" id="partial-{int(task_run_id)}" hx-swap-oob="true">{terminal.render(text)}</pre>')

    def _output_fragment(self, context: dict, task_run: TaskRun) -> str:
        """The task-log fragment of the output's tail (read here), from a shorter tail while it
        renders over FRAGMENT_LIMIT."""
        size = OUTPUT_TAIL
        attach_output([task_run])
        html = self._render("task-log", context, task_run)
        while _too_big(html) and size > 1024:
            size //= 4
            attach_output([task_run], size=size)
            html = self._render("task-log", context, task_run)
        return html


# Fragments rendered for one viewer that other viewers in this process need too, newest last:
# {key: fragment(s)}. Output appends are keyed by (task run, after, seq, text or its size): the
# same chunks render the same for everyone (no per-viewer forms or permissions in them). Used from the event loop
# and the database thread.
_SHARED: OrderedDict = OrderedDict()
_SHARED_LOCK = threading.Lock()
SHARED_ENTRIES = 32  # fragments kept (each at most a few MESSAGE_BUDGETs): viewers share one within moments


def shared(key: tuple, make: Callable[[], T]) -> T:
    """The value rendered for `key` in this process, made by `make()` the first time (or again
    once SHARED_ENTRIES newer keys pushed it out)."""
    with _SHARED_LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key]
    value = make()
    with _SHARED_LOCK:
        _SHARED[key] = value
        while len(_SHARED) > SHARED_ENTRIES:
            _SHARED.popitem(last=False)
    return value


def shared_appends(task_run_id: int, after: int, seq: int, text: str) -> tuple[str, ...]:
    """The fragments appending `text`, task run `task_run_id`'s chunks after `after` up to `seq`,
    to its log (append_fragments), rendered once per process for all its viewers."""
    return shared((int(task_run_id), after, seq, text), lambda: tuple(append_fragments(task_run_id, text)))


def output_since(task_run: TaskRun, sent: int, tail: Callable[[], str], limit: int = OUTPUT_TAIL) -> tuple[list[str], int | None]:
    """(fragments appending task run `task_run`'s output stored after chunk `sent` up to its
    output_seq, the characters they append); ([`tail()`], None) instead (the task-log fragment
    of its tail) when that is over `limit` characters, as a page opened now would show. Reads at
    most `limit` characters and a chunk."""
    chunks = OutputChunk.objects.filter(task_run=task_run, seq__gt=sent, seq__lte=task_run.output_seq).order_by("seq")
    pieces, size = [], 0
    for piece in chunks.values_list("text", flat=True).iterator(chunk_size=200):
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            return [tail()], None  # too much at once to append
    return append_fragments(task_run.pk, "".join(pieces)), size


def append_fragments(task_run_id: int, text: str) -> list[str]:
    """Fragments appending `text` (stored output) to task run `task_run_id`'s log, each under
    FRAGMENT_LIMIT bytes (pieces of about APPEND_PIECE characters, smaller where escaping grows)."""
    fragments = []
    # Carriage returns applied to whole lines before a long line is cut, and each piece rendered
    # with the colours in effect where the one before ended: the pieces show what `text` rendered
    # at once would (as the page does on a reload).
    pending = _pieces(terminal.neutralise(text), APPEND_PIECE)
    colours = ""
    while pending:
        piece = pending.pop(0)
        html = f'<div hx-swap-oob="beforeend:#log-{int(task_run_id)}">{terminal.render(colours + piece)}</div>'
        if _too_big(html) and len(piece) > 1:
            pending[:0] = _pieces(piece, len(piece) // 4 + 1)
            continue
        fragments.append(html)
        colours = terminal.colours_at_end(colours + piece)
    return fragments


DETAIL_PARTS = ("task-summary", "task-result", "task-change", "task-attempts")  # the detail's parts that follow its state


def _too_big(html: str) -> bool:
    return len(html) > FRAGMENT_LIMIT // 4 and len(html.encode("utf-8", "replace")) > FRAGMENT_LIMIT


def _pieces(text: str, size: int) -> list[str]:
    """`text` (neutralised: terminal.neutralise) in pieces of about `size` characters, split after
    a newline where there is one, else never inside a colour sequence."""
    pieces = []
    while len(text) > size:
        newline = text.rfind("\n", 0, size)
        cut = newline + 1 if newline > 0 else terminal.cut_outside_sequence(text, size)
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text] if text else pieces
