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
from pathlib import Path
from typing import Any

import yaml

from orchestration.plans import references, repositories, schema_refs
from orchestration.plans.names import short_name
from orchestration.plans.decomposition import DecompositionPlan, decomposition_problems, decomposition_warnings, is_decomposition
from orchestration.plans.errors import PlanInvalid, PlanProblem
from orchestration.plans.phased import PhasedPlan, is_phased, phase_problems
from orchestration.plans.spec import (Candidates, Choice, Contract, ContractCheck, Criterion, Gate, Input, IntegrationPoint, Loop, PlanSpec,
                                      Task, Workspace)
from orchestration.plans.validation import semantic_problems
from orchestration.plans.validation.constructs import candidate_workers
from orchestration.plans.validation.schemas import resolve_schema_ref, specifications, task_ref
from orchestration.plans.yaml_source import LocatedYaml, PlainDocument, TooLarge, yaml_error_problem

SCHEMA_PATH = Path(__file__).with_name("plan.schema.json")
MAX_PLAN_BYTES = 2 * 1024 * 1024


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
    except ValueError as error:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise PlanInvalid(source, [PlanProblem("", f"a number in the file is too long to read ({error}): no plan field needs "
                                                   "more than a few digits.")]) from None
    if doc.data is None:
        raise PlanInvalid(source, [PlanProblem("", "the file is empty: a plan needs a `parallel_execution:` mapping with `tasks:`", 1, 1)])
    return _validated(doc, source, base_dir, workers, any_repository)


def load_document(data: dict[str, Any], source: str = "plan", workers: list[str] | None = None,
                  any_repository: bool = False) -> PlanSpec:
    """Validate a plan document given as data (what the editor's form describes) exactly as
    load_plan validates a file, and return it as a PlanSpec. Problems carry their `path` in the
    document (no line: there is no text). Raises PlanInvalid."""
    if workers is None:
        from orchestration.workers.registry import worker_names

        workers = worker_names()
    return _validated(PlainDocument(data), source, None, workers, any_repository)


