"""The loaded plan as a typed value: what import, export, the editor and the engine share.

`plans.loader.load_plan` validates a plan file and returns a `PlanSpec`; `PlanRevision.spec`
stores it as JSON (`to_dict`, the shape below) and gives it back typed (`from_dict`, which also
reads revisions stored before a field existed: missing keys take their defaults). Instances are
frozen: a plan revision never changes.

Stored shape (`PlanSpec.to_dict()`):

    {"name", "description", "source_id",
     "workspace": {"repository", "base", "keep_worktrees", "push", "check": [argv] | None,
                   "check_timeout": seconds | None} | None,
     "tasks": [{"id", "worker", "description", "prompt", "prompt_file", "output_format",
                "integration", "depends_on": [ids], "command": [argv] | None,
                "timeout": seconds | None, "retries", "network", "phase",
                "output_schema": {JSON Schema} | None, "output_schema_ref": "contracts.…" | "",
                "writes": [globs], "resources": [names],
                "loop": {"fixes": [ids], "max_rounds"} | None,
                "candidates": {"workers": [names], "choose": {"review": id} | {"command": [argv],
                               "score": bool, "timeout": seconds | None} | {"person": true}} | None,
                "gate": {"approve": bool, "command": [argv] | None, "message", "timeout": seconds | None} | None}],
     "integration_points": [{"between": [ids], "contract"}],
     "completion_criteria": ["text" | {"name", "command"?: [argv], "review"?: id, "timeout"?: seconds}],
     "contracts": {name: {"provider", "consumer", "provider_note", "consumer_note", "phase",
                          "specification": {…}, "checks"?: [{"name", "command", "outputs",
                          "against", "timeout"}]}},
     "notices": [{"field", "message", "line", "column"}],
     "inputs": {name: {"default": text | None, "description", "required": bool}}}

`notices` are warnings found at import (a plan that is valid but may not do what its author
meant, e.g. parallel groups the dependencies contradict); they are shown, never fatal.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from orchestration.plans import graph
from orchestration.plans.errors import PlanProblem

REVIEW_VERDICTS = ("APPROVE", "REQUEST_CHANGES", "REJECT")  # a review task's first answer line (prompts/orchestrator/quality-control.md)


def _plain(value: Any) -> Any:
    """A dataclass (or a structure of them) as JSON-ready data; None-valued optional keys kept."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _known(cls, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of `data` that are fields of dataclass `cls` (older or newer stored keys dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class Workspace:
    """The git repository the tasks work in, each in its own worktree and branch.

    repository: an absolute path or a URL. base: the branch, tag or commit tasks start from.
    check: argv run by Integrate on the merged branches (None: none); check_timeout: seconds.
    """

    repository: str
    base: str = "HEAD"
    keep_worktrees: bool = False
    push: bool = False
    check: list[str] | None = None
    check_timeout: float | None = None


@dataclass(frozen=True)
class Loop:
    """A review-and-fix loop on a review task: on REQUEST_CHANGES the `fixes` tasks (upstream of
    the review) run again with the findings, then the review again, up to `max_rounds` rounds."""

    fixes: list[str]
    max_rounds: int = 3


@dataclass(frozen=True)
class Choice:
    """How the winner of a task's candidates is chosen: exactly one of
    review (a downstream review task that names the winner), command (argv run in each
    candidate's worktree: the first to pass wins, or with `score` the highest number it prints
    last), person (an Operator picks in the browser). timeout: the command's, seconds."""

    review: str = ""
    command: list[str] | None = None
    score: bool = False
    person: bool = False
    timeout: float | None = None

    @property
    def way(self) -> str:
        """"review", "command" or "person"."""
        return "review" if self.review else "command" if self.command else "person"


@dataclass(frozen=True)
class Candidates:
    """Best-of-N: the task runs once per worker in `workers`, in parallel, each in its own
    worktree and branch with the same prompt; `choose` picks the one downstream tasks get."""

    workers: list[str]
    choose: Choice


@dataclass(frozen=True)
class Gate:
    """Held after the task succeeds, before anything downstream of it starts: a person with the
    Operator role approves (`approve`), or the check `command` (argv) must pass. message: shown
    to the approver. timeout: seconds the gate waits (None: forever) before it is rejected."""

    approve: bool = False
    command: list[str] | None = None
    message: str = ""
    timeout: float | None = None


