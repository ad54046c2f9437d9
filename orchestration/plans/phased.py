"""The seed's phased form, rewritten into the canonical `parallel_execution: {tasks: [...]}` form.

The seed's "Full-Stack Feature" example writes a plan as phases::

    feature: "User Profile Page"
    parallel_execution:
      phase_1:                       # a list of tasks ...
        - task: "Research profile UX patterns"
          worker: "gemini"
      phase_2:                       # ... or a mapping with a contract and its tasks
        contract: {endpoint: "GET /api/users/:id"}
        tasks:
          - task: "Build profile API endpoint"
            worker: "codex"
      phase_3:
        - task: "Integration test"
          worker: "codex"
          depends_on: ["phase_2"]    # a phase: every task in it

(The seed itself puts `contract:` and the `- task:` list side by side under one key, which is
not valid YAML; the loader says so with the line and how to fix it.) Tasks get an id made from
their text unless they give one; `depends_on` may name phases or task ids; a phase's contract
becomes a contract of that phase. Every rewritten path is mapped back to the line it came from.
"""
from __future__ import annotations

import re
from typing import Any

from orchestration.plans.errors import PlanProblem

PHASE_KEY = re.compile(r"^phase_[0-9]+$")
PHASE_EXTRA_KEYS = {"integration_points", "completion_criteria", "id", "name", "description", "total_tasks"}


def is_phased(data: Any) -> bool:
    """True if `data` is a plan document in the phased form (its parallel_execution has phase_N keys)."""
    execution = data.get("parallel_execution") if isinstance(data, dict) else None
    return isinstance(execution, dict) and any(isinstance(k, str) and PHASE_KEY.match(k) for k in execution)


