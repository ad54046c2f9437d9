"""What a run page's websocket sends: full-state HTML fragments rendered from the database.

The page and the push render the same named partials of templates/runs/detail.html, so they
cannot drift. A RunView remembers what it already sent to one viewer, so updates carry only
the rows that changed and the output chunks the viewer has not had.

Messages stay well under daphne's 1 MiB websocket frame limit: a page shows the last
OUTPUT_TAIL characters of each task's output (the rest is a download), appends are sent in
pieces, fragments are packed into messages of at most MESSAGE_BUDGET bytes, and a fragment
that would render larger than FRAGMENT_LIMIT bytes (escaping and colours can grow output 20x)
is rendered again from a shorter tail or a smaller piece.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib.auth.context_processors import PermWrapper
from django.template.loader import render_to_string

from orchestration import terminal
from orchestration.models import OutputChunk, Run, TaskChange, TaskRun
from orchestration.review import cost
from orchestration.review.integration import onward
from orchestration.review.timeline import timeline
from orchestration.vcs import collisions

TEMPLATE = "runs/detail.html"
OUTPUT_TAIL = 128 * 1024  # characters of a task's output shown on its page (escaping may grow it 5x)
APPEND_PIECE = 32 * 1024  # characters of new output per appended fragment
MESSAGE_BUDGET = 256 * 1024  # bytes per websocket message, fragments permitting
FRAGMENT_LIMIT = 768 * 1024  # bytes of one rendered fragment (daphne refuses frames over 1 MiB)


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
    for seq, text in chunks.values_list("seq", "text").iterator(chunk_size=50):
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
    that, see OutputWindow, as a query string; "" at the start) and `hidden_output` (bytes not
    shown).

    Only output up to output_seq is rendered: a viewer is told it has everything up to there,
    so chunks written after the task run was loaded are left for the next update.
    """
    for task_run in task_runs:
        if not task_run.output_seq:  # nothing stored yet: no query
            task_run.shown_output, task_run.earlier_query, task_run.hidden_output = "", "", 0
            continue
        window = output_window(task_run.pk, task_run.output_seq, size=size)
        task_run.shown_output, task_run.earlier_query = window.text, urlencode(window.earlier or {})
        hidden = task_run.output_bytes - len(window.text.encode("utf-8", "replace"))
        task_run.hidden_output = max(0, hidden) if window.earlier else 0


SEGMENT_ORDER = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "running", "queued", "pending"]


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
    if not run.revision.spec.get("workspace"):
        return {"changes": [], "collisions": [], "integration": None, "onward": None}
    by_task_run = {c.task_run_id: c for c in TaskChange.objects.filter(task_run__run_id=run.pk).defer("patch")}
    changes = [(t, by_task_run[t.pk]) for t in task_runs if t.pk in by_task_run]
    found = collisions.find(run.revision.spec, {t.task_id: c for t, c in changes}) if len(changes) > 1 else []
    integration = run.integrations.defer("patch").first()
    return {"changes": changes, "collisions": found, "integration": integration,
            "onward": onward(run.revision.spec["workspace"], integration) if integration and integration.head_commit else None}


def _row_fingerprint(task_run: TaskRun, run: Run) -> tuple:
    """What a task's row shows depends on: its own fields, and whether its run has ended (the
    Retry button appears then on a row that ended earlier)."""
    return (task_run.state, task_run.attempt, task_run.exit_code, task_run.error, task_run.started_at,
            task_run.finished_at, task_run.state_reason, task_run.cost_usd, task_run.cli_version, task_run.model,
            run.is_finished)


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


