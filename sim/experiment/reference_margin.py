"""The margin rate of a fixed reference portfolio over time: procyclicality with positions held still.

The population's IM / gross notional moves both because the model's rate moves and because traders
change what they hold. CCPs measure procyclicality on a fixed portfolio instead: here
``outputs.reference_portfolio`` (symbol -> signed quote notional, converted once to fractional lots
at the first sample's marks and never changed) is margined at every recorder sample with the
regime's *stateless* requirements -- the same computation a pre-trade check makes, which reads the
regime's memory (the VaR buffer, remembered open interest) without advancing it, so tracking the
reference portfolio never changes the episode.

Its gross notional is |lots| x mark x tick value summed over instruments -- the definition the
population's ``margin_totals.gross`` uses for worst-case lots -- so IM / gross is comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sim.experiment.assembled import Episode

COLUMNS = ("time", "im", "mm", "gross")


class ReferenceMargin:
    """Samples the requirements of a fixed portfolio; ``table()`` gives them as columns (minor units)."""

    __slots__ = ("ep", "notional", "lots", "rows")

    def __init__(self, episode: "Episode") -> None:
        self.ep = episode
        symbols = [ins.symbol for ins in episode.table.instruments]
        notional = np.zeros(len(symbols))
        for symbol, value in episode.config.reference_notional().items():
            notional[symbols.index(symbol)] = value
        self.notional = notional  # quote units per instrument, signed
        self.lots: np.ndarray | None = None  # fixed at the first sample with every needed mark > 0
        self.rows: list[tuple[float, float, float, float]] = []

    def sample(self) -> None:
        ep = self.ep
        house = ep.house
        per_lot = ep.marks.ticks * ep.ledger.tick_value  # minor units per lot at the mark
        if self.lots is None:
            held = self.notional != 0
            if not (per_lot[held] > 0).all():
                return  # no mark yet: the portfolio cannot be sized
            self.lots = np.where(held, self.notional * house.scale / np.where(held, per_lot, 1.0), 0.0)
        req = house.requirements(self.lots[np.newaxis, :])  # stateless: the regime's memory is read only
        gross = float(np.abs(self.lots) @ per_lot)
        self.rows.append((ep.world.now, float(req.im[0]) * house.scale, float(req.mm[0]) * house.scale, gross))

    def table(self) -> dict[str, np.ndarray]:
        cols: list[Sequence[float]] = list(zip(*self.rows)) if self.rows else [[]] * len(COLUMNS)
        return {k: np.asarray(c, dtype=np.float64) for k, c in zip(COLUMNS, cols)}
