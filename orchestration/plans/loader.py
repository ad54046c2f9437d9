"""Load a plan file in the seed's `parallel_execution:` form into a validated, normalised spec.

The seed's form (shared design note, "Output Format" and "Integration Contracts"):

    parallel_execution:
      id: "exec_12345"
      total_tasks: 3
      tasks: [{id, worker, description, output_format, integration, depends_on, prompt_file}, ...]
      integration_points: [{between: [a, b], contract: "..."}]
      completion_criteria: ["All tasks completed", ...]
    contracts: {name: {provider, consumer, specification}}

Magic Box adds per task: prompt, command (shell worker), timeout (seconds), retries; and at the
top level: name, description, workspace. The JSON Schema is plan.schema.json beside this file.
"""
from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from orchestration.plans import references, repositories, schema_refs
from orchestration.plans import graph
from orchestration.plans.errors import PlanInvalid, PlanProblem
from orchestration.plans.phased import PHASE_KEY, PhasedPlan, is_phased, phase_problems
from orchestration.plans.spec import Contract, ContractCheck, Criterion, IntegrationPoint, PlanSpec, Task, Workspace
from orchestration.plans.yaml_source import LocatedYaml, TooLarge, yaml_error_problem

SCHEMA_PATH = Path(__file__).with_name("plan.schema.json")
MAX_PLAN_BYTES = 2 * 1024 * 1024
MAX_TASKS = 2000


