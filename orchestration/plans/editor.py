"""The plan editor's data: posted form fields <-> a plan document, and problems -> form fields.

Field names: name, description, criteria (one per line); tasks-N-<field> for task N (id,
worker, description, prompt, prompt_file, output_format, integration, command, timeout,
retries, phase, writes, resources, and depends_on: the *positions* of the upstream tasks, so
renaming a task keeps its edges); contracts-N-<field> (name, provider, consumer,
specification as JSON or YAML); points-N-between (positions) and points-N-contract;
inputs-N-<field> (name, default, description, required).
Counts: tasks-count, contracts-count, points-count, inputs-count.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestration.plans.exporter import contract_document, workspace_document
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import load_document
from orchestration.plans.validation.tasks import MAX_TASKS
from orchestration.plans.spec import PlanSpec
from orchestration.plans.yaml_source import LocatedYaml, TooLarge

TASK_TEXT_FIELDS = ("id", "worker", "description", "prompt", "prompt_file", "output_format", "integration", "phase")
# The fields of a review loop, candidates and a gate, as the form holds them (strings as typed).
CONSTRUCT_FIELDS = ("loop_fixes", "loop_rounds", "candidates", "choose", "choose_review", "choose_command", "choose_score",
                    "gate", "gate_message", "gate_command", "gate_timeout")
# The fields the editor folds away under "Prompt, output, integration, files, loop, candidates, gate".
TASK_MORE_FIELDS = ("prompt", "output_format", "integration", "writes", "resources", "output_schema", *CONSTRUCT_FIELDS)
# Where the folded fields' problems are listed (a loop's, candidates', choice's and gate's under one key each).
TASK_MORE_ERRORS = ("prompt", "output_format", "integration", "writes", "resources", "output_schema", "loop", "candidates",
                    "choose", "gate")
MAX_ROWS = 500  # contracts and integration points; tasks go up to the loader's MAX_TASKS


@dataclass
class TaskRow:
    """One task as the editor shows it (strings as typed)."""

    id: str = ""
    worker: str = ""
    description: str = ""
    prompt: str = ""
    prompt_file: str = ""
    output_format: str = ""
    integration: str = ""
    phase: str = ""
    command: str = ""
    timeout: str = ""
    retries: str = ""
    offline: str = ""  # "on": the task's sandbox has no network (network: false)
    writes: str = ""
    resources: str = ""
    output_schema: str = ""
    loop_fixes: str = ""  # task ids, comma separated: the review loop's fixes (this task is the review)
    loop_rounds: str = ""
    candidates: str = ""  # workers, comma separated ("claude, codex", or "claude x3")
    choose: str = ""  # "", "person", "review" or "command"
    choose_review: str = ""
    choose_command: str = ""
    choose_score: str = ""  # "on": the best score wins
    gate: str = ""  # "", "approve" or "command"
    gate_message: str = ""
    gate_command: str = ""
    gate_timeout: str = ""
    depends_on: list[int] = field(default_factory=list)


@dataclass
class ContractRow:
    """provider / consumer: a task id, optionally followed by a note ("backend (the API)")."""

    name: str = ""
    provider: str = ""
    consumer: str = ""
    phase: str = ""
    specification: str = ""
    checks: str = ""  # JSON of the contract's checks, carried through (edited in YAML)


@dataclass
class PointRow:
    between: list[int] = field(default_factory=list)
    contract: str = ""


@dataclass
class InputRow:
    """One of the plan's `inputs:`. default: as typed ("" for none); required: "on" or ""."""

    name: str = ""
    default: str = ""
    description: str = ""
    required: str = ""


