"""Results that flow downstream: `{{ tasks.<id>.result }}` and `{{ tasks.<id>.output.<field>… }}`.

A task's description, prompt and (shell) command may refer to the results of its upstream
tasks. `result` is the upstream task's result text; `output` is that text read as JSON (a
fenced ```json block is accepted), and `.field` / `.0` walk into it. Nothing else is
evaluated: results are data, never templates.
"""
from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

REFERENCE = re.compile(r"\{\{\s*tasks\.([^\s{}]+?)\s*\}\}")
INPUT = re.compile(r"\{\{\s*inputs\.([^\s{}]*?)\s*\}\}")  # {{ inputs.<name> }}: a value given at the run's start
ANY = re.compile(REFERENCE.pattern + "|" + INPUT.pattern)
FENCED_JSON = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)
_BRACED = re.compile(r"\{\{.*?\}\}")  # any {{ … }}: a reference, or a mistyped one the checks report
_HELD = re.compile("\x00[0-9]+\x00")


def split_command(line: str) -> list[str]:
    """A command line as argv, split as a POSIX shell splits words (shlex), except that each
    `{{ … }}` stays whole inside the argument it is part of: `echo {{ tasks.a.result }}` is two
    arguments, not four. Raises ValueError for unbalanced quotes (as shlex.split)."""
    held: dict[str, str] = {}

    def hold(match: re.Match) -> str:
        key = f"\x00{len(held)}\x00"
        held[key] = match.group(0)
        return key

    return [_HELD.sub(lambda m: held.get(m.group(0), m.group(0)), arg) for arg in shlex.split(_BRACED.sub(hold, line))]


class ReferenceError_(Exception):
    """A reference that cannot be filled in; the message says which and why."""


@dataclass(frozen=True)
class Reference:
    """One `{{ tasks.<task>.<kind>[.<path>] }}`: kind is "result" or "output"."""

    text: str
    task: str
    kind: str
    path: tuple[str, ...]


def find(text: str, task_ids: Iterable[str]) -> tuple[list[Reference], list[str]]:
    """The references in `text`, and messages for the ones that name no known task or part.

    Task ids may contain dots, so the longest known id followed by `.result` or `.output` wins.
    """
    ids = sorted(set(task_ids), key=len, reverse=True)
    found, problems = [], []
    for match in REFERENCE.finditer(text or ""):
        body = match.group(1)
        for task in ids:
            if body.startswith(task + "."):
                kind, *path = body[len(task) + 1:].split(".")
                if kind == "result" and not path or kind == "output" and all(path):
                    found.append(Reference(match.group(0), task, kind, tuple(path)))
                    break
        else:
            problems.append(f"{match.group(0)} names no task of this plan as tasks.<id>.result or tasks.<id>.output[.field]")
    return found, problems


def find_inputs(text: str, names: Iterable[str]) -> tuple[list[str], list[str]]:
    """The input names `text` refers to ({{ inputs.<name> }}), and messages for those the plan
    does not declare."""
    known = set(names)
    used, problems = [], []
    for match in INPUT.finditer(text or ""):
        name = match.group(1)
        if name in known:
            used.append(name)
        else:
            listed = ", ".join(sorted(known)) or "none"
            problems.append(f"{match.group(0)} names no input of this plan (its inputs: {listed}): declare it under "
                            f"`inputs:` (in the editor: + Add input), e.g. `inputs: {{{name or 'name'}: {{default: …}}}}`.")
    return used, problems


def parse_output(result: str) -> Any:
    """A task's result read as JSON (the whole text, or its first ```json block). Raises ValueError."""
    try:
        return json.loads(result)
    except ValueError:
        match = FENCED_JSON.search(result)
        if match:
            return json.loads(match.group(1))
        raise


def fill(text: str, results: dict[str, str], task_ids: Iterable[str], inputs: dict[str, str] | None = None) -> str:
    """`text` with every reference replaced by its value (JSON for non-text values): task
    results, and the run's `inputs` ({name: value}) for `{{ inputs.<name> }}`.

    Raises ReferenceError_ when a result is missing, not JSON, or lacks the field named, or an
    input has no value.
    """
    references, problems = find(text, task_ids)
    if problems:
        raise ReferenceError_(problems[0])
    values = {reference.text: _value(reference, results) for reference in references}
    for match in INPUT.finditer(text or ""):
        if (inputs or {}).get(match.group(1)) is None:
            raise ReferenceError_(f"{match.group(0)}: the run has no value for input {match.group(1)!r}")
        values[match.group(0)] = inputs[match.group(1)]
    # One pass over the original text: a value that itself holds "{{ … }}" stays as it is.
    return ANY.sub(lambda match: values.get(match.group(0), match.group(0)), text)


def _value(reference: Reference, results: dict[str, str]) -> str:
    if reference.task not in results:
        raise ReferenceError_(f"{reference.text}: task {reference.task} has no result here (it is not upstream)")
    value: Any = results[reference.task]
    if reference.kind == "output":
        try:
            value = parse_output(value)
        except ValueError:
            raise ReferenceError_(f"{reference.text}: the result of {reference.task} is not JSON") from None
        for part in reference.path:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdecimal() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise ReferenceError_(f"{reference.text}: the output of {reference.task} has no '{part}' there")
    return value if isinstance(value, str) else json.dumps(value)
