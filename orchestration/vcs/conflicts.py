"""What a failed merge left behind, for people: the conflicted files and their conflict hunks."""
from __future__ import annotations

from pathlib import Path

from orchestration.vcs.git import git

MAX_HUNKS = 10  # per file
MAX_HUNK_LINES = 60


def conflict_hunks(text: str) -> list[str]:
    """The regions between <<<<<<< and >>>>>>> markers of a conflicted file (at most MAX_HUNKS,
    each cut to MAX_HUNK_LINES lines)."""
    hunks, current = [], None
    for line in text.splitlines():
        if line.startswith("<<<<<<< "):
            current = [line]
        elif current is not None:
            current.append(line)
            if line.startswith(">>>>>>> "):
                if len(current) > MAX_HUNK_LINES:
                    current = [*current[:MAX_HUNK_LINES - 1], f"… ({len(current) - MAX_HUNK_LINES + 1} more lines)", current[-1]]
                hunks.append("\n".join(current))
                current = None
                if len(hunks) == MAX_HUNKS:
                    break
    return hunks


async def conflicted_files(worktree: Path) -> list[dict]:
    """[{"path", "hunks": [text]}] of the files a merge in progress in `worktree` left unmerged.

    A file with no markers (both sides added a binary or a symbolic link, or one deleted it) has
    hunks [] and a "reason" from git's status code.
    """
    status = (await git(["status", "--porcelain=v1", "-z", "--ignore-submodules=all"], worktree)).out.split("\0")
    kinds = {"DD": "both deleted", "AU": "added by us", "UD": "deleted by them", "UA": "added by them",
             "DU": "deleted by us", "AA": "both added", "UU": "both modified"}
    report = []
    for entry in status:
        code, path = entry[:2], entry[3:]
        if code not in kinds:
            continue
        file = worktree / path
        try:
            # Never through a link: a branch may hold one to a file of the server's.
            inside = not file.is_symlink() and worktree.resolve() in file.resolve().parents
            text = file.read_text(errors="replace") if inside and file.is_file() and file.stat().st_size < 5_000_000 else ""
        except OSError:
            text = ""
        report.append({"path": path, "reason": kinds[code], "hunks": conflict_hunks(text)})
    return report


def describe(files: list[dict]) -> str:
    """One line naming the conflicted files and how many conflict hunks each has."""
    return "; ".join(f"{f['path']} ({f['reason']}, {len(f['hunks'])} conflicting hunk{'s' if len(f['hunks']) != 1 else ''})"
                     for f in files) or "no file named (git reported a conflict)"
