"""Validation of contracts, their checks and the schemas they hold, tasks' output_schema, and
integration points."""
from __future__ import annotations

import jsonschema

from orchestration.plans.validation.findings import Findings
from orchestration.plans.validation.schemas import contract_schemas, endless, resolve_schema_ref, specifications, task_ref


def check(f: Findings) -> None:
    """Report contracts naming unknown tasks or phases, checks against no schema, invalid or
    endless schemas, output_schema naming none, and integration points between unknown tasks."""
    contracts = f.data.get("contracts") or {}
    known = specifications(contracts)
    for name, contract in contracts.items():
        for index, item in enumerate(contract.get("checks", [])):
            if "command" in item:
                f.check_command(["contracts", name, "checks", index, "command"], item["command"])
            if resolve_schema_ref(f"contracts.{name}.{item['against']}", known) is None:
                f.add(["contracts", name, "checks", index, "against"],
                      f"'{item['against']}' names no schema in this contract's specification (e.g. request, response.success).")
        if "phase" in contract and contract["phase"] not in f.phases:
            f.add(["contracts", name, "phase"], f"no task is in phase '{contract['phase']}'. "
                                                f"Phases of this plan: {', '.join(f.phases) or 'none'}.")
        for role in ("provider", "consumer"):
            if role in contract and (ref := task_ref(contract[role])) not in f.first_seen:
                f.add(["contracts", name, role], f"{f.unknown(ref)} Write the task id first, e.g. \"{f.ids[0]} (note)\".")
        for pointer_parts, schema in contract_schemas(contract.get("specification") or {}):
            _check_specification_schema(f, ["contracts", name, "specification"], pointer_parts, schema)
    for index, task in enumerate(f.tasks):
        _check_output_schema(f, f.path(index, "output_schema"), task.get("output_schema"), known)
    for index, point in enumerate(f.data["parallel_execution"].get("integration_points", [])):
        for member_index, member in enumerate(point["between"]):
            if member not in f.first_seen:
                f.add(["parallel_execution", "integration_points", index, "between", member_index], f.unknown(member))


def _check_output_schema(f: Findings, path: list, schema, known: dict) -> None:
    if isinstance(schema, str):
        if resolve_schema_ref(schema, known) is None:
            f.add(path, f"{schema} names no schema: write contracts.<contract>.<part>, e.g. contracts.auth_api.response.success.")
    elif isinstance(schema, dict):
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            pointer = "/" + "/".join(str(p) for p in error.path)
            f.add([*path, *error.path], f"not a valid JSON Schema at {pointer}: {error.message}")
        else:
            if not f.remote_refs(path, schema) and endless(schema):
                f.add(path, "the schema refers to itself ($ref) without end, so nothing can match it.")


def _check_specification_schema(f: Findings, base: list, pointer_parts: list, schema: dict) -> None:
    if f.remote_refs([*base, *pointer_parts], schema):
        return
    if endless(schema):
        f.add([*base, *pointer_parts], "this schema refers to itself ($ref) without end, so nothing can match it.")
        return
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        inner = [*pointer_parts, *error.path]
        hint = " Types are: string, number, integer, boolean, object, array, null." if inner and inner[-1] == "type" else ""
        pointer = "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in [*base, *inner])
        f.add([*base, *inner], f"not a valid JSON Schema at {pointer}: {error.message}.{hint}")
