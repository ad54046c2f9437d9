"""The prompt library: reusable worker prompts that tasks reference by `prompt_file` path.

Lookup order for a path: the library in the database (editable in the browser), then a file
under MAGICBOX_PROMPTS_DIR. The starter set (prompts/ in this repository) is loaded into the
library on start without overwriting edits.
"""
from __future__ import annotations

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


def resolve(path: str) -> tuple[str, str]:
    """(prompt text, warning) for a task's prompt_file; ("", why) when it cannot be found."""
    try:
        key = clean_path(path)
    except BadPromptPath as error:
        return "", f"prompt_file: {error}; running without it"
    stored = PromptTemplate.objects.filter(path=key).values_list("body", flat=True).first()
    if stored is not None:
        return stored, ""
    root = Path(settings.MAGICBOX_PROMPTS_DIR).resolve()
    file = (root / key).resolve()
    if root in file.parents and file.is_file():
        return file.read_text(errors="replace"), ""
    return "", f"prompt_file {key!r} is neither in the prompt library nor a file under {root}; running without it"


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
        if revision and any(t.get("prompt_file") and _same(t["prompt_file"], path) for t in revision.spec["tasks"]):
            names.append(plan.name)
    return names


def _same(a: str, b: str) -> bool:
    try:
        return clean_path(a) == clean_path(b)
    except BadPromptPath:
        return False
