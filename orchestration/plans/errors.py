"""Errors a plan author can cause, each located by file, line, column and field."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanProblem:
    """One fault in a plan.

    field: the dotted path of the field ("parallel_execution.tasks[2].depends_on[0]"), or "" for
    the whole document. line / column: 1-based position in the source text, 0 when unknown.
    message: what is wrong and how to fix it. path: the same place as data, keys and indexes in
    the canonical document (("parallel_execution", "tasks", 2, "depends_on", 0)); () when unknown
    (the editor maps it to its form fields without parsing `field`).
    """

    field: str
    message: str
    line: int = 0
    column: int = 0
    path: tuple = ()

    def format(self, source: str) -> str:
        """Render as "source:line:column: field: message" (omitting unknown parts)."""
        where = source
        if self.line:
            where += f":{self.line}:{self.column}" if self.column else f":{self.line}"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


class PlanInvalid(Exception):
    """A plan was rejected. `problems` lists every fault found; nothing was stored.

    Text in the problems that UTF-8 cannot carry (a lone surrogate quoted from the plan) is
    written as its escape (\\ud800), so a report can always be shown, printed and stored.
    """

    def __init__(self, source: str, problems: list[PlanProblem]) -> None:
        self.source = _encodable(source)
        problems = [PlanProblem(_encodable(p.field), _encodable(p.message), p.line, p.column, tuple(p.path)) for p in problems]
        self.problems = sorted(problems, key=lambda p: (p.line or 10**9, p.column, p.field))
        super().__init__(self.report())

    def report(self) -> str:
        """All problems, one per line, sorted by position."""
        return "\n".join(p.format(self.source) for p in self.problems)


def _encodable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
