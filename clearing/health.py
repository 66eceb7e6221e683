"""Account health states and their vectorised classification.

healthy -> below IM (only risk-reducing orders accepted) -> below the cancel level (open orders
cancelled) -> below MM (liquidation) -> equity below zero (bankrupt). The cancel level sits
between MM and IM: ``MM + cancel_level x (IM - MM)``.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Health(IntEnum):
    HEALTHY = 0
    BELOW_IM = 1
    BELOW_CANCEL = 2
    BELOW_MM = 3
    BANKRUPT = 4


def cancel_threshold(im: np.ndarray, mm: np.ndarray, cancel_level: float) -> np.ndarray:
    """The equity below which open orders are cancelled: ``MM + cancel_level x (IM - MM)``."""
    return mm + cancel_level * (im - mm)


def classify(equity: np.ndarray, im: np.ndarray, mm: np.ndarray, cancel: np.ndarray,
             has_exposure: np.ndarray) -> np.ndarray:
    """Health of every account (int8) against IM, the cancel threshold (``cancel_threshold``) and
    MM. Accounts with no positions and no orders are healthy unless their equity is negative (a
    deficit still waiting for absorption is bankrupt)."""
    # MM <= cancel level <= IM (MM never exceeds IM under any regime: tested), so an account's
    # state is how many of the three it is below
    state = (equity < im).view(np.int8)
    state += equity < cancel
    state += equity < mm
    state *= has_exposure
    state[equity < 0] = _BANKRUPT  # a plain int: numpy assigns an IntEnum through a slow path
    return state


_BANKRUPT = int(Health.BANKRUPT)
