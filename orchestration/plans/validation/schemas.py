"""JSON Schemas inside a plan: those of contracts' specifications and tasks' output_schema."""
from __future__ import annotations

from typing import Any

from orchestration.plans import schema_refs

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


def endless(schema: dict[str, Any]) -> bool:
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


def specifications(contracts: dict[str, Any]) -> dict[str, Any]:
    """{name: specification} of a plan document's `contracts:` mapping."""
    return {name: ((c or {}).get("specification") or {}) if isinstance(c, dict) else {} for name, c in contracts.items()}


def task_ref(text: str) -> str:
    """"task_2 (backend)" -> "task_2": contracts name a task id, optionally followed by a note."""
    return text.strip().split()[0] if text and text.strip() else ""