@dataclass
class EditorState:
    """Everything the editor form holds."""

    name: str = ""
    description: str = ""
    criteria: str = ""
    source_id: str = ""
    repository: str = ""
    base: str = ""
    base_revision: str = ""
    criteria_checks: str = ""  # JSON of the criteria with a command or review task, carried through
    workspace_options: str = ""  # JSON of the workspace's keep_worktrees / check / check_timeout / push, carried through
    inputs: list[InputRow] = field(default_factory=list)
    tasks: list[TaskRow] = field(default_factory=list)
    contracts: list[ContractRow] = field(default_factory=list)
    points: list[PointRow] = field(default_factory=list)


def _count(data, key: str, most: int = MAX_ROWS) -> int:
    try:
        return max(0, min(most, int(data.get(key, 0))))
    except (TypeError, ValueError):
        return 0


def _positions(values: list[str]) -> list[int]:
    return sorted({int(v) for v in values if re.fullmatch(r"[0-9]{1,6}", str(v))})


def state_from_post(data) -> EditorState:
    """Read a posted editor form (a QueryDict) into an EditorState. Never raises."""
    state = EditorState(**{f: data.get(f, "") for f in ("name", "description", "criteria", "source_id", "repository", "base",
                                                         "base_revision", "criteria_checks", "workspace_options")})
    for n in range(_count(data, "inputs-count")):
        state.inputs.append(InputRow(**{f: data.get(f"inputs-{n}-{f}", "") for f in ("name", "default", "description", "required")}))
    for n in range(_count(data, "tasks-count", MAX_TASKS)):
        row = TaskRow(**{f: data.get(f"tasks-{n}-{f}", "") for f in (*TASK_TEXT_FIELDS, "command", "timeout", "retries", "offline", "writes",
                                                                     "resources", "output_schema", *CONSTRUCT_FIELDS)})
        for name in ("command", "choose_command", "gate_command"):  # browsers send a textarea's line breaks as \r\n
            setattr(row, name, getattr(row, name).replace("\r\n", "\n"))
        row.depends_on = [p for p in _positions(data.getlist(f"tasks-{n}-depends_on")) if p != n]
        state.tasks.append(row)
    for n in range(_count(data, "contracts-count")):
        state.contracts.append(ContractRow(**{f: data.get(f"contracts-{n}-{f}", "") for f in ("name", "provider", "consumer", "phase", "specification", "checks")}))
    for n in range(_count(data, "points-count")):
        state.points.append(PointRow(between=_positions(data.getlist(f"points-{n}-between")), contract=data.get(f"points-{n}-contract", "")))
    return state


def state_from_spec(spec: PlanSpec) -> EditorState:
    """The editor's view of a stored spec."""
    position = {t.id: i for i, t in enumerate(spec.tasks)}
    workspace = spec.workspace
    checks = [c.to_dict() for c in spec.completion_criteria if not c.is_text]
    options = {k: v for k, v in workspace_document(workspace).items() if k not in ("repository", "base")} if workspace else {}
    state = EditorState(name=spec.name, description=spec.description,
                        criteria="\n".join(c.name for c in spec.completion_criteria if c.is_text),
                        criteria_checks=json.dumps(checks) if checks else "",
                        source_id=spec.source_id, repository=workspace.repository if workspace else "",
                        base=workspace.base if workspace else "",
                        workspace_options=json.dumps(options) if options else "",
                        inputs=[InputRow(name=name, default="" if i.default is None else str(i.default).lower() if isinstance(i.default, bool)
                                         else str(i.default), description=i.description, required="on" if i.required else "")
                                for name, i in spec.inputs.items()])
    for task in spec.tasks:
        row = TaskRow(**{f: str(getattr(task, f) or "") for f in TASK_TEXT_FIELDS})
        row.command = readable_join(task.command) if task.command else ""
        timeout = task.timeout
        row.timeout = "" if timeout is None else str(int(timeout)) if float(timeout).is_integer() else repr(float(timeout))
        row.retries = str(task.retries or "")
        row.offline = "on" if task.network is False else ""
        row.writes = "\n".join(task.writes)
        row.resources = "\n".join(task.resources)
        row.output_schema = task.output_schema_ref or (json.dumps(task.output_schema, indent=2) if task.output_schema else "")
        row.depends_on = [position[d] for d in task.depends_on if d in position]
        _constructs_to_row(task, row)
        state.tasks.append(row)
    for name, contract in spec.contracts.items():
        checks = contract_document(contract).get("checks")
        state.contracts.append(ContractRow(name=name, provider=contract.provider_note, consumer=contract.consumer_note,
                                           phase=contract.phase, checks=json.dumps(checks) if checks else "",
                                           specification=json.dumps(contract.specification, indent=2) if contract.specification else ""))
    for point in spec.integration_points:
        state.points.append(PointRow(between=[position[b] for b in point.between if b in position], contract=point.contract))
    return state


