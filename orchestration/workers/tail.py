"""The end of a stream of lines, kept within a size: what is shown of output held in memory."""
from __future__ import annotations

from collections import deque


class Tail:
    """The last lines given to `add`, at most `limit` characters in all (counting a newline
    after each); one longer line is kept as its last `limit` characters. `cut` says whether
    anything was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cut = False
        self._lines: deque[str] = deque()
        self._size = 0

    def add(self, line: str) -> None:
        """Keep `line` (without its newline), dropping the oldest lines beyond the limit."""
        if len(line) > self.limit:
            line, self.cut = line[-self.limit:], True
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self.limit and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1
            self.cut = True

    def lines(self) -> list[str]:
        """The lines kept, oldest first."""
        return list(self._lines)

    def text(self) -> str:
        """The lines kept, joined with newlines."""
        return "\n".join(self._lines)
