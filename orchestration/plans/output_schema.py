"""Whether a structured result (a task's JSON answer, a check's JSON output) matches a JSON Schema.

A schema is the plan author's: its `pattern`s can backtrack for ever and `uniqueItems` over a
large array is quadratic, so the engine never calls `problems` on its own event loop: it runs
this module as a helper process (`python -m orchestration.plans.output_schema`) with a time
limit (engine.validation). The helper reads one JSON request a line, {"result": text,
"schema": {...}}, and answers each with one JSON line, the list of problems.
"""
from __future__ import annotations

import json
import os
import sys

from orchestration.plans import schema_refs
from orchestration.plans.references import parse_output

MAX_PROBLEMS = 10


def problems(result: str, schema: dict) -> list[str]:
    """Why `result` (JSON text, or a ```json block in it) does not match `schema`; [] if it does.

    Each problem names the JSON pointer of the fault: "/token: 'token' is a required property".
    At most MAX_PROBLEMS are listed. A `$ref` outside the schema is never fetched: it is a problem.
    """
    try:
        value = parse_output(result)
    except ValueError:
        return ["it is not JSON"]
    remote = schema_refs.remote_refs(schema)
    if remote:  # a plan stored before such schemas were refused when saved
        return [f"the schema's $ref {ref!r} points outside it, and Magic Box never fetches schemas over the network: "
                "copy what it refers to under $defs and refer to it as #/$defs/<name>" for _, ref in remote[:MAX_PROBLEMS]]
    validator = schema_refs.validator(schema)
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.path])[:MAX_PROBLEMS]
    except RecursionError:
        return ["the schema refers to itself ($ref) without end, so nothing can match it"]
    return [f"/{'/'.join(str(p) for p in error.path)}: {error.message}" for error in errors]


def die_with_parent() -> None:
    """Have the kernel kill this process when the worker process that started it dies (Linux's
    PR_SET_PDEATHSIG: delivered even while a backtracking pattern holds the interpreter), and
    exit at once if it has died already (MAGICBOX_PARENT_PID). Elsewhere only the latter."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = os.environ.get("MAGICBOX_PARENT_PID")
    if parent and int(parent) != os.getppid():
        sys.exit(0)


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Answer requests line by line until stdin ends (the helper process's main loop)."""
    for line in stdin:
        request = json.loads(line)
        try:
            answer = problems(request["result"], request["schema"])
        except Exception as error:  # noqa: BLE001 — a schema jsonschema cannot use is the author's fault
            answer = [f"the schema could not be applied: {type(error).__name__}: {error}"]
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


if __name__ == "__main__":
    die_with_parent()
    serve()
