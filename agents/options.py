"""Option portfolios: sellers of option structures, and delta hedgers.

Option sellers open a short structure at ``start`` and hold it -- the short-gamma books whose
margin calls spike when a crash lifts implied vol and moves the forward:

* ``short_straddle``: short the call and the put struck nearest the forward;
* ``short_strangle``: short the call nearest F (1 + strangle_width) and the put nearest F (1 - w);
* ``iron_condor``: the short strangle plus long wings ``wing_width`` further out;
* ``covered_call``: long the linear contract (the same units of underlying) and short the call
  nearest F (1 + strangle_width).

Legs are GTC limit orders ``concession`` x mark on the far side of the mark (they cross a maker's
quote if it is that close, otherwise rest until someone takes them). Strikes come from the
group's instruments, from the nearest (or farthest) expiry still open.

Delta hedgers hold an option position (opened the same way, or given) and keep its net delta --
option lots x units x Black-76 delta (at the marks' forward and vol) + linear lots x units --
within +/- ``band`` units of underlying by trading the group's linear contract with an IOC
``max_slippage`` beyond the touch, back to zero or to the band's edge. One oracle listener per
group computes every option's delta once and every hedger's net delta as one matrix product.
"""

from __future__ import annotations

import math

import numpy as np

from sim.core.phases import Phase
from agents.base import Agent, AgentContext
from sim.core.instruments import InstrumentKind
from sim.market.pricing import black76_greeks
from sim.core.orders import BUY, SELL, TimeInForce
from agents.config import DeltaHedgerGroup, OptionSellerGroup
from agents.distributions import sample


def _options_of(ctx: AgentContext, instruments: list[int], expiry: str) -> list[int]:
    """The group's options that expire at the nearest (or farthest) expiry still open."""
    t = ctx.table
    now = ctx.world.now
    opts = [i for i in instruments if t.kind[i] == InstrumentKind.OPTION and t.expiry[i] > now]
    if not opts:
        return []
    expiries = sorted({float(t.expiry[i]) for i in opts})
    pick = expiries[0] if expiry == "nearest" else expiries[-1]
    return [i for i in opts if t.expiry[i] == pick]


def _nearest(ctx: AgentContext, options: list[int], call: bool, strike: float) -> int | None:
    t = ctx.table
    side = [i for i in options if bool(t.is_call[i]) == call]
    if not side:
        return None
    return min(side, key=lambda i: (abs(float(t.strike[i]) - strike), i))


def _forward(ctx: AgentContext, instrument: int) -> float:
    return float(ctx.marks.underlying_marks()[ctx.table.underlying_index[instrument]])


def _linear_of(ctx: AgentContext, instruments: list[int]) -> int | None:
    for i in instruments:
        if ctx.table.kind[i] != InstrumentKind.OPTION:
            return i
    return None


class _OptionBook(Agent):
    """What option sellers and hedgers share: the lots drawn per leg, and opening the structure's legs
    at ``cfg.start`` (subclasses say which structure)."""

    __slots__ = ("cfg", "instruments", "lots", "legs")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: OptionSellerGroup | DeltaHedgerGroup, instruments: list[int]) -> None:
        super().__init__(ctx, name, account, rng)
        self.cfg = cfg
        self.instruments = instruments
        self.lots = max(1, int(round(sample(cfg.lots, rng))))
        self.legs: list[tuple[int, int]] = []

    def structure(self) -> list[tuple[int, int]]:
        """(instrument, signed lots) of each leg, chosen from the group's instruments now."""
        raise NotImplementedError

    def open(self) -> None:
        if self.cfg.end is not None and self.now >= self.cfg.end:
            return
        self.legs = self.structure()
        self._send_legs(self.cfg.concession)

    def _send_legs(self, concession: float) -> None:
        for i, lots in self.legs:
            if lots == 0:
                continue
            mark = self.mark_ticks(i)
            if lots > 0:
                price = math.ceil(mark * (1.0 + concession))
                self.submit(i, BUY, max(1, price), lots)
            else:
                price = math.floor(mark * (1.0 - concession))
                self.submit(i, SELL, max(1, price), -lots)


class OptionSeller(_OptionBook):
    kind = "option_seller"
    __slots__ = ()
    cfg: OptionSellerGroup

    def start(self) -> None:
        self.ctx.world.call_later(self.cfg.start, self.open)

    def structure(self) -> list[tuple[int, int]]:
        """(instrument, signed lots) of each leg, chosen from the group's instruments now."""
        cfg, ctx = self.cfg, self.ctx
        options = _options_of(ctx, self.instruments, cfg.expiry)
        if not options:
            return []
        f = _forward(ctx, options[0])
        n = self.lots
        w, ww = cfg.strangle_width, cfg.wing_width
        legs: list[tuple[int, int]] = []

        def add(call: bool, strike: float, lots: int) -> None:
            i = _nearest(ctx, options, call, strike)
            if i is not None:
                legs.append((i, lots))

        if cfg.structure == "short_straddle":
            add(True, f, -n)
            add(False, f, -n)
        elif cfg.structure == "short_strangle":
            add(True, f * (1 + w), -n)
            add(False, f * (1 - w), -n)
        elif cfg.structure == "iron_condor":
            add(True, f * (1 + w), -n)
            add(False, f * (1 - w), -n)
            add(True, f * (1 + w + ww), n)
            add(False, f * (1 - w - ww), n)
        else:  # covered call
            add(True, f * (1 + w), -n)
            lin = _linear_of(ctx, self.instruments)
            if lin is not None and legs:
                units = ctx.table.contract_units
                legs.append((lin, max(1, int(round(n * units[legs[0][0]] / units[lin])))))
        # merge legs that landed on the same instrument (a strike grid coarser than the widths)
        merged: dict[int, int] = {}
        for i, lots in legs:
            merged[i] = merged.get(i, 0) + lots
        return [(i, lots) for i, lots in merged.items() if lots]


