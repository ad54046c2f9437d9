"""Readable differences between two plan revisions, as a unified diff of their exported YAML."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from orchestration.models import PlanRevision
from orchestration.plans.exporter import spec_to_yaml


@dataclass
class DiffLine:
    """One line of a unified diff. kind: "add", "remove", "context" or "hunk" (an @@ header)."""

    kind: str
    text: str


def revision_diff(old: PlanRevision, new: PlanRevision, context: int = 3) -> list[DiffLine]:
    """The lines of a unified diff from `old` to `new` (both exported to YAML); [] if equal."""
    before = spec_to_yaml(old.spec).splitlines()
    after = spec_to_yaml(new.spec).splitlines()
    lines = []
    for line in difflib.unified_diff(before, after, f"r{old.number}", f"r{new.number}", n=context, lineterm=""):
        if line.startswith(("---", "+++")):
            continue
        kind = {"@": "hunk", "+": "add", "-": "remove"}.get(line[:1], "context")
        lines.append(DiffLine(kind, line))
    return lines
