"""Template filters for run pages."""
from __future__ import annotations

from django import template

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
def split(value: str) -> list[str]:
    """"a b c" -> ["a", "b", "c"] (for short literal lists in templates)."""
    return str(value).split()


@register.filter
def get(mapping: dict, key: str):
    """mapping[key], or [] when absent (for looking up per-field error lists)."""
    return mapping.get(key, []) if isinstance(mapping, dict) else []


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