class RunView:
    """The state one viewer of one run has been sent.

    user: the viewer, so fragments show the actions their role allows (as the page does);
    csrf_token: the viewer's CSRF cookie value, for the forms in those fragments.
    """

    def __init__(self, run_id: int, user=None, csrf_token: str = "") -> None:
        self.run_id = run_id
        self.extra_context = {"perms": PermWrapper(user) if user is not None else None, "csrf_token": csrf_token}
        self.sent_seq: dict[int, int] = {}
        self.rows: dict[int, tuple] = {}
        self.header: tuple | None = None
        self.verdicts: tuple | None = None
        self.changes: tuple | None = None

    def _load(self) -> tuple[Run, list[TaskRun]]:
        run = Run.objects.select_related("plan", "started_by", "revision").get(pk=self.run_id)
        return run, list(run.task_runs.order_by("position"))

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
        """Messages holding every fragment of the page (for a viewer that (re)connects)."""
        run, task_runs = self._load()
        attach_output(task_runs)
        context = run_context(run, task_runs)
        fragments = [self._render("run-header", context)]
        for task_run in task_runs:
            fragments.append(self._render("task-row", context, task_run))
            fragments.append(self._output_fragment(context, task_run))
            self.rows[task_run.pk] = _row_fingerprint(task_run, run)
            self.sent_seq[task_run.pk] = task_run.output_seq
        self.header = self._header_key(run, context)
        fragments.append(self._render("verdicts", context))
        self.verdicts = self._verdicts_key(context)
        fragments.append(self._render("changes", context))
        self.changes = self._changes_key(context)
        fragments.append(self._render("timeline", context))
        return _pack(fragments)

    def update(self) -> list[str]:
        """Messages with the fragments that changed since the last snapshot or update ([] if none)."""
        run, task_runs = self._load()
        context = run_context(run, task_runs)
        fragments = []
        header = self._header_key(run, context)
        if header != self.header:
            fragments.append(self._render("run-header", context))
            self.header = header
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
                fragments.append(self._render("task-result", context, task_run))
                self.rows[task_run.pk] = fingerprint
                rows_changed = True
            fragments += self._new_output(context, task_run)
        if rows_changed:
            fragments.append(self._render("timeline", context))
        return _pack(fragments)

    def _new_output(self, context: dict, task_run: TaskRun) -> list[str]:
        sent = self.sent_seq.get(task_run.pk, 0)
        if task_run.output_seq <= sent:
            return []
        self.sent_seq[task_run.pk] = task_run.output_seq
        chunks = OutputChunk.objects.filter(task_run=task_run, seq__gt=sent, seq__lte=task_run.output_seq).order_by("seq")
        text = ""
        for piece in chunks.values_list("text", flat=True).iterator(chunk_size=50):
            text += piece
            if len(text) > OUTPUT_TAIL:
                # Too much at once to append: show the tail, like a page opened now would.
                attach_output([task_run])
                return [self._output_fragment(context, task_run)]
        fragments = []
        pending = _pieces(text, APPEND_PIECE)
        while pending:
            piece = pending.pop(0)
            html = f'<div hx-swap-oob="beforeend:#log-{task_run.pk}">{terminal.render(piece)}</div>'
            if _too_big(html) and len(piece) > 1:
                pending[:0] = _pieces(piece, len(piece) // 4 + 1)
                continue
            fragments.append(html)
        return fragments

    @staticmethod
    def partial_fragment(task_run_id: int, text: str) -> str:
        """The fragment showing `text`, the message a task run's agent is writing now, below its
        stored output ("" empties it: the complete message is in the output by then)."""
        return f'<pre class="log-partial" id="partial-{int(task_run_id)}" hx-swap-oob="true">{terminal.render(text)}</pre>'

    def _output_fragment(self, context: dict, task_run: TaskRun) -> str:
        """The task-output fragment, from a shorter tail while it renders over FRAGMENT_LIMIT."""
        size = OUTPUT_TAIL
        html = self._render("task-output", context, task_run)
        while _too_big(html) and size > 1024:
            size //= 4
            attach_output([task_run], size=size)
            html = self._render("task-output", context, task_run)
        return html


def _too_big(html: str) -> bool:
    return len(html) > FRAGMENT_LIMIT // 4 and len(html.encode("utf-8", "replace")) > FRAGMENT_LIMIT


def _pieces(text: str, size: int) -> list[str]:
    """`text` in pieces of about `size` characters, split after a newline where there is one."""
    pieces = []
    while len(text) > size:
        newline = text.rfind("\n", 0, size)
        cut = newline + 1 if newline > 0 else size
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text] if text else pieces
