"""Number formatting shared by the HTML page, the Markdown summary and the terminal tables."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["fmt", "fmt_mb", "fmt_ms", "fmt_params", "fmt_pct", "fmt_quality", "is_missing"]


def is_missing(value: Any) -> bool:
    """True for None and NaN (a figure the run did not record)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_ms(value: Any) -> str:
    """Milliseconds with two decimals: ``9.42 ms``."""
    return "—" if is_missing(value) else f"{float(value):.2f} ms"


def fmt_mb(value: Any) -> str:
    """Megabytes with two decimals: ``4.87 MB``."""
    return "—" if is_missing(value) else f"{float(value):.2f} MB"


def fmt_quality(value: Any) -> str:
    """The aggregate quality score (0-100) with two decimals."""
    return "—" if is_missing(value) else f"{float(value):.2f}"


def fmt_params(value: Any) -> str:
    """A parameter count in millions: ``2.31 M``."""
    return "—" if is_missing(value) else f"{float(value) / 1e6:.2f} M"


def fmt_pct(value: Any) -> str:
    """A percentage with one decimal."""
    return "—" if is_missing(value) else f"{float(value):.1f}%"


def fmt(value: Any) -> str:
    """Any cell value: floats to four significant digits, bools as yes/no, None/NaN as a dash."""
    if hasattr(value, "item"):
        value = value.item()
    if is_missing(value):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def fmt_interval(lo: Any, hi: Any) -> str:
    """A latency interval as ``1.20-1.85 ms``; ``-`` when either end is missing."""
    if lo is None or hi is None:
        return "-"
    return f"{lo:.2f}-{hi:.2f} ms"


def fmt_chance(p: Any) -> str:
    """A probability as a percentage, with the interval's ends shown as bounds (``>=95%``, ``<=5%``)."""
    if p is None:
        return "-"
    if p >= 0.95:
        return ">=95%"
    if p <= 0.05:
        return "<=5%"
    return f"{100 * p:.0f}%"
