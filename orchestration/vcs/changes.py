"""Capture what a task changed: commit its worktree (untracked files included) and read the diff
from where it started: per-file status, line counts, binary files, and the patch itself."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestration.vcs.git import GitError, git

STATUS = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "C": "copied", "T": "type changed"}


@dataclass
class Captured:
    """A task's change: head commit, files (see models.TaskChange.files), the patch (cut to
    `limit` characters: truncated) and line totals."""

    head_commit: str
    files: list[dict] = field(default_factory=list)
    patch: str = ""
    truncated: bool = False
    lines_added: int = 0
    lines_deleted: int = 0


async def commit_worktree(workdir: Path, branch: str, message: str) -> str:
    """Commit everything in the worktree (new, changed, deleted; .gitignore respected) on
    `branch` unless nothing changed. Returns the head commit.

    A task that switched branch or detached HEAD has its work brought back: `branch` is moved to
    where HEAD is, keeping the working tree; when HEAD is a commit only the task's own object
    store has (a sandboxed task's, see workers.sandbox), its files are committed on `branch`. Raises GitError when the worktree is no longer one
    (its .git removed or replaced) or git cannot commit, so the task is not taken as done."""
    top = (await git(["rev-parse", "--show-toplevel"], workdir, ok_codes=(0, 128))).out.strip()
    if not top or Path(top).resolve() != workdir.resolve():
        raise GitError(f"the task's worktree {workdir} is no longer a git worktree (was its .git file removed or "
                       "replaced?); its changes cannot be committed")
    head_ref = (await git(["symbolic-ref", "-q", "HEAD"], workdir, ok_codes=(0, 1))).out.strip()
    if head_ref != f"refs/heads/{branch}":
        if (await git(["cat-file", "-e", "HEAD^{commit}"], workdir, ok_codes=(0, 1, 128))).code == 0:
            await git(["checkout", "-q", "-B", branch], workdir)  # its commits are kept
        else:  # commits of a sandboxed task live in its own object store: its files are its work
            await git(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], workdir)
    # The index anew from the branch and the files: a sandboxed task's index may name objects
    # only its own store has (Magic Box hashes every file it commits itself).
    await git(["reset", "-q"], workdir, ok_codes=(0, 1))
    status = (await git(["status", "--porcelain=v1", "-z", "--ignore-submodules=all", "--untracked-files=all"], workdir)).out
    if status.strip("\0"):
        await git(["add", "--all", "--", "."], workdir)
        await git(["commit", "--quiet", "--no-verify", "-m", message], workdir)
    return (await git(["rev-parse", "HEAD"], workdir)).out.strip()


def _name_status(raw: str) -> list[dict]:
    """Parse `git diff --name-status -z -M`: "M\\0path\\0" or "R087\\0old\\0new\\0" entries."""
    fields, entries, i = raw.split("\0"), [], 0
    while i < len(fields) and fields[i]:
        code = fields[i]
        if code[0] in "RC":
            entries.append({"status": STATUS[code[0]], "old_path": fields[i + 1], "path": fields[i + 2]})
            i += 3
        else:
            entries.append({"status": STATUS.get(code[0], "modified"), "old_path": "", "path": fields[i + 1]})
            i += 2
    return entries


def _numstat(raw: str) -> dict[str, tuple[int | None, int | None]]:
    """Parse `git diff --numstat -z -M` into {new path: (added, deleted)}; None, None for binary."""
    counts, fields, i = {}, raw.split("\0"), 0
    while i < len(fields) and fields[i]:
        added, deleted, path = fields[i].split("\t", 2)
        if path == "":  # a rename: the old and new paths follow
            path = fields[i + 2]
            i += 3
        else:
            i += 1
        counts[path] = (None, None) if added == "-" else (int(added), int(deleted))
    return counts


def _split_patch(patch: str) -> list[tuple[int, int]]:
    """Character ranges of each file's section of a patch (each starts with "diff --git ")."""
    starts = [0] if patch.startswith("diff --git ") else []
    position = patch.find("\ndiff --git ")
    while position != -1:
        starts.append(position + 1)
        position = patch.find("\ndiff --git ", position + 1)
    return [(start, starts[n + 1] if n + 1 < len(starts) else len(patch)) for n, start in enumerate(starts)]


def _section_paths(patch: str, start: int, end: int) -> set[str]:
    """The paths a patch section names (its ---/+++ lines, rename/copy lines), quotes removed."""
    paths = set()
    for line in patch[start:min(end, start + 4000)].split("\n")[1:]:
        if line.startswith(("@@", "GIT binary patch")):
            break
        for prefix in ("--- a/", "+++ b/", "rename from ", "rename to ", "copy from ", "copy to "):
            if line.startswith(prefix):
                paths.add(line[len(prefix):].strip('"'))
    if not paths:  # a mode or type change only: the header's b/ path
        header = patch[start:patch.find("\n", start)]
        if " b/" in header:
            paths.add(header.rsplit(" b/", 1)[1].strip('"'))
    return paths


def _ranges_by_path(patch: str, entries: list[dict]) -> dict[str, tuple[int, int]]:
    """{path: (start, end)} of each entry's part of the patch; a file with several sections (a
    symlink replaced by a file) gets the span of them all."""
    sections = _split_patch(patch)
    if len(sections) == len(entries):
        return {e["path"]: r for e, r in zip(entries, sections)}
    ranges: dict[str, tuple[int, int]] = {}
    for start, end in sections:
        for entry in entries:
            if entry["path"] in _section_paths(patch, start, end):
                old = ranges.get(entry["path"])
                ranges[entry["path"]] = (min(start, old[0]), max(end, old[1])) if old else (start, end)
    return ranges


async def diff(workdir: Path, start: str, head: str, limit: int) -> Captured:
    """The change from `start` to `head` (renames found, binary files noted)."""
    captured = Captured(head_commit=head)
    if start == head:
        return captured
    entries = _name_status((await git(["diff", "--name-status", "-z", "-M", start, head], workdir)).out)
    counts = _numstat((await git(["diff", "--numstat", "-z", "-M", start, head], workdir)).out)
    # --binary: the patch applies with `git apply`, binary files included.
    patch = (await git(["diff", "-M", "--binary", "--no-color", "--no-ext-diff", start, head], workdir)).out
    ranges = _ranges_by_path(patch, entries)
    if len(patch) > limit:
        patch, captured.truncated = patch[:limit], True
    for entry in entries:
        added, deleted = counts.get(entry["path"], (None, None))
        start_at, end_at = ranges.get(entry["path"], (None, None))
        if end_at is not None and end_at > len(patch):
            start_at = end_at = None  # cut off by the limit
        captured.files.append({**entry, "added": added, "deleted": deleted, "binary": added is None,
                               "start": start_at, "end": end_at})
        captured.lines_added += added or 0
        captured.lines_deleted += deleted or 0
    captured.patch = patch
    return captured


async def merge_conflicts(repository: Path, head: str, other: str) -> list[str] | None:
    """Paths that would conflict merging commits `head` and `other` (without a worktree: `git
    merge-tree --write-tree`, git 2.38+). [] when they merge cleanly; None when git is too old."""
    result = await git(["merge-tree", "--write-tree", "--name-only", "--no-messages", head, other], repository,
                       ok_codes=(0, 1, 129))
    if result.code == 129:
        return None
    if result.code == 0:
        return []
    return [line for line in result.out.splitlines()[1:] if line.strip()]
