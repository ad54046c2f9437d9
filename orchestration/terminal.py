"""Terminal output made safe for a page: ANSI colours become HTML, everything else is neutralised.

Stored output keeps the bytes the worker wrote (as text); this module only renders it. SGR
sequences (colours, bold, …) are converted by the ansi2html library. Before that, every other
control sequence is removed — cursor movement and erase (CSI), window titles and hyperlinks
(OSC), other escapes, C0/C1 control characters except newline and tab — and a carriage return
inside a line overwrites it, as a terminal would (a progress bar shows its last state).
"""
from __future__ import annotations

import re

from ansi2html import Ansi2HTMLConverter
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_OSC = re.compile(r"\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?")  # ESC ] … BEL or ESC \ (titles, links), never past the line
_CSI = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])")  # ESC [ params intermediates final
_OTHER_ESCAPE = re.compile(r"\x1b[ -/]*[0-~]?")  # ESC 7, ESC (B, a lone ESC, …
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # all but \t \n (and \r, handled first)
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_SGR_MARK = "\ue000"  # a private-use character standing in for ESC while the others are removed


def _keep_sgr(match: re.Match) -> str:
    params, final = match.group(1), match.group(2)
    if final == "m" and re.fullmatch(r"[0-9;:]*", params):
        return f"{_SGR_MARK}[{params}m"
    return ""


def _last_overwrite(line: str) -> str:
    """What a terminal shows of a line with carriage returns: the last non-empty rewrite."""
    if "\r" not in line:
        return line
    parts = [part for part in line.split("\r") if part]
    return parts[-1] if parts else ""


def neutralise(text: str) -> str:
    """`text` with carriage returns applied and every control sequence but SGR removed.

    Returns plain text in which only "\\x1b[…m" sequences remain (for ansi2html).
    """
    if "\r" in text:
        text = "\n".join(_last_overwrite(line) for line in text.split("\n"))
    if "\x1b" in text:
        text = _OSC.sub("", text)
        text = _CSI.sub(_keep_sgr, text)
        text = _OTHER_ESCAPE.sub("", text)
    text = _CONTROL.sub("", text)
    return text.replace(_SGR_MARK, "\x1b")


def cut_outside_sequence(text: str, at: int) -> int:
    """Where to cut `text` (neutralised: see neutralise) at index `at` or before it, so that no
    SGR sequence is cut in two: `at`, or the start of the sequence that spans it (when that is
    not the start of `text`)."""
    escape = text.rfind("\x1b", 0, at)
    if escape > 0 and (sequence := _SGR.match(text, escape)) is not None and sequence.end() > at:
        return escape
    return at


def colours_at_end(text: str, keep: int = 32) -> str:
    """The SGR sequences of `text` (neutralised) still in effect at its end, "" when none: those
    after its last reset ("\\x1b[m", "\\x1b[0m" or "\\x1b[0;…m"), each kept once (its last
    time: a sequence sets the same attributes each time) and at most the last `keep` of them (so
    what is carried stays small). Rendering them before the text that follows colours it as a
    terminal would (a long line rendered in pieces)."""
    if "\x1b" not in text:
        return ""
    sequences = _SGR.findall(text)
    for index in range(len(sequences) - 1, -1, -1):
        params = sequences[index][2:-1]
        if params in ("", "0") or params.startswith(("0;", "0:")):
            sequences = sequences[index:]
            break
    last = list(dict.fromkeys(reversed(sequences)))[:keep]  # the last time of each, newest first
    return "".join(reversed(last))


def render(text: str) -> SafeString:
    """HTML for `text` inside a <pre>: escaped, coloured spans for SGR, nothing else active.

    Each call stands alone: colours left open at the end are closed (output is rendered a chunk
    of whole lines at a time).
    """
    clean = neutralise(text)
    if "\x1b" not in clean:
        return escape(clean)
    converter = Ansi2HTMLConverter(inline=True, dark_bg=True, escaped=True, linkify=False)
    return mark_safe(converter.convert(clean, full=False))  # ansi2html escapes the text itself


def plain(text: str) -> str:
    """`text` as a terminal would show it, without colours: every control sequence removed
    (for results, errors and evidence shown outside a log)."""
    return _SGR.sub("", neutralise(text))
