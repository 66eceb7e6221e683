"""Human number formatting, one set of rules for CLI tables, HTML reports and plot axes.

Thousands separators, a sensible number of decimals for the size of the value, K/M/B/T where
space is short (plot axes, narrow columns), and an em dash for anything undefined (None, NaN,
infinity): never ``2.57934e+07`` or ``None`` on a user's screen.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DASH", "number", "compact", "percent", "cell", "axis", "signed", "significant", "short", "quantity",
           "difference", "counted"]

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


def significant(value: Any, sig: int = 3) -> str:
    """``sig`` significant digits in fixed notation with thousands separators, trailing zeros kept
    so figures side by side line up (``1.50``, ``0.0000200``, ``123,457``); ``≈0`` below 1e-8."""
    if _undefined(value):
        return DASH
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) < 1e-8:
        return "≈0"
    decimals = min(max(0, sig - 1 - math.floor(math.log10(abs(v)))), 10)
    rounded = round(v, decimals)
    if rounded and math.floor(math.log10(abs(rounded))) > math.floor(math.log10(abs(v))):
        # rounding carried into the next decade (0.99996 -> 1.000): one decimal fewer keeps ``sig``
        # digits, so 1.00 beside 1.00 rather than 1.000
        decimals = max(0, decimals - 1)
    return f"{v:,.{decimals}f}"


def short(value: Any) -> str:
    """Money and large counts in a table of figures compared side by side: three significant
    digits and a spaced K/M/B (``1.23 M``, ``2.50 B``); below 1,000 as ``significant``."""
    if _undefined(value):
        return DASH
    v = float(value)
    for size, suffix in _SUFFIXES[1:]:  # B, M, K: a comparison table has no trillions
        if abs(v) >= size:
            return significant(v / size) + " " + suffix
    return significant(v)


def quantity(value: Any, unit: str) -> str:
    """A metric in its unit (``sim.experiment.compare.Metric.unit``): ``money`` as ``short``, ``fraction`` as
    a percentage, ``count`` whole where it is whole, ``x`` a multiple; anything else ``significant``.
    A negative value takes the typographic minus (−), as its difference does."""
    if _undefined(value):
        return DASH
    v = float(value)
    if v < 0:
        return "−" + quantity(-v, unit)  # the typographic minus, as ``difference`` writes it
    if unit == "money":
        return short(v)
    if unit == "fraction":
        return significant(v * 100.0) + " %"
    if unit == "count":
        return f"{int(round(v)):,}" if v.is_integer() else significant(v)
    if unit == "x":
        return significant(v) + "×"
    return significant(v)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` things with the noun agreeing: ``1 instrument``, ``2 instruments``, ``1,000 runs``
    (``plural``: an irregular plural; default the noun + s)."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


def difference(value: Any, unit: str) -> str:
    """A change as ``quantity`` with its sign (+, or the typographic minus −)."""
    if _undefined(value):
        return DASH
    v = float(value)
    return ("+" if v > 0 else "") + quantity(v, unit)  # quantity writes a negative's minus


def axis(ax: Any, which: str = "y", fmt: Any = compact, nbins: int | None = None) -> None:
    """Label a matplotlib axis in K/M/B (``which``: "x", "y" or "both"); ``fmt`` formats one tick
    value (default ``compact``); ``nbins`` caps the number of ticks (long labels on an x axis)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    formatter = FuncFormatter(lambda v, _pos: fmt(v))
    axes = ([ax.yaxis] if which in ("y", "both") else []) + ([ax.xaxis] if which in ("x", "both") else [])
    for a in axes:
        a.set_major_formatter(formatter)
        if nbins is not None:
            a.set_major_locator(MaxNLocator(nbins=nbins))
