"""The prompt library: reusable worker prompts that tasks reference by `prompt_file` path.

Lookup order for a path: the library in the database (editable in the browser), then, for a
path prompts/<rest>, the file <rest> in the prompts directory (MAGICBOX_PROMPTS_DIR). Nothing
else is ever read: not a file outside that directory (symbolic links and '..' resolved), not the
data directory, not a .git directory. The same rule refuses such a prompt_file when a plan is
saved (check) and again when a task runs (resolve). The starter set (prompts/ in this repository)
is loaded into the library on start without overwriting edits.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from django.conf import settings

from orchestration.models import PromptTemplate


class BadPromptPath(ValueError):
    """A prompt path that is absolute, climbs out with '..', or is empty. The message says so."""


def clean_path(path: str) -> str:
    """Normalise a prompt path ("./prompts//a.md" -> "prompts/a.md"). Raises BadPromptPath."""
    text = path.strip().replace("\\", "/")
    pure = PurePosixPath(text)
    parts = [p for p in pure.parts if p not in ("", ".")]
    if (not parts or pure.is_absolute() or ".." in parts or re.match(r"^[A-Za-z]:", text)
            or any(ord(c) < 32 for c in text)):
        raise BadPromptPath(f"{path!r} is not a relative path inside the library (like prompts/workers/codex/backend-builder.md)")
    return str(PurePosixPath(*parts))


PREFIX = "prompts"  # the first part of a prompt_file read from the prompts directory


def _file(key: str) -> Path:
    """The file in the prompts directory that the library path `key` (from clean_path) names.

    Raises BadPromptPath when `key` is not prompts/<rest>, or <rest> leads (through a symbolic
    link or otherwise) out of the prompts directory, into the data directory or into a .git
    directory. The file need not exist.
    """
    parts = PurePosixPath(key).parts
    root = Path(os.path.realpath(settings.MAGICBOX_PROMPTS_DIR))
    if len(parts) < 2 or parts[0] != PREFIX:
        raise BadPromptPath(f"{key!r} is neither in the prompt library nor a prompts/… file: pick a prompt from the "
                            "library (Prompts page), or write one there under this path")
    file = Path(os.path.realpath(root.joinpath(*parts[1:])))
    data_dir = Path(os.path.realpath(settings.DATA_DIR))
    inside = root in file.parents
    if (not inside or file == data_dir or data_dir in file.parents or ".git" in parts
            or ".git" in file.relative_to(root).parts):
        raise BadPromptPath(f"{key!r} leads out of the prompts directory: a prompt_file is read only from the prompt "
                            "library or the files under prompts/ (never the data directory or .git); pick a prompt from "
                            "the library, or write one there under this path")
    return file


def check(path: str) -> None:
    """Refuse, when a plan is saved, a prompt_file that `resolve` would never read: raises
    BadPromptPath saying why and what to write instead. A library prompt, or a path inside the
    prompts directory (present or not yet), passes."""
    key = clean_path(path)
    try:
        _file(key)
    except BadPromptPath:
        if not PromptTemplate.objects.filter(path=key).exists():
            raise


def resolve(path: str) -> tuple[str, str]:
    """(prompt text, warning) for a task's prompt_file; ("", why) when it cannot be found or is
    refused (see _file: the same rule as `check`, applied again when the task runs)."""
    try:
        key = clean_path(path)
        stored = PromptTemplate.objects.filter(path=key).values_list("body", flat=True).first()
        if stored is not None:
            return stored, ""
        file = _file(key)
    except BadPromptPath as error:
        return "", f"prompt_file: {error}; running without it"
    if file.is_file():
        return file.read_text(errors="replace"), ""
    return "", f"prompt_file {key!r} is neither in the prompt library nor a file in the prompts directory; running without it"


def load_starter_prompts(root: Path | None = None) -> int:
    """Add the .md files under <root>/prompts to the library (existing paths are left as edited).

    Returns the number added. root defaults to the repository (settings.BASE_DIR).
    """
    root = Path(root or settings.BASE_DIR)
    added = 0
    for file in sorted((root / "prompts").rglob("*.md")):
        path = file.relative_to(root).as_posix()
        _, created = PromptTemplate.objects.get_or_create(path=path, defaults={"body": file.read_text(errors="replace")})
        added += created
    return added


def references(path: str) -> list[str]:
    """Names of the plans whose latest revision has a task with this prompt_file."""
    from orchestration.models import Plan

    names = []
    for plan in Plan.objects.prefetch_related("revisions"):
        revision = plan.latest_revision
        if revision and any(t.prompt_file and _same(t.prompt_file, path) for t in revision.spec.tasks):
            names.append(plan.name)
    return names


def _same(a: str, b: str) -> bool:
    try:
        return clean_path(a) == clean_path(b)
    except BadPromptPath:
        return False
