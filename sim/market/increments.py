"""Log-price paths from their increments: the generators (``sim.market.paths``) draw increments and
the shocks (``sim.market.shocks``) rewrite them; both re-accumulate them here."""

from __future__ import annotations

import numpy as np


def cum_log(x0: np.ndarray, inc: np.ndarray) -> np.ndarray:
    """Log prices (N+1, U) from the starting log prices ``x0`` (U,) and increments ``inc`` (N, U)."""
    out = np.empty((inc.shape[0] + 1, inc.shape[1]))
    out[0] = x0
    np.cumsum(inc, axis=0, out=out[1:])
    out[1:] += x0
    return out