def _validated(doc: LocatedYaml | PlainDocument, source: str, base_dir: Path | None, workers: list[str],
               any_repository: bool) -> PlanSpec:
    """The checks of load_plan on a parsed document, in order: values a plan can hold, the
    seed's other forms rewritten, the schema, then each section (plans.validation)."""
    problems = doc.duplicate_keys()
    unstorable = _unstorable_values(doc)
    if unstorable:
        raise PlanInvalid(source, problems + unstorable)
    notices: list[PlanProblem] = []
    if is_phased(doc.data):
        phased = PhasedPlan(doc.data)
        problems += phase_problems(phased, doc.locate)
        doc.data, doc.translate = phased.data, phased.original_path
    elif is_decomposition(doc.data):
        decomposition = DecompositionPlan(doc.data)
        problems += decomposition_problems(decomposition, doc.locate)
        notices += decomposition_warnings(decomposition, doc.locate)
        doc.data, doc.translate = decomposition.data, decomposition.original_path
    schema_problems = _schema_problems(doc)
    problems += schema_problems
    # Unknown keys leave the structure intact, so the deeper checks can still run and report
    # everything in one go; any other schema fault would only make them fail confusingly.
    if all(p.message.startswith("unknown key") for p in schema_problems):
        found, warnings = semantic_problems(doc, workers, base_dir, any_repository)
        problems += found
        notices += warnings
    if problems:
        raise PlanInvalid(source, problems)
    return _normalise(doc.data, source, base_dir, notices)


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
                problems.append(PlanProblem(doc.field_name([*path, key]), f"unknown key '{key}'.{hint}", line, column, (*path, key)))
            continue
        if error.validator == "anyOf" and len(path) == 2 and path[0] == "contracts":
            message = "a contract names its `provider` and `consumer` tasks (or the `phase` whose tasks share it)"
        elif error.validator == "required":
            message = f"missing required key {error.message.split(' is a required')[0]}"
        elif error.validator == "pattern" and error.validator_value == "\\S":
            message = "must not be blank"
        elif error.validator == "pattern" and path and path[0] == "inputs":
            message = (f"{error.instance!r} is not a valid input name: start with a letter or '_', then letters, digits or '_' "
                       "(at most 64 characters), as {{ inputs.<name> }} is written")
        elif error.validator == "pattern" and path and path[-1] == "phase":
            message = f"{error.instance!r} is not a phase name: write phase_1, phase_2, …"
        elif error.validator == "pattern":
            message = f"{error.instance!r} is not a valid task id: use letters, digits, '_', '.' and '-' (at most 100 characters)"
        elif error.validator == "oneOf" and path and path[-1] in ONE_OF_HELP:
            message = ONE_OF_HELP[path[-1]] + _unknown_keys(error)
        elif error.validator == "oneOf" and path and path[-1] == "command":
            message = "command must be a non-empty string or a list of strings (an argv list) whose first item names a program"
        elif error.validator in ("minimum", "exclusiveMinimum", "maximum") and path and path[-1] in ("timeout", "retries", "max_rounds", "n"):
            limits = {"timeout": "more than 0 and at most 604800 seconds (7 days)", "retries": "from 0 to 10",
                      "max_rounds": "from 1 to 20 (reviews at most)", "n": "from 2 to 8 candidates"}
            message = f"{_shown_number(error.instance)} is out of range: {path[-1]} must be {limits[path[-1]]}"
        elif error.validator == "uniqueItems":
            message = "lists the same entry twice: remove the repeat"
        elif error.validator == "type":
            message = f"must be {_type_words(error.validator_value)}, not {_describe(error.instance)}"
        line, column = doc.locate(path, at_key=at_key)
        problems.append(PlanProblem(doc.field_name(path), message, line, column, tuple(path)))
    return problems


def _shown_number(value) -> str:
    """`value` (a number from a plan) as a message shows it: 3600, 1e+40, or "a number of N digits"."""
    try:
        return f"{value:g}"
    except (OverflowError, ValueError):
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits" if isinstance(value, int) else "that number"


ONE_OF_HELP = {
    "gate": "a gate is `{approve: true, message: …, timeout: seconds}` (a person approves) or `{command: …, message: …, "
            "timeout: seconds}` (a check must pass)",
    "choose": "choose is `person`, `{review: <task>}` or `{command: …, score: true|false, timeout: seconds}`",
    "candidates": "candidates is a list of 2 to 8 workers, e.g. [claude, codex, gemini], or `{worker: claude, n: 3}`",
}


def _unknown_keys(error) -> str:
    """", unknown key 'x'" for keys of a mapping that no branch of the oneOf `error` allows."""
    if not isinstance(error.instance, dict):
        return ""
    allowed = {k for branch in error.validator_value for k in branch.get("properties", {})}
    extra = sorted(str(k) for k in error.instance if k not in allowed)
    return f" (unknown key {', '.join(repr(k) for k in extra)})" if extra else ""


def _unstorable_values(doc: LocatedYaml) -> list[PlanProblem]:
    """Keys that are not strings, numbers that are not finite, text with NUL characters or lone
    surrogates, and values JSON cannot hold (YAML dates, binary, sets).

    A surrogate pair written as two escapes (YAML's "\\ud83d\\ude00") is made the character it
    stands for, in doc.data, as JSON reads it.
    """
    problems: list[PlanProblem] = []

    def add(path: list, message: str, at_key: bool = False) -> None:
        line, column = doc.locate(path, at_key=at_key)
        problems.append(PlanProblem(doc.field_name(path), message, line, column, tuple(path)))

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


def _argv(command: str | list[str]) -> list[str]:
    return references.split_command(command) if isinstance(command, str) else list(command)


