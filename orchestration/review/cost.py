"""Tokens and cost of task runs, runs and plans: as the CLI reported them (claude gives a cost),
or estimated from tokens at MAGICBOX_TOKEN_PRICES (codex and gemini report tokens only)."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass
class Cost:
    """usd: dollars (None when neither a cost nor tokens with a price are known); estimated:
    some of it was computed from tokens; tokens in and out (0 when unknown)."""

    usd: float | None = None
    estimated: bool = False
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Cost) -> Cost:
        usd = None if self.usd is None and other.usd is None else (self.usd or 0) + (other.usd or 0)
        return Cost(usd, self.estimated or other.estimated, self.input_tokens + other.input_tokens,
                    self.output_tokens + other.output_tokens)


def task_cost(worker: str, cost_usd: float | None, input_tokens: int | None, output_tokens: int | None) -> Cost:
    """The cost of one task run: the reported one, else tokens x the worker's price per million."""
    cost = Cost(cost_usd, False, input_tokens or 0, output_tokens or 0)
    price = settings.MAGICBOX_TOKEN_PRICES.get(worker)
    if cost_usd is None and price and (input_tokens or output_tokens):
        cost.usd = ((input_tokens or 0) * price["input"] + (output_tokens or 0) * price["output"]) / 1_000_000
        cost.estimated = True
    return cost


def total(rows) -> Cost:
    """The sum over task runs (objects or dicts with worker, cost_usd, input_tokens, output_tokens)."""
    result = Cost()
    for row in rows:
        get = row.get if isinstance(row, dict) else (lambda k, r=row: getattr(r, k))
        result = result.add(task_cost(get("worker"), get("cost_usd"), get("input_tokens"), get("output_tokens")))
    return result


def grouped(task_runs, key: str | None = None) -> dict:
    """{value of `key` (a TaskRun field such as "run_id"; None when not given): Cost} summed over
    the queryset `task_runs` in the database: one aggregate query, however many rows it covers.

    Gives the same sums as `total` over the same rows (estimates are linear in tokens).
    """
    from django.db.models import Count, Q, Sum

    unreported = Q(cost_usd__isnull=True)
    fields = [key, "worker"] if key else ["worker"]
    rows = task_runs.order_by().values(*fields).annotate(
        reported=Sum("cost_usd"), reported_n=Count("cost_usd"),
        tokens_in=Sum("input_tokens"), tokens_out=Sum("output_tokens"),
        unreported_in=Sum("input_tokens", filter=unreported), unreported_out=Sum("output_tokens", filter=unreported),
        estimable_n=Count("id", filter=unreported & (Q(input_tokens__gt=0) | Q(output_tokens__gt=0))))
    result: dict = {}
    for row in rows:
        part = Cost(row["reported"] if row["reported_n"] else None, False, row["tokens_in"] or 0, row["tokens_out"] or 0)
        price = settings.MAGICBOX_TOKEN_PRICES.get(row["worker"])
        if price and row["estimable_n"]:
            estimate = ((row["unreported_in"] or 0) * price["input"] + (row["unreported_out"] or 0) * price["output"]) / 1_000_000
            part = part.add(Cost(estimate, True))
        group = row[key] if key else None
        result[group] = result.get(group, Cost()).add(part)
    return result


def plan_total(plan) -> Cost:
    """The sum over every run of a plan (one aggregate query, grouped by worker)."""
    from orchestration.models import TaskRun

    return grouped(TaskRun.objects.filter(run__plan=plan)).get(None, Cost())


@dataclass
class Estimate:
    """What one more attempt of a task may cost, from its earlier attempts in the plan's runs:
    attempts: how many had a known cost; usd: their average in dollars (None when attempts is 0);
    spent: their sum in dollars (0.0 when attempts is 0); estimated: some were computed from tokens."""

    attempts: int = 0
    usd: float | None = None
    spent: float = 0.0
    estimated: bool = False


def estimates(plan, task_ids) -> dict[str, Estimate]:
    """{task id: Estimate} for each of task_ids, from every earlier task run of that id in any
    run of `plan` (one query). Task runs a re-run copied ("kept from run #N") are not counted
    again; neither are ones whose cost is unknown."""
    from orchestration.models import KEPT_FROM, TaskRun

    found = {task_id: Estimate() for task_id in task_ids}
    rows = (TaskRun.objects.filter(run__plan=plan, task_id__in=list(found)).exclude(state_reason__startswith=KEPT_FROM)
            .values("task_id", "worker", "cost_usd", "input_tokens", "output_tokens"))
    for row in rows:
        cost = task_cost(row["worker"], row["cost_usd"], row["input_tokens"], row["output_tokens"])
        if cost.usd is None:
            continue
        estimate = found[row["task_id"]]
        estimate.attempts += 1
        estimate.spent += cost.usd
        estimate.estimated |= cost.estimated
        estimate.usd = estimate.spent / estimate.attempts
    return found
