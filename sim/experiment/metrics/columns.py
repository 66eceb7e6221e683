"""Reading the recorded tables for the metrics: columns, ratios, distributions, and the rounding
that makes every summary byte-identical in any process."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.core.orders import FillFlag

if TYPE_CHECKING:
    from numpy.typing import DTypeLike


SIGNIFICANT_DIGITS = 10


POLICIES = ("book", "backstop", "auction", "takeover", "adl")


OUTCOMES = ("restored_by_cancel", "restored", "closed", "bankrupt", "open")


CAUSES = ("oracle", "liquidation", "loss_allocation", "interval")


ADL_FLAG = int(FillFlag.ADL)


# transfers that happen off the book at discounts or bankruptcy prices (not market prices)
OFF_BOOK_FLAGS = int(FillFlag.ADL | FillFlag.BACKSTOP | FillFlag.AUCTION | FillFlag.EXTERNAL)


Tables = Mapping[str, Mapping[str, np.ndarray]]


# ------------------------------------------------------------------------------------ rounding
def rnd(x: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """A JSON-safe value: numpy scalars to Python, floats to ``digits`` significant digits,
    NaN/inf to None; containers recursively (dict keys become strings)."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            return None
        v = float(f"{v:.{digits}g}")
        return 0.0 if v == 0.0 else v  # no -0.0
    if isinstance(x, Mapping):
        return {str(k): rnd(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [rnd(v, digits) for v in x]
    raise TypeError(f"cannot put a {type(x).__name__} in a summary")


def column_of(tables: Tables, table: str, column: str, dtype: DTypeLike | None = None) -> np.ndarray:
    t = tables.get(table) or {}
    a = t.get(column)
    if a is None:
        return np.zeros(0, dtype=dtype or np.float64)
    a = np.asarray(a)
    return a.astype(dtype) if dtype is not None and a.dtype != dtype else a


def safe_ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den and math.isfinite(den) and math.isfinite(num) else None


def distribution(x: np.ndarray) -> dict[str, Any]:
    """count / mean / median / p95 / max of the finite values."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"count": 0, "mean": None, "median": None, "p95": None, "max": None}
    return {"count": int(x.size), "mean": float(x.mean()), "median": float(np.median(x)),
            "p95": float(np.quantile(x, 0.95)), "max": float(x.max())}