def slug(text: str) -> str:
    """"Build profile API endpoint" -> "build-profile-api-endpoint" (at most 60 characters)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].rstrip("-")


class PhasedPlan:
    """The canonical document of a phased plan and the way back to the original's paths.

    data: the canonical document. problems: faults of the phased structure itself (located by
    the caller through `original_path`).
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.source = data
        self.problems: list[tuple[list, str]] = []  # (original path, message)
        self._task_origin: list[list] = []  # canonical task index -> original task path
        self._dep_origin: list[list[int | None]] = []  # per task: expanded index -> original index
        self._contract_origin: dict[str, list] = {}
        self.data = self._convert(data)

    def _convert(self, data: dict[str, Any]) -> dict[str, Any]:
        execution = data["parallel_execution"]
        phases: dict[str, list[tuple[list, dict]]] = {}
        contracts: dict[str, Any] = dict(data.get("contracts") or {}) if isinstance(data.get("contracts"), dict) else {}
        canonical_execution: dict[str, Any] = {}
        for key, value in execution.items():
            path = ["parallel_execution", key]
            if isinstance(key, str) and PHASE_KEY.match(key):
                entries, list_path = value, path
                if isinstance(value, dict):
                    unknown = set(value) - {"tasks", "contract", "description"}
                    for extra in sorted(map(str, unknown)):
                        self.problems.append(([*path, extra], f"unknown key '{extra}' in a phase: a phase holds `tasks:`, and optionally `contract:` and `description:`."))
                    if "contract" in value:
                        contracts[key] = {"phase": key, "specification": value["contract"]}
                        self._contract_origin[key] = [*path, "contract"]
                    entries, list_path = value.get("tasks"), [*path, "tasks"]
                if not isinstance(entries, list) or not entries:
                    self.problems.append((list_path, f"{key} needs a list of tasks (`- task: ...` items)."))
                    continue
                phases[key] = [([*list_path, index], entry) for index, entry in enumerate(entries)]
            elif key in PHASE_EXTRA_KEYS:
                canonical_execution[key] = value
            else:
                self.problems.append(([*path], f"unknown key '{key}': in the phased form parallel_execution holds phase_1, phase_2, … (and integration_points, completion_criteria)."))
        ids: set[str] = set()
        tasks: list[dict[str, Any]] = []
        members: dict[str, list[str]] = {}
        for phase, entries in phases.items():
            for task_path, entry in entries:
                if not isinstance(entry, dict):
                    self.problems.append((task_path, "a task is a mapping such as `{task: \"Build the API\", worker: codex}`."))
                    continue
                task = {k: v for k, v in entry.items() if k != "task"}
                if "task" in entry:
                    task["description"] = entry["task"]
                if "id" not in task:
                    base = slug(str(entry.get("task", ""))) or f"{phase}-{task_path[-1] + 1}"
                    candidate, n = base, 2
                    while candidate in ids:
                        candidate, n = f"{base}-{n}", n + 1
                    task["id"] = candidate
                ids.add(str(task["id"]))
                task["phase"] = phase
                members.setdefault(phase, []).append(task["id"])
                tasks.append(task)
                self._task_origin.append(task_path)
        for task in tasks:
            deps = task.get("depends_on")
            origin: list[int | None] = []
            if isinstance(deps, list):
                expanded: list[Any] = []
                for index, dep in enumerate(deps):
                    targets = members.get(dep, [dep]) if isinstance(dep, str) and PHASE_KEY.match(dep) else [dep]
                    if isinstance(dep, str) and PHASE_KEY.match(dep) and dep not in members:
                        targets = [dep]  # an unknown phase: left for the checks to report
                    for target in targets:
                        if target not in expanded:
                            expanded.append(target)
                            origin.append(index)
                task["depends_on"] = expanded
            self._dep_origin.append(origin)
        canonical_execution["tasks"] = tasks
        document = {k: v for k, v in data.items() if k not in ("parallel_execution", "feature", "contracts")}
        if "feature" in data and "name" not in data:
            document["name"] = data["feature"]
        document["parallel_execution"] = canonical_execution
        if contracts:
            document["contracts"] = contracts
        return document

    def original_path(self, path: list) -> tuple[list, bool]:
        """Map a path of the canonical document to the phased file's path.

        Returns (path, exact): exact is False when the field was generated (a task's id, its
        phase) and the path points at the nearest original node instead.
        """
        if len(path) >= 3 and path[:2] == ["parallel_execution", "tasks"] and isinstance(path[2], int) \
                and path[2] < len(self._task_origin):
            index, rest = path[2], list(path[3:])
            origin = list(self._task_origin[index])
            if not rest:
                return origin, True
            field = rest[0]
            if field == "description":
                return [*origin, "task", *rest[1:]], True
            if field == "phase" or (field == "id" and "id" not in self._source_task(index)):
                return origin, False
            if field == "depends_on" and len(rest) > 1 and isinstance(rest[1], int):
                mapping = self._dep_origin[index]
                original_index = mapping[rest[1]] if rest[1] < len(mapping) else None
                return [*origin, "depends_on", *([original_index] if original_index is not None else [])], True
            return [*origin, *rest], True
        if len(path) >= 2 and path[0] == "contracts" and path[1] in self._contract_origin:
            rest = list(path[2:])
            if rest and rest[0] == "specification":
                rest = rest[1:]
            return [*self._contract_origin[path[1]], *rest], bool(not path[2:] or path[2] == "specification")
        if path and path[0] == "name" and "feature" in self.source and "name" not in self.source:
            return ["feature", *path[1:]], True
        return list(path), True

    def _source_task(self, index: int) -> dict:
        node: Any = self.source
        for part in self._task_origin[index]:
            node = node[part]
        return node if isinstance(node, dict) else {}


def phase_problems(plan: PhasedPlan, locate) -> list[PlanProblem]:
    """The phased structure's own faults as located problems. `locate(path) -> (line, column)`."""
    from orchestration.plans.yaml_source import format_path

    out = []
    for path, message in plan.problems:
        line, column = locate(path, at_key=message.startswith("unknown key"))
        out.append(PlanProblem(format_path(path), message, line, column))
    return out
