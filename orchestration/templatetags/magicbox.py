"""Template filters and tags for Magic Box pages."""
from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def seconds(value: float | None) -> str:
    """12.3 -> "12.3 s", 125 -> "2 min 05 s", 7322 -> "2 h 02 min"; None -> "–"."""
    if value is None or value == "":
        return "–"
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def usd(value: float | None) -> str:
    """0.01234 -> "$0.0123"; None -> ""."""
    return "" if value is None else f"${value:.4f}"


@register.filter
def argv(value: list[str] | None) -> str:
    """["grep", "-m", "not cli"] -> 'grep -m "not cli"': a command as people write it (shlex reads it back)."""
    from orchestration.plans.editor import readable_join

    return readable_join(value or [])


@register.filter
def masked(value: str) -> str:
    """A repository URL (or any text) with the credentials in its URLs shown as ***."""
    from orchestration.plans.repositories import masked as hide

    return hide(value)


@register.filter
def terminal(text: str) -> str:
    """A task's output as safe HTML: ANSI colours rendered, other control sequences removed
    (see orchestration.terminal)."""
    from orchestration import terminal as renderer

    return renderer.render(text or "")


@register.filter
def terminal_text(text: str) -> str:
    """Worker-written text shown outside a log (results, errors, evidence): control sequences
    removed, no colours; autoescaped as usual."""
    from orchestration import terminal as renderer

    return renderer.plain(text or "")


@register.filter
def cost(value) -> str:
    """A task run or a review.cost.Cost as "$0.0123", "≈$0.0123" when estimated from tokens, "" unknown."""
    from orchestration.review.cost import Cost, task_cost

    if not isinstance(value, Cost):
        value = task_cost(value.worker, value.cost_usd, value.input_tokens, value.output_tokens)
    if value.usd is None:
        return ""
    return ("≈" if value.estimated else "") + f"${value.usd:.4f}"


@register.simple_tag
def error_slot(errors: dict, field: str, row: str = "") -> str:
    """The list where the editor shows one field's problems, or "" when it has none.

    errors: {field: [message]}; row: the row's key prefix ("tasks-3") or "" for the plan's own
    fields. {% error_slot t.errors "id" "tasks-3" %} -> <ul class="field-errors"
    id="err-tasks-3-id"> with an <li> per message. Field "" is the whole plan: its list (id
    "err-plan") is there even when empty. As-you-type validation removes these lists and adds
    new ones at the same places (templates/plans/edit.html, error-slots).
    """
    messages = (errors.get(field) if isinstance(errors, dict) else None) or []
    if not messages and field:
        return ""
    return format_html('<ul class="field-errors" id="err-{}">{}</ul>', f"{row}-{field}" if row else field or "plan",
                       format_html_join("", "<li>{}</li>", ((m,) for m in messages)))


@register.simple_tag
def task_rows(task_runs) -> str:
    """The run page's task list, a link per task run (templates/runs/detail.html, partial
    task-row), rendered here rather than by the template engine: a 2,000-task run's list takes
    milliseconds this way, not most of a second. Same markup as {% task_row %}."""
    return mark_safe("".join(_task_row(t) for t in task_runs))


@register.simple_tag
def task_row(task_run) -> str:
    """One task run's row in the run page's task list: its state, id, worker (and cost) and
    duration, linking to ?task=<id> (a deep link; static/magicbox/run.js shows it in place)."""
    return mark_safe(_task_row(task_run))


def _task_row(task_run) -> str:
    from html import escape
    from urllib.parse import quote

    since = ""
    if task_run.started_at and not task_run.finished_at:
        since = f' data-since="{task_run.started_at.timestamp()}"'
    spent = cost(task_run)
    task_id, state = escape(task_run.task_id), escape(task_run.state)
    return (f'<a id="task-{int(task_run.pk)}" class="task-row" href="?task={quote(task_run.task_id)}" data-task="{task_id}" '
            f'data-pk="{int(task_run.pk)}" data-state="{state}"><span class="state state-{state}">{escape(task_run.get_state_display())}</span>'
            f'<code class="task-id" title="{task_id}">{task_id}</code><span class="muted task-worker">{escape(task_run.worker)}'
            f'{escape(" · " + spent) if spent else ""}</span><span class="muted elapsed"{since}>{seconds(task_run.duration)}</span></a>')


@register.filter
def get_item(mapping, key):
    """mapping[key] in a template ({{ run.inputs|get_item:name }}); None when it has none."""
    return mapping.get(key) if isinstance(mapping, dict) else None
