"""Plan revisions' specs, read from the database once per process: a revision never changes, so
a run's tasks cost the same whatever the plan's size (a PlanSpec computes its maps once too)."""
from __future__ import annotations

from orchestration.models import PlanRevision
from orchestration.plans.spec import PlanSpec

SPECS_KEPT = 32  # revisions whose spec stays in memory

_specs: dict[int, PlanSpec] = {}


def spec_of(revision_id: int) -> PlanSpec:
    """The spec of plan revision `revision_id`. Raises PlanRevision.DoesNotExist."""
    known = _specs.get(revision_id)
    if known is None:
        known = PlanRevision.objects.values_list("spec", flat=True).get(pk=revision_id)
        if len(_specs) >= SPECS_KEPT:
            _specs.pop(next(iter(_specs)))
        _specs[revision_id] = known
    return known