@dataclass(frozen=True)
class Input:
    """A value given when a run starts (`inputs:`), used as `{{ inputs.<name> }}` in prompts and
    commands. default: used when none is given (None: none); required: a run needs a value."""

    default: str | None = None
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Task:
    """One task of a plan (see the module docstring for its fields' meaning and units)."""

    id: str
    worker: str
    description: str = ""
    prompt: str = ""
    prompt_file: str = ""
    output_format: str = ""
    integration: str = ""
    depends_on: list[str] = field(default_factory=list)
    command: list[str] | None = None
    timeout: float | None = None
    retries: int = 0
    network: bool = True
    phase: str = ""
    output_schema: dict[str, Any] | None = None
    output_schema_ref: str = ""
    writes: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    loop: Loop | None = None
    candidates: Candidates | None = None
    gate: Gate | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        values = _known(cls, data)
        if values.get("loop"):
            values["loop"] = Loop(**_known(Loop, values["loop"]))
        if values.get("candidates"):
            c = values["candidates"]
            values["candidates"] = Candidates(workers=list(c["workers"]), choose=Choice(**_known(Choice, c.get("choose") or {})))
        if values.get("gate"):
            values["gate"] = Gate(**_known(Gate, values["gate"]))
        return cls(**values)


@dataclass(frozen=True)
class Criterion:
    """A completion criterion: text a person judges (no command, no review), a command (argv,
    timeout in seconds) whose exit status decides, or the review task whose answer decides."""

    name: str
    command: list[str] | None = None
    review: str = ""
    timeout: float | None = None

    @property
    def is_text(self) -> bool:
        return self.command is None and not self.review

    def __str__(self) -> str:
        return self.name

    def to_dict(self) -> str | dict[str, Any]:
        """The stored form: the text itself, or {"name", "command"?, "review"?, "timeout"?}."""
        if self.is_text:
            return self.name
        out: dict[str, Any] = {"name": self.name}
        if self.command is not None:
            out["command"] = list(self.command)
        if self.review:
            out["review"] = self.review
        if self.timeout is not None:
            out["timeout"] = self.timeout
        return out

    @classmethod
    def from_dict(cls, data: str | dict[str, Any]) -> Criterion:
        return cls(name=data) if isinstance(data, str) else cls(**_known(cls, data))


@dataclass(frozen=True)
class ContractCheck:
    """A check of a contract: a task's output (`outputs`: a task id) or a command's stdout
    validated against the schema `against` names in the contract's specification."""

    name: str
    against: str
    command: list[str] | None = None
    outputs: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Contract:
    """An integration contract: `provider` and `consumer` are task ids (their notes as written
    in `*_note`), or `phase` names the phase whose tasks share it; `specification` is the
    seed's free-form mapping (request / response schemas)."""

    provider: str = ""
    consumer: str = ""
    provider_note: str = ""
    consumer_note: str = ""
    phase: str = ""
    specification: dict[str, Any] = field(default_factory=dict)
    checks: list[ContractCheck] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contract:
        values = _known(cls, data)
        values["checks"] = [ContractCheck(**_known(ContractCheck, c)) for c in values.get("checks") or []]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = _plain(self)
        if not self.checks:
            del out["checks"]
        return out


@dataclass(frozen=True)
class IntegrationPoint:
    """Tasks whose work must fit together (`between`: task ids), with the seed's `contract` text."""

    between: list[str]
    contract: str = ""


