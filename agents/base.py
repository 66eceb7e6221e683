"""What every trader agent shares: its account, its random stream, and public reads of the market.

Agents are simpy processes (or scheduled callbacks) that wake on their own schedule or on events,
read only public state -- books, the oracle's published index, marks, their own account -- and act
through the venue, whose messages carry latency. They never touch the ledger or another account.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from sim.core.instruments import InstrumentKind
from clearing.ledger import QUOTE
from sim.core.orders import BUY, SubmitResult, TimeInForce
from agents.distributions import NormalDist, Sampler, UniformDist

if TYPE_CHECKING:
    from agents.interfaces import AccountBook, IsolatedDesk, MarginDesk
    from sim.core.instruments import InstrumentTable
    from sim.core.kernel import World
    from sim.market.mark import MarkPricer
    from sim.market.oracle import Oracle
    from sim.market.venue import Venue


_OPTION = int(InstrumentKind.OPTION)  # the table's kinds are plain ints

# unit distributions for an agent's own ``Sampler``s: ``rng.uniform(0, 1, n)`` and ``rng.normal(0, 1, n)``
# are bit for bit ``rng.random(n)`` and ``rng.standard_normal(n)`` (the same values, the same stream use)
UNIT = UniformDist(dist="uniform", low=0.0, high=1.0)
STD_NORMAL = NormalDist(dist="normal", mean=0.0, std=1.0)


@dataclass(slots=True)
class AgentContext:
    """The handles an agent is built with: the market (read, and the venue to act through), its
    account book (read-only) and the clearing house as a margin desk (``agents.interfaces``)."""

    world: "World"
    venue: "Venue"
    ledger: "AccountBook"
    oracle: "Oracle"
    marks: "MarkPricer"
    desk: "MarginDesk"
    table: "InstrumentTable"
    isolated: "IsolatedDesk | None" = None  # isolated margin: each position in its own sub-account


def pick_instrument(instruments: list[int], rng: np.random.Generator) -> int:
    """One instrument per agent, uniformly from its group's list (no draw when there is one)."""
    if len(instruments) == 1:
        return instruments[0]
    return instruments[int(rng.integers(len(instruments)))]


def pick_instruments(instruments: list[int], rng: np.random.Generator, n: int) -> np.ndarray:
    """One instrument per member of a group agent, uniformly from the group's list, as one draw of
    ``n`` (no draw when there is one)."""
    picks = rng.integers(len(instruments), size=n) if len(instruments) > 1 else np.zeros(n, dtype=np.int64)
    return np.asarray(instruments, dtype=np.int64)[picks]


class Arrivals:
    """Waiting times of a Poisson process (or a fixed period), drawn from an agent's stream in blocks.

    ``next()`` is a list read; a block of ``block`` exponential gaps is drawn when it runs out, so
    the stream's draws depend only on how many arrivals were taken.
    """

    __slots__ = ("mean", "poisson", "rng", "block", "_gaps")

    def __init__(self, mean: float, rng: np.random.Generator, poisson: bool = True, block: int = 64) -> None:
        if mean <= 0:
            raise ValueError(f"mean gap must be positive, got {mean}")
        self.mean = float(mean)
        self.poisson = poisson
        self.rng = rng
        self.block = block
        self._gaps: Iterator[float] = iter(())  # the current block's gaps not yet taken

    def next(self) -> float:
        if not self.poisson:
            return self.mean
        for gap in self._gaps:  # one C-level iterator step per wake-up
            return gap
        self._gaps = iter(self.rng.exponential(self.mean, self.block).tolist())
        return next(self._gaps)