def _seconds_text(value: float | None) -> str:
    return "" if value is None else str(int(value)) if float(value).is_integer() else repr(float(value))


def _constructs_to_row(task, row: TaskRow) -> None:
    """Fill `row`'s loop, candidates and gate fields from `task` (plans.spec.Task)."""
    if task.loop:
        row.loop_fixes, row.loop_rounds = ", ".join(task.loop.fixes), str(task.loop.max_rounds)
    if task.candidates:
        workers = task.candidates.workers
        row.candidates = f"{workers[0]} x{len(workers)}" if len(set(workers)) == 1 else ", ".join(workers)
        choose = task.candidates.choose
        row.choose = choose.way
        row.choose_review = choose.review
        row.choose_command = readable_join(choose.command) if choose.command else ""
        row.choose_score = "on" if choose.score else ""
    if task.gate:
        row.gate = "approve" if task.gate.approve else "command"
        row.gate_message = task.gate.message
        row.gate_command = readable_join(task.gate.command) if task.gate.command else ""
        row.gate_timeout = _seconds_text(task.gate.timeout)


def _constructs_from_row(row: TaskRow, n: int, faults: dict[str, list[str]]) -> dict[str, Any]:
    """The loop, candidates / choose and gate keys of task row `n` as a plan file writes them;
    faults of what cannot even be read (a count that is no number) go into `faults`."""
    out: dict[str, Any] = {}

    def number(text: str, key: str, cast=float) -> float | None:
        try:
            return cast(text.strip()) if text.strip() else None
        except (ValueError, OverflowError):
            faults.setdefault(f"tasks-{n}-{key}", []).append("must be a number" if cast is float else "must be a whole number")
            return None

    def fault(key: str, message: str) -> None:
        faults.setdefault(f"tasks-{n}-{key}", []).append(message)

    fixes = [part for part in re.split(r"[,\s]+", row.loop_fixes) if part]
    if row.loop_rounds.strip() and not fixes:
        fault("loop", "name the tasks this review sends back (Fixes), or empty Max rounds")
    elif fixes or row.loop_rounds.strip():
        out["loop"] = {"fixes": fixes}
        if (rounds := number(row.loop_rounds, "loop", int)) is not None:
            out["loop"]["max_rounds"] = rounds
    workers = [part for part in re.split(r"[,\s]+", row.candidates) if part]
    if len(workers) == 2 and re.fullmatch(r"[x×][0-9]{1,3}", workers[1]):  # "claude x3"
        out["candidates"] = {"worker": workers[0], "n": int(workers[1][1:])}
    elif workers:
        out["candidates"] = workers
    if row.choose == "person":
        out["choose"] = "person"
    elif row.choose == "review" and not row.choose_review.strip():
        fault("choose", "name the review task that chooses (Review task): one that depends on this task")
    elif row.choose == "review":
        out["choose"] = {"review": row.choose_review.strip()}
    elif row.choose == "command" and not row.choose_command.strip():
        fault("choose", "write the command run in each candidate's directory (Command)")
    elif row.choose == "command":
        out["choose"] = {"command": row.choose_command.strip(), **({"score": True} if row.choose_score else {})}
    if row.gate == "command" and not row.gate_command.strip():
        fault("gate", "write the check that must pass (Check command), or choose another kind of gate")
    elif row.gate in ("approve", "command"):
        gate: dict[str, Any] = {"approve": True} if row.gate == "approve" else {"command": row.gate_command.strip()}
        if row.gate_message.strip():
            gate["message"] = row.gate_message.strip()
        if (timeout := number(row.gate_timeout, "gate")) is not None and timeout <= 0:
            fault("gate", "the timeout is seconds to wait for a decision: more than 0, or empty for no limit")
        elif timeout is not None:
            gate["timeout"] = timeout
        out["gate"] = gate
    return out


