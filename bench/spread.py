"""The one way every bench prints a measurement: "median (min–max)" of its repeats."""
from __future__ import annotations

import statistics


def spread(values: list[float], digits: int = 1) -> str:
    """'median (min–max)' of `values` (any unit, shown with `digits` decimals); '–' when empty."""
    if not values:
        return "–"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"
