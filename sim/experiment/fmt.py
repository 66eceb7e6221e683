"""Human number formatting, one set of rules for CLI tables, HTML reports and plot axes.

Thousands separators, a sensible number of decimals for the size of the value, K/M/B/T where
space is short (plot axes, narrow columns), and an em dash for anything undefined (None, NaN,
infinity): never ``2.57934e+07`` or ``None`` on a user's screen.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DASH", "number", "compact", "percent", "cell", "axis", "signed"]

DASH = "—"
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def _undefined(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def number(value: Any, decimals: int | None = None) -> str:
    """``1234567.891`` -> ``1,234,568``; ``4716.814`` -> ``4,716.81``; ``0.000123456`` -> ``0.0001235``.

    ``decimals`` fixes the decimals; by default: none from 100,000 up, two from 1, four
    significant digits below 1 (so small ratios keep their information)."""
    if _undefined(value):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    value = float(value)
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e5:
        return f"{value:,.0f}"
    if a >= 1:
        return f"{value:,.2f}"
    digits = 3 - math.floor(math.log10(a))  # four significant digits
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def signed(value: Any, decimals: int | None = None) -> str:
    """``number`` with an explicit sign (+ for gains), for changes."""
    text = number(value, decimals)
    if text == DASH or text.startswith("-") or (not _undefined(value) and float(value) == 0):
        return text
    return "+" + text


def compact(value: Any, digits: int = 3) -> str:
    """``25793400`` -> ``25.8M``; ``-1500`` -> ``-1.5K``; below 1,000 as ``number`` (``digits``
    significant digits above)."""
    if _undefined(value):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = float(value)
    a = abs(v)
    for size, suffix in _SUFFIXES:
        if a >= size * (1 - 0.5 * 10 ** -digits):  # 999,999.9 shows as 1M, not 1,000K
            scaled = v / size
            text = f"{scaled:.{max(0, digits - 1 - math.floor(math.log10(abs(scaled))))}f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return text + suffix
    if isinstance(value, int) or v.is_integer():
        return f"{int(v):,}"
    return number(v)


def percent(value: Any, decimals: int = 1) -> str:
    """A fraction as a percentage: ``0.1234`` -> ``12.3%``."""
    if _undefined(value):
        return DASH
    return f"{100 * float(value):,.{decimals}f}%"


def cell(value: Any) -> str:
    """Any summary value for a table cell (numbers as ``number``, lists/dicts shortened)."""
    if _undefined(value):
        return DASH
    if isinstance(value, (bool, int, float)):
        return number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) if value else DASH
    if isinstance(value, dict):
        return ", ".join(f"{k}: {cell(v)}" for k, v in value.items()) if value else DASH
    return str(value)


def axis(ax: Any, which: str = "y") -> None:
    """Label a matplotlib axis in K/M/B (``which``: "x", "y" or "both")."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda v, _pos: compact(v))
    if which in ("y", "both"):
        ax.yaxis.set_major_formatter(formatter)
    if which in ("x", "both"):
        ax.xaxis.set_major_formatter(formatter)
