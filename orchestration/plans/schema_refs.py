"""JSON Schemas from plans never reach the network: their `$ref`s stay inside the schema.

jsonschema's default registry fetches a `$ref` it does not hold over HTTP, with no time limit,
in the web server and in the workers alike. Every validator Magic Box makes from a plan's
schema (validator) uses a registry whose retrieval refuses instead; and a plan whose schema
refers outside itself is refused when it is saved (remote_refs). No Django here: the schema
helper process (plans.output_schema) imports this module.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urldefrag, urljoin

import jsonschema
from referencing import Registry

REF_KEYWORDS = ("$ref", "$dynamicRef")
# Keywords whose values are data, not schemas: a "$ref" key inside them is no reference.
DATA_KEYWORDS = {"enum", "const", "default", "examples"}


class RemoteRef(LookupError):
    """Validation reached a `$ref` outside the schema, which is never fetched."""


def _refuse(uri: str):
    raise RemoteRef(f"{uri} is outside the schema, and Magic Box never fetches schemas over the network")


NO_FETCH = Registry(retrieve=_refuse)


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A draft 2020-12 validator of `schema` that never fetches: a `$ref` outside it raises
    jsonschema's referencing error (a RemoteRef inside) when validation reaches it. The
    meta-schemas of the JSON Schema drafts are held locally and resolve as usual."""
    return jsonschema.Draft202012Validator(schema, registry=NO_FETCH)


def remote_refs(schema: Any) -> list[tuple[list, str]]:
    """The `$ref` / `$dynamicRef`s of `schema` that point outside it: [(path of the keyword in
    the schema, e.g. ["properties", "user", "$ref"], the reference as written)].

    Inside means a fragment of the schema ("#/$defs/user", "#anchor") or a resource the schema
    itself defines with `$id` (references resolve against the `$id`s around them, as in
    validation). Anything else (http:, https:, file:, a relative name) is outside.
    """
    found: list[tuple[list, str]] = []
    defined: set[str] = set()
    refs: list[tuple[list, str, str]] = []

    def walk(node: Any, path: list, base: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$id"), str):
                base = urldefrag(urljoin(base, node["$id"])).url
                defined.add(base)
            for keyword in REF_KEYWORDS:
                if isinstance(node.get(keyword), str):
                    refs.append(([*path, keyword], node[keyword], base))
            for key, value in node.items():
                if key not in DATA_KEYWORDS:
                    walk(value, [*path, key], base)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, [*path, index], base)

    defined.add("")
    walk(schema, [], "")
    for path, ref, base in refs:
        if urldefrag(urljoin(base, ref)).url not in defined:
            found.append((path, ref))
    return found
