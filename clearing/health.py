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
    # plain ints: numpy compares and assigns an IntEnum through a slow generic path
    state = np.zeros(equity.shape, dtype=np.int8)
    state[equity < im] = _BELOW_IM
    state[equity < cancel] = _BELOW_CANCEL
    state[equity < mm] = _BELOW_MM
    state *= has_exposure
    state[equity < 0] = _BANKRUPT
    return state


_BELOW_IM, _BELOW_CANCEL, _BELOW_MM, _BANKRUPT = (int(h) for h in (Health.BELOW_IM, Health.BELOW_CANCEL,
                                                                   Health.BELOW_MM, Health.BANKRUPT))
