"""Graph analysis of a plan's tasks: cycles, topological order, critical path and width."""
from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def find_cycle(upstream: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return one dependency cycle as task ids [a, b, ..., a], or None if the graph is a DAG.

    upstream maps each task id to the ids it depends on; ids not in the map are ignored.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(upstream, white)
    for start in upstream:
        if colour[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                colour[node] = grey
                path.append(node)
            deps = [d for d in upstream[node] if d in upstream]
            if index < len(deps):
                stack.append((node, index + 1))
                dep = deps[index]
                if colour[dep] == grey:
                    return [*path[path.index(dep):], dep]
                if colour[dep] == white:
                    stack.append((dep, 0))
            else:
                colour[node] = black
                path.pop()
    return None


def topological_order(upstream: Mapping[str, Sequence[str]]) -> list[str]:
    """Task ids with every task after its upstream tasks (Kahn's algorithm, linear time).

    Ties keep the mapping's order. Raises ValueError if the graph has a cycle.
    """
    position = {task: index for index, task in enumerate(upstream)}
    waiting = {task: len({d for d in deps if d in upstream}) for task, deps in upstream.items()}
    downstream: dict[str, list[str]] = {task: [] for task in upstream}
    for task, deps in upstream.items():
        for dep in {d for d in deps if d in upstream}:
            downstream[dep].append(task)
    ready = [task for task, count in waiting.items() if count == 0]
    heapq.heapify(ready_heap := [(position[t], t) for t in ready])
    order: list[str] = []
    while ready_heap:
        _, task = heapq.heappop(ready_heap)
        order.append(task)
        for child in downstream[task]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready_heap, (position[child], child))
    if len(order) < len(upstream):
        raise ValueError(f"dependency cycle: {' → '.join(find_cycle(upstream) or [])}")
    return order


def critical_path(upstream: Mapping[str, Sequence[str]], duration: Mapping[str, float]) -> tuple[float, list[str]]:
    """The longest path through the DAG by summed duration (seconds, or 1 per task for a count).

    Returns (length, [task ids along it, first to last]). Raises ValueError on a cycle.
    """
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for task in topological_order(upstream):
        deps = [d for d in upstream[task] if d in upstream]
        best = max(deps, key=lambda d: finish[d], default=None)
        finish[task] = (finish[best] if best else 0.0) + duration.get(task, 0.0)
        via[task] = best
    if not finish:
        return 0.0, []
    end = max(finish, key=lambda t: finish[t])
    path = [end]
    while via[path[-1]]:
        path.append(via[path[-1]])  # type: ignore[arg-type]
    return finish[end], path[::-1]


def depths(upstream: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """task id -> its depth: the number of tasks on the longest chain of upstream tasks before it
    (0 for a task that waits for none). Raises ValueError on a cycle."""
    level: dict[str, int] = {}
    for task in topological_order(upstream):
        level[task] = 1 + max((level[d] for d in upstream[task] if d in upstream), default=-1)
    return level


def max_width(upstream: Mapping[str, Sequence[str]]) -> int:
    """The largest number of tasks at one depth (longest-path level); raises ValueError on a cycle."""
    counts: dict[int, int] = {}
    for value in depths(upstream).values():
        counts[value] = counts.get(value, 0) + 1
    return max(counts.values(), default=0)


def ancestors(upstream: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
    """task id -> every task it waits for, directly or through others. Raises ValueError on a cycle."""
    result: dict[str, set[str]] = {}
    for task in topological_order(upstream):
        found: set[str] = set()
        for dep in upstream[task]:
            if dep in result:
                found |= result[dep] | {dep}
        result[task] = found
    return result