def apply_action(state: EditorState, action: str) -> None:
    """Apply a structural edit: add-task, remove-task-N, up-task-N, down-task-N, add-contract,
    remove-contract-N, add-point, remove-point-N, add-input, remove-input-N. Unknown actions do nothing. Dependencies and
    integration points keep pointing at the same tasks when tasks move or go."""
    match = re.fullmatch(r"(add|remove|up|down)-(task|contract|point|input)(?:-(\d+))?", action or "")
    if not match:
        return
    verb, kind, index = match.group(1), match.group(2), int(match.group(3) or -1)
    rows = {"task": state.tasks, "contract": state.contracts, "point": state.points, "input": state.inputs}[kind]
    if verb == "add" and len(rows) < (MAX_TASKS if kind == "task" else MAX_ROWS):
        if kind == "task":  # a new task starts with the worker of the one above it
            rows.append(TaskRow(worker=state.tasks[-1].worker if state.tasks else "shell"))
        else:
            rows.append({"contract": ContractRow, "point": PointRow, "input": InputRow}[kind]())
        return
    if not 0 <= index < len(rows):
        return
    if kind != "task":
        if verb == "remove":
            del rows[index]
        return
    if verb == "remove":
        mapping = {old: (old if old < index else old - 1) for old in range(len(rows)) if old != index}
        del rows[index]
    else:
        other = index - 1 if verb == "up" else index + 1
        if not 0 <= other < len(rows):
            return
        rows[index], rows[other] = rows[other], rows[index]
        mapping = {i: i for i in range(len(rows))} | {index: other, other: index}
    for task in state.tasks:
        task.depends_on = sorted(mapping[p] for p in task.depends_on if p in mapping)
    for point in state.points:
        point.between = sorted(mapping[p] for p in point.between if p in mapping)