class HedgeMonitor:
    """Net deltas of every hedger of a group on each oracle publication (one listener per group)."""

    __slots__ = ("ctx", "agents", "accounts", "registered")

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.agents: list[DeltaHedger] = []
        self.accounts = np.zeros(0, dtype=np.int64)
        self.registered = False

    def join(self, agent: "DeltaHedger") -> None:
        self.agents.append(agent)
        self.accounts = np.append(self.accounts, agent.account)
        if not self.registered:
            self.ctx.oracle.listeners.add(self.on_publication, Phase.OBSERVE)
            self.registered = True

    def deltas_per_lot(self) -> np.ndarray:
        """Delta of one lot of every instrument, in units of its underlying (linear: its units)."""
        ctx = self.ctx
        t = ctx.table
        out = t.contract_units.astype(np.float64).copy()
        opt = np.flatnonzero(t.kind == InstrumentKind.OPTION)
        if opt.size:
            fwd = ctx.marks.underlying_marks()[t.underlying_index[opt]]
            g = black76_greeks(fwd, t.strike[opt], t.years_to_expiry(ctx.world.now)[opt], ctx.marks.vols[opt],
                               t.is_call[opt])
            out[opt] = np.asarray(g.delta) * t.contract_units[opt]
        return out

    def net_deltas(self) -> np.ndarray:
        """Each hedger's net delta (units of underlying) over everything it holds (one underlying)."""
        per_lot = self.deltas_per_lot()
        pos = self.ctx.ledger.position[self.accounts].astype(np.float64)
        return pos @ per_lot

    def on_publication(self, which: np.ndarray | None = None) -> None:
        if not self.agents:
            return
        net = self.net_deltas()
        for k, agent in enumerate(self.agents):
            if abs(net[k]) > agent.cfg.band:
                agent.rebalance(float(net[k]))


class DeltaHedger(_OptionBook):
    kind = "delta_hedger"
    __slots__ = ("hedge", "monitor", "rebalances")
    cfg: DeltaHedgerGroup

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator,
                 cfg: DeltaHedgerGroup, instruments: list[int], monitor: HedgeMonitor) -> None:
        hedge = _linear_of(ctx, instruments)
        if hedge is None:
            raise ValueError(f"{name}: a delta_hedger group needs a linear contract (perpetual or future) "
                             f"among its instruments to hedge with")
        super().__init__(ctx, name, account, rng, cfg, instruments)
        self.hedge = hedge
        self.monitor = monitor
        self.rebalances = 0

    def start(self) -> None:
        self.monitor.join(self)
        if self.cfg.open_options:
            self.ctx.world.call_later(self.cfg.start, self.open)

    def structure(self) -> list[tuple[int, int]]:
        cfg, ctx = self.cfg, self.ctx
        options = _options_of(ctx, self.instruments, cfg.expiry)
        if not options:
            return []
        k = _forward(ctx, options[0]) * cfg.moneyness
        sign = 1 if cfg.position.startswith("long") else -1
        legs = []
        if cfg.position.endswith("call") or cfg.position.endswith("straddle"):
            i = _nearest(ctx, options, True, k)
            if i is not None:
                legs.append((i, sign * self.lots))
        if cfg.position.endswith("put") or cfg.position.endswith("straddle"):
            i = _nearest(ctx, options, False, k)
            if i is not None:
                legs.append((i, sign * self.lots))
        return legs

    def net_delta(self) -> float:
        """This hedger's net delta now (units of underlying)."""
        per_lot = self.monitor.deltas_per_lot()
        return float(self.positions().astype(np.float64) @ per_lot)

    def rebalance(self, net: float) -> None:
        """Trade the linear contract to bring ``net`` back to zero (or to the band's edge)."""
        cfg = self.cfg
        if cfg.end is not None and self.now >= cfg.end:
            return
        target = 0.0 if cfg.hedge_to == "zero" else math.copysign(cfg.band, net)
        units = float(self.ctx.table.contract_units[self.hedge])
        lots = int(round((target - net) / units))
        if lots == 0:
            return
        side = BUY if lots > 0 else SELL
        i = self.hedge
        price = self.ioc_price(i, side, cfg.max_slippage)
        self.rebalances += 1
        self.submit(i, side, price, abs(lots), TimeInForce.IOC)
