"""Collateral haircuts that follow the collateral's realised volatility and depeg.

A static haircut keeps USDE at 5% through a 35% depeg. CCPs (EMIR RTS 153/2013 Art. 41 and Annex
II: haircuts calibrated to cover the collateral's price moves over its liquidation period, at 99%
or more, including in stress) and crypto venues (collateral ratios cut as a coin's volatility or
peg deviation rises) set haircuts from the asset's own risk instead. Here, for each asset with a
``dynamic_haircut``, at every oracle publication -- before the clearing house re-values accounts,
so equity is always valued at the haircut of the prices it sees:

    haircut = clip(z(confidence) x sigma x sqrt(mpor_days / 365) + depeg, floor, cap)

* ``sigma``: realised vol of the published price, annualised, as an EWMA of squared log returns
  per second with a time-based decay (weight of an old observation halves every ``vol_halflife``
  seconds, so irregular publication times are handled): v <- a v + (1 - a) r^2 / dt, a =
  2^(-dt / halflife); sigma = sqrt(v x seconds per year). It starts at ``initial_vol`` (or the
  price path's starting vol).
* ``depeg = max(0, 1 - price / peg)`` for a pegged asset (else 0): the collateral is worth its
  price, and the haircut adds the deviation again because a depegged coin can keep falling and
  its market is one-sided -- the venue takes the deviation as extra risk, not only as value lost.
* ``floor`` is the asset's static ``haircut``; ``cap`` < 1.

The ledger's ``haircut_keep`` (1 - haircut per asset) is what every valuation reads, so updating
it is all a change takes; ``history`` keeps (time, haircuts) for inspection and tests.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from sim.core.instruments import SECONDS_PER_YEAR
from clearing.ledger import Ledger
from sim.market.market_config import DynamicHaircutConfig

__all__ = ["DynamicHaircuts", "haircut_of"]


def haircut_of(config: DynamicHaircutConfig, floor: float, sigma: float, price: float) -> float:
    """The haircut for realised vol ``sigma`` (annualised) and ``price`` (see the module doc)."""
    z = NormalDist().inv_cdf(config.confidence)
    depeg = max(0.0, 1.0 - price / config.peg) if config.peg is not None else 0.0
    raw = z * sigma * np.sqrt(config.mpor_days / 365.0) + depeg
    return float(min(max(raw, floor), config.cap))


class DynamicHaircuts:
    """Re-sets the ledger's haircuts of the configured assets from their published prices.

    ``assets``: asset index -> (config, floor, oracle column, starting vol). ``prices()`` returns
    the oracle's published index (one value per underlying column)."""

    def __init__(self, ledger: Ledger, assets: dict[int, tuple[DynamicHaircutConfig, float, int, float]],
                 index: np.ndarray, now: float) -> None:
        self.ledger = ledger
        self.assets = assets
        self._index = index  # the oracle's published index array (read, never written)
        self._last_price = {k: float(index[col]) for k, (_, _, col, _) in assets.items()}
        self._last_time = {k: now for k in assets}
        self._var = {k: (vol**2) / SECONDS_PER_YEAR for k, (_, _, _, vol) in assets.items()}
        self.history: list[tuple[float, dict[int, float]]] = []
        self.update(now)

    def sigma(self, asset: int) -> float:
        """Current realised vol of ``asset``, annualised."""
        return float(np.sqrt(self._var[asset] * SECONDS_PER_YEAR))

    def update(self, now: float) -> None:
        """Fold the newly published prices into the vols and re-set the haircuts."""
        ledger = self.ledger
        changed: dict[int, float] = {}
        for k, (cfg, floor, col, _) in self.assets.items():
            price = float(self._index[col])
            dt = now - self._last_time[k]
            if dt > 0 and price > 0 and self._last_price[k] > 0:
                r = np.log(price / self._last_price[k])
                decay = 2.0 ** (-dt / cfg.vol_halflife)
                self._var[k] = decay * self._var[k] + (1.0 - decay) * r * r / dt
                self._last_price[k], self._last_time[k] = price, now
            haircut = haircut_of(cfg, floor, self.sigma(k), price)
            changed[k] = haircut
            ledger.haircut_keep[k] = 1.0 - haircut
        ledger.sync_haircuts()
        self.history.append((now, changed))
