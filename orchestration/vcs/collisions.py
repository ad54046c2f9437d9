"""Collisions: tasks of one run, neither waiting for the other, that changed the same files —
the seed's "tasks that modify the same files", found from their captured changes."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from orchestration.plans.spec import PlanSpec

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@.*$", re.MULTILINE)


SHOWN_LINES = 12  # changed lines quoted per hunk


def hunk_ranges(file_patch: str) -> list[tuple[float, float, str]]:
    """(first, last, text) of the lines each hunk of one file's patch really changes, in the
    original file's numbering (context lines excluded; an insertion sits between two lines, at
    n - 0.5), text being the hunk's header and its first SHOWN_LINES changed lines."""
    ranges = []
    matches = list(HUNK.finditer(file_patch))
    for n, match in enumerate(matches):
        body_end = matches[n + 1].start() if n + 1 < len(matches) else len(file_patch)
        old_line = int(match.group(1))
        touched: list[float] = []
        shown = [match.group(0)]
        replacing = False  # "+" lines right after "-" lines replace them: no insertion point of their own
        for line in file_patch[match.end():body_end].split("\n")[1:]:
            if line.startswith("-"):
                touched.append(old_line)
                old_line += 1
                replacing = True
            elif line.startswith("+"):
                if not replacing:
                    touched.append(old_line - 0.5)
            elif line.startswith(" "):
                old_line += 1
                replacing = False
                continue
            else:
                continue  # "\ No newline at end of file"
            if len(shown) <= SHOWN_LINES:
                shown.append(line)
        if touched:
            ranges.append((min(touched), max(touched), "\n".join(shown)))
    return ranges


@dataclass
class SharedFile:
    """A file two tasks both changed; `overlapping`: (hunk of a, hunk of b) pairs touching the
    same original lines; `conflicts`: git could not merge the two branches in this file."""

    path: str
    overlapping: list[tuple[str, str]] = field(default_factory=list)
    conflicts: bool = False


@dataclass
class Collision:
    """Two unrelated tasks (a before b in plan order) and the files they both changed."""

    a: str
    b: str
    files: list[SharedFile]

    @property
    def conflicts(self) -> bool:
        return any(f.conflicts for f in self.files)


def find(spec: PlanSpec, changes: dict) -> list[Collision]:
    """Collisions among `changes` ({task id: models.TaskChange}) of a run of `spec`."""
    waits_for = spec.ancestors
    order = [t for t in spec.ids if t in changes]
    found = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if a in waits_for.get(b, set()) or b in waits_for.get(a, set()):
                continue  # one builds on the other: sharing files is the point
            conflicted = set(changes[a].merge_conflicts.get(b, [])) | set(changes[b].merge_conflicts.get(a, []))
            paths_a = {f["path"]: f for f in changes[a].files} | {f["old_path"]: f for f in changes[a].files if f.get("old_path")}
            shared = []
            for entry in changes[b].files:
                path = entry["path"] if entry["path"] in paths_a else entry.get("old_path") if entry.get("old_path") in paths_a else None
                if path is None:
                    continue
                ours = hunk_ranges(changes[a].file_patch(paths_a[path]["path"]))
                theirs = hunk_ranges(changes[b].file_patch(entry["path"]))
                overlapping = [(ha, hb) for sa, ea, ha in ours for sb, eb, hb in theirs if sa <= eb and sb <= ea]
                shared.append(SharedFile(path=path, overlapping=overlapping, conflicts=path in conflicted))
            if shared:
                found.append(Collision(a=a, b=b, files=sorted(shared, key=lambda f: f.path)))
    return found