class _ActiveWindow(Protocol):
    """A group config's activity window (seconds)."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float | None: ...


class _Clocked(Protocol):
    """What an agent needs to run on a clock of its own (``Agent.start_clock``)."""

    @property
    def ctx(self) -> AgentContext: ...

    @property
    def cfg(self) -> _ActiveWindow: ...

    @property
    def arrivals(self) -> Arrivals: ...

    def act(self) -> None: ...

    def _tick(self) -> None: ...


class Agent:
    """Base class: public reads and order helpers. Subclasses implement ``start``.

    Slotted: an agent is a handful of numbers and references; subclasses declare their own slots.
    """

    kind: ClassVar[str] = "agent"
    # The venue's backstop vault and its auction bidders take positions over into one account
    # whatever the traders' margin mode, and trade from it too: they set this False.
    isolates_positions: ClassVar[bool] = True
    __slots__ = ("ctx", "name", "account", "rng", "orders_sent", "rejects", "__weakref__")

    def __init__(self, ctx: AgentContext, name: str, account: int, rng: np.random.Generator) -> None:
        self.ctx = ctx
        self.name = name
        self.account = account
        self.rng = rng
        self.orders_sent = 0
        self.rejects = 0

    def start(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ a clock of its own
    # For agents with ``cfg`` (``start``, ``end``) and ``arrivals``: ``start_clock`` schedules the
    # first wake-up at ``cfg.start`` + one gap; each wake-up before ``cfg.end`` calls ``act`` and
    # schedules the next one gap later.
    def start_clock(self: _Clocked) -> None:
        self.ctx.world.call_later(self.cfg.start + self.arrivals.next(), self._tick)

    def _tick(self: _Clocked) -> None:
        end = self.cfg.end
        world = self.ctx.world
        if end is not None and world.now >= end:  # one property call, not two (self.now)
            return
        self.act()
        world.call_later(self.arrivals.next(), self._tick)

    # ------------------------------------------------------------------ public reads
    @property
    def now(self) -> float:
        return self.ctx.world.now

    def best_bid(self, instrument: int) -> int | None:
        return self.ctx.venue.books[instrument].best_bid()

    def best_ask(self, instrument: int) -> int | None:
        return self.ctx.venue.books[instrument].best_ask()

    def mid(self, instrument: int) -> float | None:
        return self.ctx.venue.books[instrument].mid()

    def mark_ticks(self, instrument: int) -> float:
        return self.ctx.marks.ticks.item(instrument)

    def index_ticks(self, instrument: int) -> float:
        """The oracle's published index of ``instrument``'s underlying, in its ticks."""
        table = self.ctx.table
        if table.kind.item(instrument) != _OPTION:
            return self.ctx.marks.index_ticks.item(instrument)
        return float(self.ctx.marks.index[table.underlying_index[instrument]] / table.tick_size[instrument])

    def _isolated(self) -> "IsolatedDesk | None":
        """The isolated-margin desk this agent's positions go through (None under cross margin)."""
        return self.ctx.isolated if self.isolates_positions else None

    def account_for(self, instrument: int) -> int:
        """The account this agent trades ``instrument`` in: its own, or under isolated margin the
        sub-account that holds that one position (``clearing.isolated``)."""
        iso = self._isolated()
        return self.account if iso is None else iso.account_for(self.account, instrument)

    def position(self, instrument: int) -> int:
        return self.ctx.ledger.position.item(self.account_for(instrument), instrument)

    def positions(self) -> np.ndarray:
        """Lots per instrument (across its sub-accounts under isolated margin)."""
        iso = self._isolated()
        return self.ctx.ledger.position[self.account] if iso is None else iso.positions(self.account)

    def cash(self) -> int:
        iso = self._isolated()
        accounts = [self.account] if iso is None else iso.accounts_of(self.account)
        return int(sum(int(self.ctx.ledger.cash[a, QUOTE]) for a in accounts))

    def equity(self) -> float:
        """Own equity in quote minor units: collateral after haircuts + positions at mark (across
        its sub-accounts under isolated margin)."""
        iso = self._isolated()
        if iso is not None:
            return iso.owner_equity(self.account)
        return self.ctx.desk.account_equity(self.account)

    def tick_value(self, instrument: int) -> int:
        """Minor units of cash per tick per lot."""
        return int(self.ctx.ledger.tick_value[instrument])

    def reference_ticks(self, instrument: int, source: str = "index", weight: float = 0.5) -> float:
        """A price to trade around, in ticks: ``index``, ``mark``, ``mid`` (falling back to the
        mark when the book is one-sided), ``last`` (the venue's last on-book trade, falling back to
        the mid, then the mark) or ``blend`` = (1 - weight) x index + weight x the ``last`` price --
        a trader that reads the venue's own prints. Options always use the mark."""
        if source == "mark" or self.ctx.table.kind.item(instrument) == _OPTION:
            return self.ctx.marks.ticks.item(instrument)
        if source == "mid":
            m = self.ctx.venue.books[instrument].mid()
            if m is not None:
                return float(m)
            return self.ctx.marks.ticks.item(instrument)
        if source == "last":
            return self.last_trade_ticks(instrument)
        if source == "blend":
            return (1.0 - weight) * self.index_ticks(instrument) + weight * self.last_trade_ticks(instrument)
        return self.index_ticks(instrument)

    def last_trade_ticks(self, instrument: int) -> float:
        """The venue's last on-book trade price (ticks); before the first trade the mid, and with a
        one-sided book the mark."""
        last = self.ctx.venue.last_price[instrument]
        if last is not None:
            return float(last)
        return self.reference_ticks(instrument, "mid")

    def resting_lots(self, instrument: int) -> int:
        """Lots this account has resting on ``instrument`` (both sides), from the venue's arrays."""
        r = self.ctx.venue.resting
        account = self.account_for(instrument)
        if account >= r.bids.shape[0]:
            return 0
        return int(r.bids[account, instrument] + r.asks[account, instrument])

    # ------------------------------------------------------------------ actions (with latency)
    def submit(self, instrument: int, side: int, price: int, lots: int, tif: TimeInForce = TimeInForce.GTC,
               reduce_only: bool = False, on_result: Any = None) -> int:
        self.orders_sent += 1
        # account_for, not its body inlined: it honours isolates_positions (the vault and the bidders)
        return self.ctx.venue.submit(self.account_for(instrument), instrument, side, max(1, int(price)), int(lots),
                                     tif, reduce_only, on_result)

    def ioc_price(self, instrument: int, side: int, slippage: float) -> int:
        """An IOC limit ``slippage`` (a fraction) beyond the touch on the side it takes -- or beyond
        the mark when that side of the book is empty."""
        touch = self.best_ask(instrument) if side == BUY else self.best_bid(instrument)
        ref = float(touch) if touch is not None else self.mark_ticks(instrument)
        return math.ceil(ref * (1 + slippage)) if side == BUY else max(1, math.floor(ref * (1 - slippage)))

    def largest_accepted(self, instrument: int, side: int, price: int, lots: int, resolution: int = 1) -> int:
        """The largest size up to ``lots`` the clearing house's pre-trade check accepts now (a what-if
        margin query, as an exchange's margin calculator answers it), to within ``resolution`` lots
        (bisection, O(log(lots / resolution)) checks); 0 if none."""
        check = self.would_accept
        if check(instrument, side, price, lots):
            return lots
        lo, hi = 0, lots  # lo passes (0 trivially), hi fails
        while hi - lo > resolution:
            mid = (lo + hi) // 2
            if check(instrument, side, price, mid):
                lo = mid
            else:
                hi = mid
        return lo

    def would_accept(self, instrument: int, side: int, price: int, lots: int) -> bool:
        """The pre-trade check's answer now (a what-if); under isolated margin, whether the order
        passes once the owner's free collateral funds its sub-account."""
        iso, desk = self._isolated(), self.ctx.desk
        if iso is None:
            return desk.would_accept(self.account, instrument, side, price, lots)
        sub = iso.account_for(self.account, instrument)
        if desk.in_liquidation(sub):
            return False
        return iso.can_fund(self.account, instrument, side, price, lots)

    def set_leverage(self, instrument: int, leverage: float) -> None:
        """The leverage this agent picks for its position in ``instrument``: under isolated margin the
        position is funded to notional / leverage (a no-op under cross margin, where the whole
        account backs every position)."""
        iso = self._isolated()
        if iso is not None:
            iso.set_leverage(self.account, instrument, leverage)

    def cancel(self, order_id: int, instrument: int) -> None:
        self.ctx.venue.cancel(self.account_for(instrument), order_id, instrument)

    def cancel_all(self, instrument: int | None = None) -> None:
        iso = self._isolated()
        if iso is None:
            self.ctx.venue.cancel_all(self.account, instrument)
        elif instrument is not None:
            self.ctx.venue.cancel_all(self.account_for(instrument), instrument)
        else:
            for account in iso.accounts_of(self.account):
                self.ctx.venue.cancel_all(account, None)

    def _on_result(self, result: SubmitResult) -> None:
        if result.reject is not None:
            self.rejects += 1


