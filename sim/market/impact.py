"""How far each liquidation's own trades displaced a book, and how much of that is still there.

A liquidation order that walks a thin book moves its mid; makers then re-quote and the book
recovers. Breach attribution needs to know, at every mark update, how much of the book's premium
over the index is still due to liquidations, and to which ones, so that it can compute the mark
the venue would have had without them.

The model (docs/METHODOLOGY.md, "Liquidation price impact"):

* When a liquidation order fills, its displacement is ``mid after - mid before`` (ticks) on that
  instrument's book -- the whole move its own fills caused, since nothing else trades inside one
  order's execution. When the order empties the side it hit, ``mid after`` is the last fill
  price (the book has no mid to read). Displacements of one liquidation add up.
* The displacement persists only while the book has not recovered: at each sample the total
  outstanding displacement ``D`` is compared with the book's current premium ``P = mid - index``
  (ticks). If ``P`` has the sign of ``D`` and ``|P| < |D|`` every liquidation's share is scaled
  down by ``|P| / |D|``; if ``P`` is zero or has the other sign, every share is gone. A recovered
  book never re-attributes later moves to old liquidations; a book pushed further the same way by
  someone else keeps the liquidations' share at what they did.

This is conservative towards "exogenous": a premium the liquidation opened but others kept open
is attributed to the liquidation only up to the displacement it caused itself.
"""

from __future__ import annotations

# below this many ticks a displacement is treated as gone (keeps the dictionaries small)
_NEGLIGIBLE_TICKS = 1e-9


class LiquidationImpact:
    """Outstanding displacement (ticks) per instrument and per liquidation id."""

    __slots__ = ("_by_instrument",)

    def __init__(self, n_instruments: int) -> None:
        self._by_instrument: list[dict[int, float]] = [{} for _ in range(n_instruments)]

    def record(self, instrument: int, liq_id: int, displacement_ticks: float) -> None:
        """A liquidation order of ``liq_id`` moved ``instrument``'s mid by ``displacement_ticks``."""
        if displacement_ticks == 0.0:
            return
        shares = self._by_instrument[instrument]
        shares[liq_id] = shares.get(liq_id, 0.0) + displacement_ticks

    def active(self, instrument: int) -> bool:
        return bool(self._by_instrument[instrument])

    def outstanding(self, instrument: int, premium_ticks: float | None) -> float:
        """The displacement still in ``instrument``'s book given its premium now (mid - index, ticks;
        None when the book has no mid: the shares are kept as they are). Applies the recovery rule
        (see the module docstring) and returns the total."""
        shares = self._by_instrument[instrument]
        if not shares:
            return 0.0
        total = sum(shares.values())
        if premium_ticks is None:
            return total
        if total == 0.0 or premium_ticks * total <= 0.0:
            shares.clear()
            return 0.0
        if abs(premium_ticks) < abs(total):
            factor = abs(premium_ticks) / abs(total)
            for liq_id in list(shares):
                kept = shares[liq_id] * factor
                if abs(kept) < _NEGLIGIBLE_TICKS:
                    del shares[liq_id]
                else:
                    shares[liq_id] = kept
            total = sum(shares.values())
        return total

    def shares(self, instrument: int) -> dict[int, float]:
        """Liquidation id -> outstanding displacement (ticks) on ``instrument`` (a copy)."""
        return dict(self._by_instrument[instrument])
