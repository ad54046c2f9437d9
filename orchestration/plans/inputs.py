"""A run's inputs: the values given when it starts, checked against the plan's `inputs:`."""
from __future__ import annotations

import math

from orchestration.plans.spec import PlanSpec

MAX_VALUE = 100_000  # characters of one input's value


class InputsRefused(ValueError):
    """Values that cannot start a run of the plan. `problems`: [(field, message)], the field
    as `inputs.<name>`; the message (str) lists them all."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


def resolve(spec: PlanSpec, given: dict[str, object] | None) -> dict[str, str]:
    """Every declared input's value for a run: the one given (as text), else its default.
    A value that is empty or only white space counts as not given. Raises InputsRefused naming
    each required input without a value, each value for an input the plan does not declare, and
    values that are too long or hold a NUL."""
    given = dict(given or {})
    problems: list[tuple[str, str]] = []
    declared = ", ".join(spec.inputs) or "none"
    for name in given:
        if name not in spec.inputs:
            problems.append((f"inputs.{name}", f"this plan has no input {name!r} (its inputs: {declared})"))
    values: dict[str, str] = {}
    for name, declared_input in spec.inputs.items():
        value = given.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if declared_input.default is None:
                if declared_input.required:
                    what = f" ({declared_input.description})" if declared_input.description else ""
                    problems.append((f"inputs.{name}", f"required{what}: give it a value"))
                continue
            value = declared_input.default
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((f"inputs.{name}", f"{value} is not a number a task can use: give a finite number, or text"))
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if len(text) > MAX_VALUE or "\x00" in text or not _encodable(text):
            problems.append((f"inputs.{name}", f"a value has at most {MAX_VALUE:,} characters, no NUL and no half of a "
                                               "UTF-16 surrogate pair"))
            continue
        values[name] = text
    if problems:
        raise InputsRefused(problems)
    return values


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no program argument can carry it
        return False
    return True