def readable_join(argv: list[str]) -> str:
    """An argv as a command line that shlex.split reads back, quoted the way people write it.

    ["python", "-c", "print('A')"] -> python -c "print('A')" (shlex.join would write
    'print('"'"'A'"'"')').
    """
    out = []
    for arg in argv:
        if arg and re.fullmatch(r"[\w@%+=:,./-]+", arg):
            out.append(arg)
        elif not re.search(r'["$`\\!]', arg):
            out.append(f'"{arg}"')
        else:
            out.append(shlex.quote(arg))
    return " ".join(out)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def document(state: EditorState) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The plan document the state describes, and faults found while building it (by field)."""
    faults: dict[str, list[str]] = {}
    ids = [t.id.strip() for t in state.tasks]
    tasks = []
    for n, row in enumerate(state.tasks):
        task: dict[str, Any] = {"id": row.id.strip(), "worker": row.worker.strip()}
        for key in ("description", "prompt", "prompt_file", "output_format", "integration", "phase"):
            value = getattr(row, key).strip() if key != "prompt" else getattr(row, key)
            if value.strip():
                task[key] = value
        if row.command.strip():
            task["command"] = row.command.strip()  # the loader splits it, and says where it cannot
        for key, cast in (("timeout", float), ("retries", int)):
            raw = getattr(row, key).strip()
            if raw:
                try:
                    task[key] = cast(raw)
                except ValueError:
                    faults.setdefault(f"tasks-{n}-{key}", []).append("must be a number" if key == "timeout" else "must be a whole number")
        if row.offline:
            task["network"] = False
        for key in ("writes", "resources"):
            if _lines(getattr(row, key)):
                task[key] = _lines(getattr(row, key))
        if row.output_schema.strip():
            if row.output_schema.strip().startswith("contracts."):
                task["output_schema"] = row.output_schema.strip()
            else:
                schema, problem = _parse_specification(row.output_schema)
                if problem:
                    faults.setdefault(f"tasks-{n}-output_schema", []).append(problem)
                elif schema is not None:
                    task["output_schema"] = schema
        task.update(_constructs_from_row(row, n, faults))
        if row.depends_on:
            # Two ticked tasks may have the same id while it is being typed: list it once.
            task["depends_on"] = list(dict.fromkeys(ids[p] for p in row.depends_on if p < len(ids)))
        tasks.append(task)
    execution: dict[str, Any] = {"tasks": tasks}
    if state.points:
        execution["integration_points"] = [
            {"between": [ids[p] for p in point.between if p < len(ids)], **({"contract": point.contract} if point.contract.strip() else {})}
            for point in state.points
        ]
    criteria: list[Any] = _lines(state.criteria)
    try:
        carried = json.loads(state.criteria_checks) if state.criteria_checks.strip() else []
    except (ValueError, RecursionError):
        carried = []
    criteria += [c for c in carried if isinstance(c, dict)] if isinstance(carried, list) else []
    if criteria:
        execution["completion_criteria"] = criteria
    if state.source_id.strip():
        execution["id"] = state.source_id.strip()
    doc: dict[str, Any] = {"name": state.name.strip(), "parallel_execution": execution}
    inputs: dict[str, Any] = {}
    for n, row in enumerate(state.inputs):
        name = row.name.strip()
        if not name:
            if row.default.strip() or row.description.strip():
                faults.setdefault(f"inputs-{n}-name", []).append("give the input a name, as {{ inputs.<name> }} uses it")
            continue
        if name in inputs:
            faults.setdefault(f"inputs-{n}-name", []).append(f"another input is already named '{name}'")
        inputs[name] = {**({"default": row.default} if row.default != "" else {}),
                        **({"description": row.description.strip()} if row.description.strip() else {}),
                        **({"required": True} if row.required else {})}
    if inputs:
        doc["inputs"] = inputs
    if state.description.strip():
        doc["description"] = state.description.strip()
    if state.repository.strip():
        try:
            options = json.loads(state.workspace_options) if state.workspace_options.strip() else {}
        except (ValueError, RecursionError):
            options = {}
        options = {k: v for k, v in options.items() if k in ("keep_worktrees", "check", "check_timeout", "push")} if isinstance(options, dict) else {}
        doc["workspace"] = {"repository": state.repository.strip(), **({"base": state.base.strip()} if state.base.strip() else {}), **options}
    contracts: dict[str, Any] = {}
    for n, row in enumerate(state.contracts):
        name = row.name.strip() or f"contract_{n + 1}"
        if name in contracts:
            faults.setdefault(f"contracts-{n}-name", []).append(f"another contract is already named '{name}'")
        item: dict[str, Any] = {k: getattr(row, k).strip() for k in ("provider", "consumer", "phase") if getattr(row, k).strip()}
        if row.specification.strip():
            specification, problem = _parse_specification(row.specification)
            if problem:
                faults.setdefault(f"contracts-{n}-specification", []).append(problem)
            elif specification is not None:
                item["specification"] = specification
        if row.checks.strip():
            try:
                checks = json.loads(row.checks)
            except (ValueError, RecursionError):
                checks = None
            if isinstance(checks, list) and checks:
                item["checks"] = [{k: v for k, v in c.items() if v is not None} for c in checks if isinstance(c, dict)]
        contracts[name] = item
    if contracts:
        doc["contracts"] = contracts
    return doc, faults


def _parse_specification(text: str) -> tuple[Any, str]:
    """(value, "") for a contract specification typed as JSON or YAML, or (None, what is wrong).

    Parsed with the plan loader's own YAML reader, so alias bombs and over-deep nesting are
    refused here as they are in files.
    """
    try:
        parsed = LocatedYaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return None, f"not valid JSON or YAML{where}: {getattr(error, 'problem', None) or error}"
    except TooLarge as error:
        return None, error.problem.message
    except RecursionError:
        return None, "nested too deeply"
    return parsed.data, ""


def field_key(path: tuple, doc: dict[str, Any]) -> str:
    """The editor field a problem at `path` (PlanProblem.path, in the document `document` made)
    belongs to ("" for the whole plan).

    ("parallel_execution", "tasks", 2, "depends_on", 0) -> "tasks-2-depends_on";
    ("contracts", "auth_api", "specification", "request") -> "contracts-<its row>-specification".
    """
    match path:
        case ("parallel_execution", "tasks", int(n), str(name), *_):
            return f"tasks-{n}-{name}"
        case ("parallel_execution", "tasks", int(n), *_):
            return f"tasks-{n}-id"
        case ("parallel_execution", "integration_points", int(n), str(name), *_):
            return f"points-{n}-{name}"
        case ("parallel_execution", "integration_points", int(n), *_):
            return f"points-{n}-between"
        case ("parallel_execution", "completion_criteria", *_):
            return "criteria"
        case ("contracts", str(name), *rest):
            index = list(doc.get("contracts", {})).index(name) if name in doc.get("contracts", {}) else -1
            part = rest[0] if rest and rest[0] in ("provider", "consumer", "phase", "specification") else "name"
            return f"contracts-{index}-{part}" if index >= 0 else ""
        case ("inputs", str(name), *rest):
            index = list(doc.get("inputs", {})).index(name) if name in doc.get("inputs", {}) else -1
            part = rest[0] if rest and rest[0] in ("default", "description", "required") else "name"
            return f"inputs-{index}-{part}" if index >= 0 else ""
        case ("name" | "description" as name, *_):
            return name
        case ("workspace", *_):
            return "repository"
    return ""


def validate(state: EditorState, any_repository: bool = False) -> tuple[PlanSpec | None, dict[str, list[str]]]:
    """(spec, {}) when the state is a valid plan; else (None, {field key: [messages]}).

    Messages for the whole plan are under the key "". The document the form describes is
    validated as data by the loader that validates files (load_document: the same checks), and
    each problem's path in it names its field (field_key): nothing is parsed back from text.
    """
    doc, faults = document(state)
    if not state.tasks:
        faults.setdefault("", []).append("a plan needs at least one task: add one")
        return None, faults
    try:
        spec = load_document(doc, "plan", any_repository=any_repository)
    except PlanInvalid as error:
        for problem in error.problems:
            faults.setdefault(field_key(problem.path, doc), []).append(problem.message)
        return None, faults
    return (spec, {}) if not faults else (None, faults)


TASK_FIELDS = (*TASK_TEXT_FIELDS, "command", "timeout", "retries", *TASK_MORE_ERRORS, "depends_on")


def slot_keys(state: EditorState) -> list[str]:
    """Every field key that can carry errors in this state ("" is the whole plan)."""
    keys = ["", "name", "description", "criteria", "repository"]
    keys += [f"tasks-{n}-{f}" for n in range(len(state.tasks)) for f in TASK_FIELDS]
    keys += [f"contracts-{n}-{f}" for n in range(len(state.contracts)) for f in ("name", "provider", "consumer", "phase", "specification")]
    keys += [f"points-{n}-{f}" for n in range(len(state.points)) for f in ("between", "contract")]
    keys += [f"inputs-{n}-{f}" for n in range(len(state.inputs)) for f in ("name", "default", "description", "required")]
    return keys