@dataclass(frozen=True, eq=False)
class PlanSpec:
    """A validated plan (see the module docstring). Equality compares the stored form."""

    name: str
    description: str = ""
    source_id: str = ""
    workspace: Workspace | None = None
    tasks: list[Task] = field(default_factory=list)
    integration_points: list[IntegrationPoint] = field(default_factory=list)
    completion_criteria: list[Criterion] = field(default_factory=list)
    contracts: dict[str, Contract] = field(default_factory=dict)
    notices: list[PlanProblem] = field(default_factory=list)
    inputs: dict[str, Input] = field(default_factory=dict)

    # -- the graph ---------------------------------------------------------------------------

    @cached_property
    def by_id(self) -> dict[str, Task]:
        """task id -> Task."""
        return {t.id: t for t in self.tasks}

    def task(self, task_id: str) -> Task:
        """The task `task_id`. Raises KeyError when the plan has none."""
        return self.by_id[task_id]

    @property
    def ids(self) -> list[str]:
        """Task ids in plan order."""
        return [t.id for t in self.tasks]

    @cached_property
    def dependencies(self) -> dict[str, list[str]]:
        """task id -> the tasks it waits for, in plan order: the DAG the engine runs. That is its
        depends_on, plus the review of a loop when the task is downstream of one of the loop's
        fixes but neither upstream nor downstream of the review: it must not build on work the
        review has not approved yet (engine.loops)."""
        declared = {t.id: list(t.depends_on) for t in self.tasks}
        reviews = [t for t in self.tasks if t.loop]
        if not reviews:
            return declared
        waits_for = graph.ancestors(declared)
        for review in reviews:
            fixes = set(review.loop.fixes)
            for task_id, ups in declared.items():
                if (task_id != review.id and fixes & waits_for[task_id] and task_id not in waits_for[review.id]
                        and review.id not in waits_for[task_id]):
                    ups.append(review.id)
        return declared

    def upstream(self, task_id: str) -> list[str]:
        """The tasks `task_id` waits for directly (dependencies)."""
        return self.dependencies[task_id]

    @cached_property
    def _downstream(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {t.id: [] for t in self.tasks}
        for task_id, ups in self.dependencies.items():
            for dep in ups:
                if dep in found:
                    found[dep].append(task_id)
        return found

    def downstream(self, task_id: str) -> list[str]:
        """The tasks that wait for `task_id` directly (dependencies), in plan order."""
        return self._downstream[task_id]

    @cached_property
    def _choosers(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for t in self.tasks:
            if t.candidates and t.candidates.choose.review:
                found.setdefault(t.candidates.choose.review, []).append(t.id)
        return found

    def chooses_for(self, review_id: str) -> list[str]:
        """The tasks whose candidates review `review_id` chooses among (choose: {review}), in plan order."""
        return self._choosers.get(review_id, [])

    @cached_property
    def ancestors(self) -> dict[str, set[str]]:
        """task id -> every task it waits for, directly or not."""
        return graph.ancestors(self.dependencies)

    @property
    def specifications(self) -> dict[str, dict[str, Any]]:
        """{contract name: its specification} (for plans.loader.resolve_schema_ref)."""
        return {name: c.specification for name, c in self.contracts.items()}

    # -- storage -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored in PlanRevision.spec (shape: the module docstring)."""
        return {
            "name": self.name,
            "description": self.description,
            "source_id": self.source_id,
            "workspace": _plain(self.workspace),
            "tasks": [_plain(t) for t in self.tasks],
            "integration_points": [_plain(p) for p in self.integration_points],
            "completion_criteria": [c.to_dict() for c in self.completion_criteria],
            "contracts": {name: c.to_dict() for name, c in self.contracts.items()},
            "notices": [_plain(n) for n in self.notices],
            "inputs": {name: _plain(i) for name, i in self.inputs.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanSpec:
        """The spec stored as `data` (to_dict's shape; keys it lacks take their defaults).
        Raises KeyError / TypeError when `data` is no stored spec at all."""
        workspace = data.get("workspace")
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            source_id=data.get("source_id", ""),
            workspace=Workspace(**_known(Workspace, workspace)) if workspace else None,
            tasks=[Task.from_dict(t) for t in data.get("tasks", [])],
            integration_points=[IntegrationPoint(**_known(IntegrationPoint, p)) for p in data.get("integration_points", [])],
            completion_criteria=[Criterion.from_dict(c) for c in data.get("completion_criteria", [])],
            contracts={name: Contract.from_dict(c) for name, c in (data.get("contracts") or {}).items()},
            notices=[PlanProblem(**_known(PlanProblem, n)) for n in data.get("notices", [])],
            inputs={name: Input(**_known(Input, i)) for name, i in (data.get("inputs") or {}).items()},
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlanSpec) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def replace(self, **changes: Any) -> PlanSpec:
        """A copy with `changes` (dataclasses.replace)."""
        return dataclasses.replace(self, **changes)
