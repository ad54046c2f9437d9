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
    return text_diff(spec_to_yaml(old.spec), spec_to_yaml(new.spec), context)


MAX_DIFF_INPUT = 400_000  # characters: difflib's time grows with the square of the lines


def text_diff(before: str, after: str, context: int = 3, max_lines: int = 5000) -> list[DiffLine]:
    """The lines of a unified diff between two texts ([] if equal), at most `max_lines` of them
    (then a last "context" line says how many were left out). Texts longer than MAX_DIFF_INPUT
    are not compared line by line: one line says how they differ in size."""
    if before == after:
        return []
    if len(before) + len(after) > MAX_DIFF_INPUT:
        return [DiffLine("hunk", f"@@ too large to compare here: {len(before):,} and {len(after):,} characters; "
                                 "download both runs' results to compare them @@")]
    lines = []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=context, lineterm=""):
        if line.startswith(("---", "+++")):
            continue
        kind = {"@": "hunk", "+": "add", "-": "remove"}.get(line[:1], "context")
        lines.append(DiffLine(kind, line))
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], DiffLine("context", f"… {len(lines) - max_lines} more lines of differences")]
    return lines