class Crowd(Agent):
    """A whole group as one agent over an array of member accounts (``agents.noise.NoiseCrowd``,
    ``agents.leveraged.LeveragedCrowd``, ``agents.value.ValueCrowd``).

    ``account`` is the member acting now (set before each action, so the inherited reads and
    actions act for it); ``accounts[k]`` is member k's account. ``_times``/``_who``/``_next``: the
    members' pre-drawn actions (times, members), walked in time order by one pending event.
    ``_gaps``/``_picks``: the shared draws of a group whose members arrive as Poisson processes of
    one rate (``poisson_arrivals``; the noise and value groups)."""

    __slots__ = ("cfg", "accounts", "_times", "_who", "_next", "_gaps", "_picks")

    def __init__(self, ctx: AgentContext, name: str, rng: np.random.Generator, cfg: Any,
                 accounts: np.ndarray) -> None:
        super().__init__(ctx, name, int(accounts[0]) if accounts.size else -1, rng)
        self.cfg = cfg
        self.accounts = accounts
        self._times: list[float] = []
        self._who: list[int] = []
        self._next = 0

    @property
    def members(self) -> int:
        return int(self.accounts.size)

    def poisson_arrivals(self, block: int) -> None:
        """The group's buffers of unit uniforms for its members' superposed Poisson arrivals
        (``superposed_gap``, ``pick_member``), ``block`` draws per refill from the group's stream."""
        self._gaps = Sampler(UNIT, self.rng, block)  # a gap is -log(1 - u) x mean
        self._picks = Sampler(UNIT, self.rng, block)

    def superposed_gap(self, n: int) -> float:
        """The wait for the next arrival of ``n`` members' superposed Poisson processes of rate
        ``cfg.rate``: exponential with mean 1 / (rate x n)."""
        return -math.log1p(-self._gaps()) / (self.cfg.rate * n)

    def pick_member(self, n: int) -> int:
        """Which of ``n`` members arrives, uniformly: the next arrival of n independent Poisson
        processes of one rate is the first of them, equally likely any."""
        return min(int(self._picks() * n), n - 1)

    def share_links(self) -> None:
        """The members' messages travel on one pair of latency links for the group
        (``sim.market.venue.Venue.share_links``), not two random streams per member. Under isolated
        margin the orders go out from sub-accounts, which open links of their own as they come."""
        self.ctx.venue.share_links(self.accounts.tolist(), self.name)
