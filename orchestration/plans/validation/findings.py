"""What every section of a plan's validation shares: the document, its task ids and graph, and
the list of problems (fatal) and notices (warnings) found, each located in the source text."""
from __future__ import annotations

import difflib
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from orchestration.plans import graph, references, schema_refs
from orchestration.plans.errors import PlanProblem
from orchestration.plans.phased import PHASE_KEY
from orchestration.plans.yaml_source import LocatedYaml

TASKS = ("parallel_execution", "tasks")  # where the tasks are, in the canonical document


class Findings:
    """The plan document `doc` (canonical form, schema-valid) under validation, and what was found.

    workers: the configured worker names. base_dir: the plan file's directory (None: unknown).
    any_repository: whether the author may name any local repository (plans.repositories).
    problems: fatal faults; notices: warnings that keep the plan valid. Both are PlanProblems
    located through doc.locate (a line and column of the text, the field's path as written).
    """

    def __init__(self, doc: LocatedYaml, workers: list[str], base_dir: Path | None, any_repository: bool) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.tasks: list[dict[str, Any]] = self.data["parallel_execution"]["tasks"]
        self.workers = workers
        self.base_dir = base_dir
        self.any_repository = any_repository
        self.problems: list[PlanProblem] = []
        self.notices: list[PlanProblem] = []
        self.first_seen: dict[str, int] = {}  # task id -> index of the first task with it
        for index, task in enumerate(self.tasks):
            self.first_seen.setdefault(task["id"], index)

    # -- reporting -----------------------------------------------------------------------------

    def _located(self, path: list, message: str, at_key: bool) -> PlanProblem:
        line, column = self.doc.locate(path, at_key=at_key)
        return PlanProblem(self.doc.field_name(path), message, line, column, tuple(path))

    def add(self, path: list, message: str, at_key: bool = False) -> None:
        """Record a fault at `path` (a path in the canonical document), located in the text."""
        self.problems.append(self._located(path, message, at_key))

    def warn(self, path: list, message: str, at_key: bool = False) -> None:
        """Record a warning at `path`: the plan stays valid, the warning is shown with it."""
        self.notices.append(self._located(path, message, at_key))

    # -- the plan's tasks ----------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        """Task ids, each once, in plan order."""
        return list(self.first_seen)

    @property
    def unique_ids(self) -> bool:
        """Whether no two tasks share an id (else the graph is ambiguous and not analysed)."""
        return len(self.first_seen) == len(self.tasks)

    @cached_property
    def phases(self) -> list[str]:
        return sorted({t["phase"] for t in self.tasks if t.get("phase")})

    @cached_property
    def upstream(self) -> dict[str, list[str]]:
        """task id -> the ids it depends on (itself left out)."""
        return {t["id"]: [d for d in t.get("depends_on", []) if d != t["id"]] for t in self.tasks}

    @cached_property
    def cycle(self) -> list[str] | None:
        """One dependency cycle [a, …, a], or None (also None with duplicate ids: not analysed)."""
        return graph.find_cycle(self.upstream) if self.unique_ids else None

    @property
    def is_dag(self) -> bool:
        """Whether the graph can be analysed: unique ids and no cycle."""
        return self.unique_ids and self.cycle is None

    @cached_property
    def waits_for(self) -> dict[str, set[str]]:
        """task id -> every task it waits for, directly or not (only when is_dag)."""
        return graph.ancestors(self.upstream)

    @cached_property
    def downstream(self) -> dict[str, list[str]]:
        """task id -> the tasks that depend on it directly."""
        found: dict[str, list[str]] = {t: [] for t in self.first_seen}
        for task, ups in self.upstream.items():
            for up in ups:
                if up in found:
                    found[up].append(task)
        return found

    def path(self, index: int, *rest: Any) -> list:
        """The path of task `index` (and of a field inside it)."""
        return [*TASKS, index, *rest]

    def texts(self) -> Iterator[tuple[int, list, str]]:
        """(task index, path, text) of every text a reference may appear in: each task's
        description, prompt, and command (a string, or each argument of a list)."""
        for index, task in enumerate(self.tasks):
            for key in ("description", "prompt", "command"):
                values = task.get(key)
                for position, text in enumerate(values if isinstance(values, list) else [values]):
                    if isinstance(text, str):
                        yield index, self.path(index, key, *([position] if isinstance(values, list) else [])), text

    def unknown(self, name: str) -> str:
        """The message for `name`, which names no task (nor phase) of the plan, with a suggestion."""
        if self.phases and PHASE_KEY.match(name):
            return f"'{name}' is not a phase of this plan. Phases: {', '.join(self.phases)}."
        near = difflib.get_close_matches(name, self.ids, 1)
        hint = f"Did you mean '{near[0]}'?" if near else f"Tasks of this plan: {', '.join(self.ids)}."
        return f"'{name}' is not a task of this plan. {hint}"

    def unknown_worker(self, path: list, worker: str) -> bool:
        """Report `worker` at `path` when it is not configured; whether it was reported."""
        if worker in self.workers:
            return False
        near = difflib.get_close_matches(worker, self.workers, 1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        self.add(path, f"unknown worker '{worker}'.{hint} Configured workers: {', '.join(self.workers)}.")
        return True

    # -- shared checks -------------------------------------------------------------------------

    def check_command(self, path: list, command: Any) -> None:
        """Report a command (a string split like a shell would, or an argv list) that cannot run."""
        if isinstance(command, str):
            try:
                empty = not references.split_command(command)
            except ValueError as error:
                self.add(path, f"cannot split the command into arguments: {error}. Check its quotes, or write it as a list.")
                return
            if empty:
                self.add(path, "the command is empty.")
        elif isinstance(command, list) and command and not str(command[0]).strip():
            self.add(path, "the command's first item must name a program.")

    def remote_refs(self, path: list, schema: dict) -> bool:
        """Report each $ref of the schema at `path` that points outside it; whether there were any."""
        found = schema_refs.remote_refs(schema)
        for inner, ref in found:
            self.add([*path, *inner], f"{ref!r} points outside this schema, and Magic Box never fetches schemas over the "
                                      "network: copy what it refers to under `$defs` and write `$ref: \"#/$defs/<name>\"`.")
        return bool(found)