@functools.cache
def editor_schema() -> dict[str, Any]:
    """The schema served at /schema/plan.json: plan.schema.json, plus the seed's phased form.

    The loader validates the canonical form (a phased plan is rewritten first); editors see
    files in either form, so this one accepts both.
    """
    schema = copy.deepcopy(plan_schema())
    defs = schema["$defs"]
    phased_task = copy.deepcopy(defs["task"])
    phased_task["required"] = ["task", "worker"]
    phased_task["properties"]["task"] = {"type": "string", "description": "What the task does (its id is made from it unless `id` is given)."}
    phased_task["properties"]["depends_on"] = {"type": "array", "items": {"type": "string"}, "description": "Phases (phase_2: every task in it) or task ids."}
    del phased_task["properties"]["phase"]
    defs["phased_task"] = phased_task
    canonical = schema["properties"]["parallel_execution"]
    defs["phased_execution"] = {
        "type": "object",
        "additionalProperties": False,
        "patternProperties": {"^phase_[0-9]+$": {"anyOf": [
            {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/phased_task"}},
            {"type": "object", "required": ["tasks"], "additionalProperties": False, "properties": {
                "tasks": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/phased_task"}},
                "contract": {"type": "object", "description": "A contract shared by the phase's tasks."},
                "description": {"type": "string"},
            }},
        ]}},
        "properties": {k: v for k, v in canonical["properties"].items() if k != "tasks"},
    }
    schema["properties"]["parallel_execution"] = {"anyOf": [canonical, {"$ref": "#/$defs/phased_execution"}]}
    schema["properties"]["feature"] = {"type": "string", "description": "The phased form's plan name."}
    return schema


def decode_plan(raw: bytes, source: str) -> str:
    """Decode a plan file's bytes as UTF-8 (a BOM is allowed).

    Raises PlanInvalid naming the line and column of the first byte that is not UTF-8.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = raw[: error.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise PlanInvalid(source, [PlanProblem(
            "", f"the file is not UTF-8 text (byte 0x{raw[error.start]:02x} here). Save it as UTF-8.", line, column
        )]) from None


@functools.cache
def plan_schema() -> dict[str, Any]:
    """The plan JSON Schema (draft 2020-12) as a dict."""
    return json.loads(SCHEMA_PATH.read_text())


def load_plan(text: str, source: str = "plan.yaml", base_dir: Path | None = None, workers: list[str] | None = None,
              any_repository: bool = False) -> PlanSpec:
    """Parse and validate plan YAML; return the plan as a PlanSpec (plans.spec).

    text: the file's contents. source: the name used in messages. base_dir: the plan file's
    directory, against which a relative workspace.repository is resolved (None: must be absolute).
    workers: the allowed worker names (default: the configured registry). any_repository: the
    plan is saved by someone who may name any local repository path (plans.repositories.trusted:
    a superuser, or the command line); otherwise only paths under MAGICBOX_REPOSITORY_ROOTS.

    Raises PlanInvalid listing every problem with its line, column and field.
    """
    if workers is None:
        from orchestration.workers.registry import worker_names

        workers = worker_names()
    if len(text.encode("utf-8", "replace")) > MAX_PLAN_BYTES:
        raise PlanInvalid(source, [PlanProblem("", f"the file is larger than {MAX_PLAN_BYTES // 1024} KiB")])
    try:
        doc = LocatedYaml(text)
    except yaml.YAMLError as error:
        raise PlanInvalid(source, [yaml_error_problem(error)]) from None
    except TooLarge as error:
        raise PlanInvalid(source, [error.problem]) from None
    except RecursionError:
        raise PlanInvalid(source, [PlanProblem("", "the document is nested too deeply (hundreds of levels); a plan needs a few.")]) from None
    problems = doc.duplicate_keys()
    if doc.data is None:
        raise PlanInvalid(source, [PlanProblem("", "the file is empty: a plan needs a `parallel_execution:` mapping with `tasks:`", 1, 1)])
    unstorable = _unstorable_values(doc)
    if unstorable:
        raise PlanInvalid(source, problems + unstorable)
    if is_phased(doc.data):
        phased = PhasedPlan(doc.data)
        problems += phase_problems(phased, doc.locate)
        doc.data, doc.translate = phased.data, phased.original_path
    schema_problems = _schema_problems(doc)
    problems += schema_problems
    # Unknown keys leave the structure intact, so the deeper checks can still run and report
    # everything in one go; any other schema fault would only make them fail confusingly.
    if all(p.message.startswith("unknown key") for p in schema_problems):
        problems += _semantic_problems(doc, workers, base_dir, any_repository)
    if problems:
        raise PlanInvalid(source, problems)
    return _normalise(doc.data, source, base_dir, [])


def _schema_problems(doc: LocatedYaml) -> list[PlanProblem]:
    validator = schema_refs.validator(plan_schema())
    problems = []
    for error in validator.iter_errors(doc.data):
        path = list(error.absolute_path)
        at_key = False
        message = error.message
        if error.validator == "additionalProperties":
            extra = sorted((k for k in error.instance if k not in error.schema.get("properties", {})), key=str)
            allowed = ", ".join(error.schema.get("properties", {}))
            for key in extra:
                near = difflib.get_close_matches(str(key), list(error.schema.get("properties", {})), 1)
                hint = f" Did you mean '{near[0]}'?" if near else f" Allowed keys here: {allowed}."
                line, column = doc.locate([*path, key], at_key=True)
                problems.append(PlanProblem(doc.field_name([*path, key]), f"unknown key '{key}'.{hint}", line, column))
            continue
        if error.validator == "anyOf" and len(path) == 2 and path[0] == "contracts":
            message = "a contract names its `provider` and `consumer` tasks (or the `phase` whose tasks share it)"
        elif error.validator == "required":
            message = f"missing required key {error.message.split(' is a required')[0]}"
        elif error.validator == "pattern" and error.validator_value == "\\S":
            message = "must not be blank"
        elif error.validator == "pattern" and path and path[-1] == "phase":
            message = f"{error.instance!r} is not a phase name: write phase_1, phase_2, …"
        elif error.validator == "pattern":
            message = f"{error.instance!r} is not a valid task id: use letters, digits, '_', '.' and '-' (at most 100 characters)"
        elif error.validator == "oneOf" and path and path[-1] == "command":
            message = "command must be a non-empty string or a list of strings (an argv list) whose first item names a program"
        elif error.validator in ("minimum", "exclusiveMinimum", "maximum") and path and path[-1] in ("timeout", "retries"):
            limits = {"timeout": "more than 0 and at most 604800 seconds (7 days)", "retries": "from 0 to 10"}
            message = f"{error.instance:g} is out of range: {path[-1]} must be {limits[path[-1]]}"
        elif error.validator == "uniqueItems":
            message = "lists the same entry twice: remove the repeat"
        elif error.validator == "type":
            message = f"must be {_type_words(error.validator_value)}, not {_describe(error.instance)}"
        line, column = doc.locate(path, at_key=at_key)
        problems.append(PlanProblem(doc.field_name(path), message, line, column))
    return problems


def _unstorable_values(doc: LocatedYaml) -> list[PlanProblem]:
    """Keys that are not strings, numbers that are not finite, text with NUL characters or lone
    surrogates, and values JSON cannot hold (YAML dates, binary, sets).

    A surrogate pair written as two escapes (YAML's "\\ud83d\\ude00") is made the character it
    stands for, in doc.data, as JSON reads it.
    """
    problems: list[PlanProblem] = []

    def add(path: list, message: str, at_key: bool = False) -> None:
        line, column = doc.locate(path, at_key=at_key)
        problems.append(PlanProblem(doc.field_name(path), message, line, column))

    def walk(value: Any, path: list) -> Any:
        if len(problems) >= 20:
            return value
        if isinstance(value, dict):
            for key, item in list(value.items()):
                if not isinstance(key, str):
                    add([*path, key], f"the key {key!r} is not text: quote it (\"{key}\").", at_key=True)
                elif lone := _lone_surrogate(key):
                    add([*path, key], _LONE_SURROGATE.format(lone=lone), at_key=True)
                    continue
                value[key] = walk(item, [*path, key])
            if any(isinstance(key, str) and _has_surrogates(key) for key in value):
                items = [(_joined_pairs(k) if isinstance(k, str) else k, v) for k, v in value.items()]
                value.clear()
                value.update(items)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                value[index] = walk(item, [*path, index])
        elif isinstance(value, float) and not math.isfinite(value):
            add(path, f"{value} is not a number a plan can hold: write a finite number.")
        elif isinstance(value, str) and "\x00" in value:
            add(path, "the text contains a NUL character (\\0), which no program argument or prompt can carry.")
        elif isinstance(value, str) and _has_surrogates(value):
            if lone := _lone_surrogate(value):
                add(path, _LONE_SURROGATE.format(lone=lone))
            return _joined_pairs(value)
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            add(path, f"YAML reads this as a {type(value).__name__}, which a plan cannot hold: quote it to make it text.")
        return value

    doc.data = walk(doc.data, [])
    return problems


_LONE_SURROGATE = ("the text contains \\u{lone:x}, half of a UTF-16 surrogate pair without its other half: it is no "
                   "character and cannot be stored. Remove it, or write the character itself (or both halves of its pair).")
_LONE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")


def _has_surrogates(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate(text: str) -> int | None:
    """The code point of the first surrogate in `text` that is not part of a pair, or None."""
    found = _LONE.search(text) if _has_surrogates(text) else None
    return ord(found.group()) if found else None


def _joined_pairs(text: str) -> str:
    """`text` with each surrogate pair made the character it stands for (lone halves kept)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


SCHEMA_KEYWORDS = {"type", "properties", "items", "$ref", "required", "enum", "const", "oneOf", "anyOf", "allOf",
                   "additionalProperties", "format", "pattern", "minLength", "maxLength", "minimum", "maximum"}


def contract_schemas(specification: dict[str, Any]) -> list[tuple[list, dict]]:
    """The JSON Schemas inside a contract's specification, with their paths in it.

    The seed's form: `request` and `response` are schemas, or `response` holds one per outcome
    (`success`, `error`, ...). A mapping with no schema keyword (the seed's loose
    `response: { id, name }`) is a description, not a schema, and is not checked.
    """
    found = []

    def is_schema(value: Any) -> bool:
        return isinstance(value, dict) and bool(SCHEMA_KEYWORDS & set(value))

    for key in ("request", "response", "error", "schema"):
        value = specification.get(key) if isinstance(specification, dict) else None
        if is_schema(value):
            found.append(([key], value))
        elif isinstance(value, dict):
            found += [([key, outcome], sub) for outcome, sub in value.items() if is_schema(sub)]
    return found


def _type_words(expected: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number", "number": "a number", "boolean": "true or false"}
    if isinstance(expected, list):
        return " or ".join(names.get(e, e) for e in expected)
    return names.get(expected, str(expected))


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _endless(schema: dict[str, Any]) -> bool:
    """True when validating anything against `schema` never ends (e.g. {"$ref": "#"})."""
    try:
        validator = schema_refs.validator(schema)
        for sample in (None, {}, [], "", 0):
            validator.is_valid(sample)
    except RecursionError:
        return True
    except Exception:  # noqa: BLE001 — an unresolvable $ref or bad keyword: reported by the meta-schema check
        return False
    except BaseException as error:
        # Deep enough, the recursion surfaces from rpds (Rust, behind jsonschema's `referencing`)
        # as pyo3's PanicException, which is no Exception.
        if type(error).__name__ == "PanicException":
            return True
        raise
    return False


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _criterion(criterion: str | dict[str, Any]) -> Criterion:
    """A completion criterion: text stays text; a mapping gets its command as argv."""
    if isinstance(criterion, str):
        return Criterion(name=criterion)
    return Criterion(name=criterion["name"], command=_argv(criterion["command"]) if criterion.get("command") else None,
                     review=criterion.get("review") or "", timeout=_whole_if_integral(criterion.get("timeout")))


def resolve_schema_ref(ref: str, specifications: dict[str, Any]) -> dict[str, Any] | None:
    """"contracts.auth_api.response.success" -> that schema inside the contract's specification;
    `specifications`: {contract name: its specification}. None when the path names none."""
    parts = ref.split(".")
    if len(parts) < 3 or parts[0] != "contracts" or parts[1] not in specifications:
        return None
    node: Any = specifications[parts[1]] or {}
    for part in parts[2:]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _specifications(contracts: dict[str, Any]) -> dict[str, Any]:
    """{name: specification} of a plan document's contracts."""
    return {name: (c or {}).get("specification") or {} if isinstance(c, dict) else {} for name, c in contracts.items()}


def _whole_if_integral(value: float | int | None) -> float | int | None:
    """60.0 -> 60, so plans written either way are the same plan (and export as written)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _task_ref(text: str) -> str:
    """"task_2 (backend)" -> "task_2": contracts name a task id, optionally followed by a note."""
    return text.strip().split()[0] if text and text.strip() else ""


def _semantic_problems(doc: LocatedYaml, workers: list[str], base_dir: Path | None, any_repository: bool) -> list[PlanProblem]:
    data = doc.data
    pe = data["parallel_execution"]
    tasks = pe["tasks"]
    problems: list[PlanProblem] = []

    def add(path: list, message: str, at_key: bool = False) -> None:
        line, column = doc.locate(path, at_key=at_key)
        problems.append(PlanProblem(doc.field_name(path), message, line, column))

    def remote_refs(path: list, schema: dict) -> bool:
        """Report each $ref of the schema at `path` that points outside it; whether there were any."""
        found = schema_refs.remote_refs(schema)
        for inner, ref in found:
            add([*path, *inner], f"{ref!r} points outside this schema, and Magic Box never fetches schemas over the "
                                 "network: copy what it refers to under `$defs` and write `$ref: \"#/$defs/<name>\"`.")
        return bool(found)

    if len(tasks) > MAX_TASKS:
        add(["parallel_execution", "tasks"], f"the plan has {len(tasks)} tasks; at most {MAX_TASKS} are allowed. Split it into several plans.")
        return problems
    first_seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        tid = task["id"]
        if tid in first_seen:
            line, _ = doc.locate(["parallel_execution", "tasks", first_seen[tid], "id"])
            add(["parallel_execution", "tasks", index, "id"],
                f"duplicate task id '{tid}': task {first_seen[tid] + 1} (line {line}) already has it. Give each task its own id.")
        else:
            first_seen[tid] = index
    ids = list(first_seen)

    phases = sorted({t["phase"] for t in tasks if t.get("phase")})

    def unknown(name: str) -> str:
        if phases and PHASE_KEY.match(name):
            return f"'{name}' is not a phase of this plan. Phases: {', '.join(phases)}."
        near = difflib.get_close_matches(name, ids, 1)
        hint = f"Did you mean '{near[0]}'?" if near else f"Tasks of this plan: {', '.join(ids)}."
        return f"'{name}' is not a task of this plan. {hint}"

    for index, task in enumerate(tasks):
        base = ["parallel_execution", "tasks", index]
        for dep_index, dep in enumerate(task.get("depends_on", [])):
            if dep == task["id"]:
                add([*base, "depends_on", dep_index], f"task '{dep}' depends on itself. Remove this entry.")
            elif dep not in first_seen:
                add([*base, "depends_on", dep_index], unknown(dep))
        worker = task["worker"]
        if worker not in workers:
            near = difflib.get_close_matches(worker, workers, 1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            add([*base, "worker"], f"unknown worker '{worker}'.{hint} Configured workers: {', '.join(workers)}.")
        if worker == "shell":
            if "command" not in task:
                add([*base, "command"], "the shell worker needs a `command:` (an argv list, or a string split like a shell would).")
            elif isinstance(task["command"], str):
                try:
                    if not shlex.split(task["command"]):
                        add([*base, "command"], "the command is empty.")
                except ValueError as error:
                    add([*base, "command"], f"cannot split the command into arguments: {error}. Check its quotes, or write it as a list.")
        elif "command" in task and worker in workers:
            add([*base, "command"], f"`command` is only for the shell worker; a {worker} task takes a `description` or `prompt`.", at_key=True)
        if worker != "shell" and worker in workers and not any(task.get(k, "").strip() for k in ("description", "prompt", "prompt_file")):
            add([*base, "description"], f"task '{task['id']}' has nothing to do: give it a `description` or a `prompt`.")
        if task.get("prompt_file"):
            from orchestration.plans.prompt_library import BadPromptPath
            from orchestration.plans.prompt_library import check as check_prompt_file

            try:
                check_prompt_file(task["prompt_file"])
            except BadPromptPath as error:
                add([*base, "prompt_file"], str(error))

    upstream = {t["id"]: [d for d in t.get("depends_on", []) if d != t["id"]] for t in tasks}
    # With duplicate ids the graph is ambiguous: report the duplicates, not imagined cycles.
    cycle = graph.find_cycle(upstream) if len(first_seen) == len(tasks) else None
    if cycle:
        index = next(i for i, t in enumerate(tasks) if t["id"] == cycle[0])
        add(
            ["parallel_execution", "tasks", index, "depends_on"],
            f"dependency cycle: {' → '.join(cycle)}. A task cannot wait for itself; remove one of these depends_on entries.",
        )

    if not cycle and len(first_seen) == len(tasks):
        waits_for = graph.ancestors(upstream)
        for index, task in enumerate(tasks):
            for key in ("description", "prompt", "command"):
                values = task.get(key)
                for position, text in enumerate(values if isinstance(values, list) else [values]):
                    if not isinstance(text, str):
                        continue
                    path = ["parallel_execution", "tasks", index, key, *([position] if isinstance(values, list) else [])]
                    found, unknown_refs = references.find(text, first_seen)
                    for message in unknown_refs:
                        add(path, message)
                    for reference in found:
                        if reference.task not in waits_for[task["id"]]:
                            add(path, f"{reference.text} refers to {reference.task}, which is not upstream of {task['id']}: "
                                      f"add {reference.task} to depends_on, or remove the reference.")

    contracts_doc = data.get("contracts") or {}

    def check_command(path: list, command: Any) -> None:
        if isinstance(command, str):
            try:
                empty = not shlex.split(command)
            except ValueError as error:
                add(path, f"cannot split the command into arguments: {error}. Check its quotes, or write it as a list.")
                return
            if empty:
                add(path, "the command is empty.")
        elif isinstance(command, list) and command and not str(command[0]).strip():
            add(path, "the command's first item must name a program.")

    for index, criterion in enumerate(pe.get("completion_criteria", [])):
        if isinstance(criterion, dict) and "command" in criterion:
            check_command(["parallel_execution", "completion_criteria", index, "command"], criterion["command"])
    for name, contract in contracts_doc.items():
        for index, check in enumerate(contract.get("checks", [])):
            if "command" in check:
                check_command(["contracts", name, "checks", index, "command"], check["command"])
            if resolve_schema_ref(f"contracts.{name}.{check['against']}", _specifications(contracts_doc)) is None:
                add(["contracts", name, "checks", index, "against"],
                    f"'{check['against']}' names no schema in this contract's specification (e.g. request, response.success).")
    for index, criterion in enumerate(pe.get("completion_criteria", [])):
        if isinstance(criterion, dict) and criterion.get("review") and criterion["review"] not in first_seen:
            add(["parallel_execution", "completion_criteria", index, "review"], unknown(criterion["review"]))
    for index, task in enumerate(tasks):
        schema = task.get("output_schema")
        path = ["parallel_execution", "tasks", index, "output_schema"]
        if isinstance(schema, str):
            if resolve_schema_ref(schema, _specifications(contracts_doc)) is None:
                add(path, f"{schema} names no schema: write contracts.<contract>.<part>, e.g. contracts.auth_api.response.success.")
        elif isinstance(schema, dict):
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as error:
                pointer = "/" + "/".join(str(p) for p in error.path)
                add([*path, *error.path], f"not a valid JSON Schema at {pointer}: {error.message}")
            else:
                if not remote_refs(path, schema) and _endless(schema):
                    add(path, "the schema refers to itself ($ref) without end, so nothing can match it.")

    if "total_tasks" in pe and pe["total_tasks"] != len(tasks):
        add(
            ["parallel_execution", "total_tasks"],
            f"total_tasks is {pe['total_tasks']} but the plan lists {len(tasks)} tasks. Correct total_tasks or remove it.",
        )

    for index, point in enumerate(pe.get("integration_points", [])):
        for member_index, member in enumerate(point["between"]):
            if member not in first_seen:
                add(["parallel_execution", "integration_points", index, "between", member_index], unknown(member))

    for name, contract in (data.get("contracts") or {}).items():
        if "phase" in contract and contract["phase"] not in phases:
            add(["contracts", name, "phase"], f"no task is in phase '{contract['phase']}'. Phases of this plan: {', '.join(sorted(phases)) or 'none'}.")
        for role in ("provider", "consumer"):
            if role not in contract:
                continue
            ref = _task_ref(contract[role])
            if ref not in first_seen:
                add(["contracts", name, role], f"{unknown(ref)} Write the task id first, e.g. \"{ids[0]} (note)\".")

    for name, contract in (data.get("contracts") or {}).items():
        for pointer_parts, schema in contract_schemas(contract.get("specification") or {}):
            if remote_refs(["contracts", name, "specification", *pointer_parts], schema):
                continue
            if _endless(schema):
                add(["contracts", name, "specification", *pointer_parts],
                    "this schema refers to itself ($ref) without end, so nothing can match it.")
                continue
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as error:
                inner = [*pointer_parts, *error.path]
                hint = ""
                if inner and inner[-1] == "type":
                    hint = " Types are: string, number, integer, boolean, object, array, null."
                pointer = "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in ["contracts", name, "specification", *inner])
                add(["contracts", name, "specification", *inner],
                    f"not a valid JSON Schema at {pointer}: {error.message}.{hint}")

    workspace = data.get("workspace")
    if workspace:
        for index, task in enumerate(tasks):
            tid = task["id"]
            if ".." in tid or tid.endswith((".", ".lock")):
                add(["parallel_execution", "tasks", index, "id"],
                    f"'{tid}' cannot name the task's git branch (magicbox/run-N/{tid}): with a workspace, a task id may not "
                    "contain '..' or end with '.' or '.lock'.")
    if workspace:
        if reason := repositories.problem(workspace["repository"], any_repository, base_dir):
            add(["workspace", "repository"], reason)
        if str(workspace.get("base", "")).strip().startswith("-"):
            add(["workspace", "base"], f"{workspace['base']!r} starts with '-', which git would read as an option: "
                "name a branch, tag or commit (e.g. main).")
    return problems


def _normalise(data: dict[str, Any], source: str, base_dir: Path | None, notices: list[PlanProblem] | None = None) -> PlanSpec:
    pe = data["parallel_execution"]
    contracts_doc = data.get("contracts") or {}
    tasks = []
    for task in pe["tasks"]:
        command = task.get("command")
        schema = task.get("output_schema")
        tasks.append(Task(
            id=task["id"], worker=task["worker"],
            **{key: task.get(key, "") for key in ("description", "prompt", "prompt_file", "output_format", "integration", "phase")},
            depends_on=list(task.get("depends_on", [])),
            command=_argv(command) if command is not None else None,
            timeout=_whole_if_integral(task.get("timeout")),
            retries=task.get("retries", 0),
            network=task.get("network", True),
            output_schema=resolve_schema_ref(schema, _specifications(contracts_doc)) if isinstance(schema, str) else schema,
            output_schema_ref=schema if isinstance(schema, str) else "",
            writes=list(task.get("writes", [])),
            resources=list(task.get("resources", [])),
        ))
    workspace = data.get("workspace")
    if workspace:
        repository = workspace["repository"]
        if not repositories.is_url(repository) and not Path(repository).is_absolute() and base_dir is not None:
            repository = str((base_dir / repository).resolve())
        check = workspace.get("check")
        workspace = Workspace(repository=repository, base=workspace.get("base", "HEAD"),
                              keep_worktrees=bool(workspace.get("keep_worktrees", False)), push=bool(workspace.get("push", False)),
                              check=_argv(check) if check is not None else None, check_timeout=workspace.get("check_timeout"))
    stem = Path(source).stem
    return PlanSpec(
        name=data.get("name") or pe.get("name") or pe.get("id") or stem,
        description=data.get("description") or pe.get("description", ""),
        source_id=pe.get("id", ""),
        workspace=workspace,
        tasks=tasks,
        integration_points=[IntegrationPoint(between=list(p["between"]), contract=p.get("contract", ""))
                            for p in pe.get("integration_points", [])],
        completion_criteria=[_criterion(c) for c in pe.get("completion_criteria", [])],
        contracts={name: Contract(
            provider=_task_ref(c.get("provider", "")), consumer=_task_ref(c.get("consumer", "")),
            provider_note=c.get("provider", ""), consumer_note=c.get("consumer", ""), phase=c.get("phase", ""),
            specification=c.get("specification", {}),
            checks=[ContractCheck(name=check.get("name") or f"{name}: {check['against']}", against=check["against"],
                                  command=_argv(check["command"]) if check.get("command") else None,
                                  outputs=check.get("outputs"), timeout=_whole_if_integral(check.get("timeout")))
                    for check in c.get("checks", [])],
        ) for name, c in contracts_doc.items()},
        notices=notices or [],
    )
