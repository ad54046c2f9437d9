"""Large plans made to measure: for the browser tests and the benchmarks (bench/editor.py, bench/dag_draw.py)."""
from __future__ import annotations

LAYER = 25  # tasks per layer


def layered_plan(size: int, phases: int = 0, contract: bool = False, name: str = "") -> dict:
    """A plan document (the canonical form, as imported) of `size` shell tasks in layers of 25:
    task i depends on up to 3 tasks of the layer before.

    phases > 0 puts the layers, in order, into that many phases (phase_1 … phase_N; fewer when
    there are fewer layers). contract adds a contract "handover" from the first task to the last.
    The tasks' ids are task_0000, task_0001, …; the name is `name` or "Large <size>".
    """
    layers = -(-size // LAYER)
    tasks = []
    for i in range(size):
        layer = i // LAYER
        upstream = sorted({(layer - 1) * LAYER + (i * k) % LAYER for k in (1, 7, 13)}) if layer else []
        task = {"id": f"task_{i:04d}", "worker": "shell", "description": f"Step {i} of the large plan",
                "command": ["python", "-c", f"print({i})"], "depends_on": [f"task_{u:04d}" for u in upstream]}
        if phases:
            task["phase"] = f"phase_{layer * min(phases, layers) // layers + 1}"
        tasks.append(task)
    document: dict = {"name": name or f"Large {size}", "parallel_execution": {"tasks": tasks}}
    if contract and size > 1:
        document["contracts"] = {"handover": {"provider": tasks[0]["id"], "consumer": tasks[-1]["id"]}}
    return document
