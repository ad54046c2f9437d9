"""Plan names made from other text (a goal, a file name): one line, printable, at most MAX_NAME."""
from __future__ import annotations

import unicodedata

MAX_NAME = 200  # characters of a plan name


def short_name(text: str, fallback: str = "Untitled plan") -> str:
    """`text`'s first line, control and format characters dropped and whitespace collapsed, cut at
    a word to at most MAX_NAME characters (ending with "…" when cut); `fallback` when nothing is left."""
    lines = "".join(c for c in text if c in "\n" or unicodedata.category(c) not in ("Cc", "Cf", "Cs")).strip().splitlines()
    line = " ".join(lines[0].split()) if lines else ""
    if not line:
        return fallback
    if len(line) <= MAX_NAME:
        return line
    cut = line[: MAX_NAME - 1]
    if " " in cut[MAX_NAME // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.-") + "…"
