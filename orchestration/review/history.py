"""The runs list: runs filtered and paged, each with its tasks' state counts and its cost.

A page costs the same few queries however many runs there are: the page of runs (with plan,
revision and starter joined), its count, one aggregate of task states and one of costs.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.utils import timezone

from orchestration.forms import RunFilterForm
from orchestration.live import state_segments
from orchestration.models import Run, TaskRun
from orchestration.review import cost

PAGE_RUNS = 50


def filtered(filters: dict) -> QuerySet:
    """Runs matching RunFilterForm.filters() output, newest first."""
    runs = Run.objects.select_related("plan", "started_by", "revision")
    if "state" in filters:
        runs = runs.filter(state=filters["state"])
    if "plan" in filters:
        runs = runs.filter(plan=filters["plan"])
    if "started_by" in filters:
        runs = runs.filter(started_by=filters["started_by"])
    if "q" in filters:
        runs = runs.filter(plan__name__icontains=filters["q"])
    zone = timezone.get_current_timezone()
    if "since" in filters:
        runs = runs.filter(created_at__gte=datetime.combine(filters["since"], time.min, zone))
    if "until" in filters:
        runs = runs.filter(created_at__lt=datetime.combine(filters["until"] + timedelta(days=1), time.min, zone))
    return runs.order_by("-created_at", "-id")


def runs_page(form: RunFilterForm, number: str | int | None) -> Page:
    """Page `number` (1 when missing or out of range: the last) of the runs the form's valid
    filters match, PAGE_RUNS a page; each run gets `segments` (state_segments of its task runs'
    states), `cost` (cost.Cost) and `previous_id` (the plan's run before it, for "compare with
    previous"; None for its first), each one query for the whole page."""
    page = Paginator(filtered(form.filters()), PAGE_RUNS).get_page(number)
    ids = [run.pk for run in page]
    # Looked up for the page's runs only: as an annotation of the whole list, PostgreSQL ran it
    # for every skipped row too (4 s for page 100 of 10,000 runs).
    previous = Run.objects.filter(plan=OuterRef("plan"), pk__lt=OuterRef("pk")).order_by("-pk").values("pk")[:1]
    previous_ids = dict(Run.objects.filter(pk__in=ids).order_by().annotate(previous_id=Subquery(previous))
                        .values_list("pk", "previous_id"))
    counts: dict[int, dict[str, int]] = {}
    for row in TaskRun.objects.filter(run_id__in=ids).order_by().values("run_id", "state").annotate(n=Count("id")):
        counts.setdefault(row["run_id"], {})[row["state"]] = row["n"]
    costs = cost.grouped(TaskRun.objects.filter(run_id__in=ids), "run_id") if ids else {}
    for run in page:
        run.segments = state_segments(counts.get(run.pk, {}))
        run.cost = costs.get(run.pk, cost.Cost())
        run.previous_id = previous_ids.get(run.pk)
    return page


def list_context(form: RunFilterForm, page: Page) -> dict:
    """Template context of the runs list and its live fragment: the form, the page, the filtered
    `plan` (or None), and `query`: the filters as a query string without the page number."""
    params = form.data.copy()
    params.pop("page", None)
    return {"form": form, "page": page, "plan": form.filters().get("plan"), "query": params.urlencode()}