def _criterion(criterion: str | dict[str, Any]) -> Criterion:
    """A completion criterion: text stays text; a mapping gets its command as argv."""
    if isinstance(criterion, str):
        return Criterion(name=criterion)
    return Criterion(name=criterion["name"], command=_argv(criterion["command"]) if criterion.get("command") else None,
                     review=criterion.get("review") or "", timeout=_whole_if_integral(criterion.get("timeout")))


def _choice(choose: str | dict[str, Any]) -> Choice:
    """`choose:` as written (person, {review}, {command, score, timeout}) as a Choice."""
    if choose == "person":
        return Choice(person=True)
    return Choice(review=choose.get("review", ""), command=_argv(choose["command"]) if "command" in choose else None,
                  score=bool(choose.get("score", False)), timeout=_whole_if_integral(choose.get("timeout")))


def _gate(gate: dict[str, Any]) -> Gate:
    """`gate:` as written ({approve: true, …} or {command, …}) as a Gate."""
    return Gate(approve=bool(gate.get("approve", False)), command=_argv(gate["command"]) if "command" in gate else None,
                message=gate.get("message", ""), timeout=_whole_if_integral(gate.get("timeout")))


def _whole_if_integral(value: float | int | None) -> float | int | None:
    """60.0 -> 60, so plans written either way are the same plan (and export as written)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _normalise(data: dict[str, Any], source: str, base_dir: Path | None, notices: list[PlanProblem] | None = None) -> PlanSpec:
    pe = data["parallel_execution"]
    contracts_doc = data.get("contracts") or {}
    tasks = []
    for task in pe["tasks"]:
        command = task.get("command")
        schema = task.get("output_schema")
        workers = candidate_workers(task["candidates"]) if "candidates" in task else []
        tasks.append(Task(
            id=task["id"], worker=task.get("worker") or workers[0],
            **{key: task.get(key, "") for key in ("description", "prompt", "prompt_file", "output_format", "integration", "phase")},
            depends_on=list(task.get("depends_on", [])),
            command=_argv(command) if command is not None else None,
            timeout=_whole_if_integral(task.get("timeout")),
            retries=task.get("retries", 0),
            network=task.get("network", True),
            output_schema=resolve_schema_ref(schema, specifications(contracts_doc)) if isinstance(schema, str) else schema,
            output_schema_ref=schema if isinstance(schema, str) else "",
            writes=list(task.get("writes", [])),
            resources=list(task.get("resources", [])),
            loop=Loop(fixes=list(task["loop"]["fixes"]), max_rounds=task["loop"].get("max_rounds", 3)) if "loop" in task else None,
            candidates=Candidates(workers=workers, choose=_choice(task["choose"])) if workers else None,
            gate=_gate(task["gate"]) if "gate" in task else None,
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
    stem = short_name(Path(source).stem)  # a file name (or an API's `source`) may hold anything
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
            provider=task_ref(c.get("provider", "")), consumer=task_ref(c.get("consumer", "")),
            provider_note=c.get("provider", ""), consumer_note=c.get("consumer", ""), phase=c.get("phase", ""),
            specification=c.get("specification", {}),
            checks=[ContractCheck(name=check.get("name") or f"{name}: {check['against']}", against=check["against"],
                                  command=_argv(check["command"]) if check.get("command") else None,
                                  outputs=check.get("outputs"), timeout=_whole_if_integral(check.get("timeout")))
                    for check in c.get("checks", [])],
        ) for name, c in contracts_doc.items()},
        notices=notices or [],
        inputs={name: Input(default=None if value.get("default") is None else _input_text(value["default"]),
                            description=value.get("description", ""), required=bool(value.get("required", False)))
                for name, value in (data.get("inputs") or {}).items()},
    )


def _input_text(value: str | int | float | bool) -> str:
    """An input's default as the text it fills in ("true", "3", "main")."""
    return str(value).lower() if isinstance(value, bool) else str(_whole_if_integral(value))
