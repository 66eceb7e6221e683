"""Columnar recording of an episode: appends to Python lists in the event loop, arrays at the end.

What is kept: oracle publications (index vs true path), trades (with flags), periodic samples of
marks and books, periodic samples of every account's equity / IM / MM / health, the insurance
fund's balance path, and -- read from the liquidation engine at the end -- liquidations with causes.
"""

from __future__ import annotations

from sim.core.phases import Phase
from typing import TYPE_CHECKING

import numpy as np

from clearing.ledger import FIRST_TRADER, QUOTE, SystemAccount
from sim.core.orders import Fill, RejectReason, SubmitResult
from sim.experiment.reference_margin import ReferenceMargin
from sim.experiment.spells import assign_spells
from sim.experiment.who_paid import VaultTracker, loss_ledger

_REFUSED = RejectReason.RISK_CHECK_FAILED  # an enum member read once (~0.4 us a lookup), compared by identity

if TYPE_CHECKING:
    from sim.experiment.assembled import Episode


TRADE_COLUMNS = ("time", "instrument", "price", "size", "aggressor", "maker", "taker", "flags")
_TRADE_CHUNK = 1 << 14  # fills kept as tuples before they are packed into a chunk
BREACH_CHANNELS = ("equity_change_index", "equity_change_collateral", "equity_change_impact",
                   "equity_change_allocation", "equity_change_other", "mm_change")


def _joined(chunks: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(chunks)`` (along the first axis) built in place of the chunks: each is released
    once copied and the list is left holding the joined array (a second call gives the same values),
    so the chunks and their table never both exist whole -- 60 samples of every account are ~0.5 GB
    a column at a million accounts, and the five columns were held twice at the end of the run; the
    trades' (fills, columns) chunks likewise (13M fills: ~0.8 GB)."""
    if not chunks:
        return np.zeros(0)
    if len(chunks) == 1:
        return chunks[0]
    out = np.empty((sum(len(c) for c in chunks),) + chunks[0].shape[1:], dtype=np.result_type(*chunks))
    chunks.reverse()  # popped from the end: the first sample first
    at = 0
    while chunks:
        chunk = chunks.pop()
        out[at:at + len(chunk)] = chunk
        at += len(chunk)
    chunks.append(out)
    return out


class Recorder:
    """Subscribes to the venue and the oracle and samples state on a timer."""

    def __init__(self, episode: "Episode", sample_interval: float) -> None:
        self.ep = episode
        self.sample_interval = sample_interval
        self.trades: list[tuple] = []  # one row per fill since the last chunk, in TRADE_COLUMNS order
        # earlier fills in chunks of (fills, columns) float64 -- 64 bytes a fill where a tuple row
        # costs ~250 (13M fills in the one-hour 1M-account stress episode); every column is an
        # integer below 2**53 or the time, so float64 holds it exactly
        self._trade_chunks: list[np.ndarray] = []
        self.publications: dict[str, list] = {"time": [], "underlying": [], "index": [], "true": []}
        self.market: dict[str, list] = {k: [] for k in (
            "time", "instrument", "mark", "index", "best_bid", "best_ask", "open_interest")}
        # per sample: its time and how many trader accounts it covers (the time and account columns
        # are expanded at the end), then one array per column
        self.account_samples: list[tuple[float, int]] = []
        self.accounts: dict[str, list] = {k: [] for k in ("equity", "im", "mm", "health", "gross")}
        self.fund: dict[str, list] = {"time": [], "insurance_fund": [], "bad_debt": [], "fee_pool": []}
        self._unchecked_refusals: list[int] = []
        # procyclicality on a fixed portfolio, and the backstop vault's P&L (who paid)
        self.reference = ReferenceMargin(episode)
        self.vault = VaultTracker(episode)

    def attach(self) -> None:
        ep = self.ep
        ep.venue.trade_listeners.add(self.on_trade, Phase.RECORD)
        ep.venue.reject_listeners.add(self.on_reject, Phase.RECORD)
        ep.oracle.listeners.add(self.on_publication, Phase.RECORD)
        ep.world.every(self.sample_interval, self.sample, start=0.0)

    def on_trade(self, fill: Fill, maker_fee: int, taker_fee: int) -> None:
        self.trades.append((self.ep.world.now, fill.instrument, fill.price, fill.size, fill.aggressor_side,
                            fill.maker_account, fill.taker_account, int(fill.flags)))
        if len(self.trades) >= _TRADE_CHUNK:
            self._flush_trades()

    def _flush_trades(self) -> None:
        if self.trades:
            self._trade_chunks.append(np.array(self.trades, dtype=np.float64))
            self.trades = []

    def on_reject(self, account: int, result: SubmitResult) -> None:
        # a refused amend leaves its order resting as it was; only refused new orders must never rest
        if result.reject is _REFUSED:
            oid = result.order_id
            for book in self.ep.venue.books:
                if oid in book:
                    return
            self._unchecked_refusals.append(oid)

    def on_publication(self, which: np.ndarray) -> None:
        ep = self.ep
        now = ep.world.now
        true = ep.paths.at(now)
        p = self.publications
        for u in which.tolist():
            p["time"].append(now)
            p["underlying"].append(u)
            p["index"].append(float(ep.oracle.index[u]))
            p["true"].append(float(true[u]))

    def sample(self) -> None:
        ep = self.ep
        now = ep.world.now
        ledger = ep.ledger
        m = self.market
        oi = np.abs(ledger.position[: ledger.n_accounts]).sum(axis=0) // 2
        for i, book in enumerate(ep.venue.books):
            m["time"].append(now)
            m["instrument"].append(i)
            m["mark"].append(float(ep.marks.ticks[i]))
            m["index"].append(float(ep.marks.index_ticks[i]))
            bid, ask = book.best_bid(), book.best_ask()
            m["best_bid"].append(np.nan if bid is None else float(bid))
            m["best_ask"].append(np.nan if ask is None else float(ask))
            m["open_interest"].append(int(oi[i]))
        n = ledger.n_accounts
        if n > FIRST_TRADER:
            equity, im, mm = ep.house.valuation(slice(FIRST_TRADER, n))
            exposure = ep.house.book  # the house's kept float positions
            exposure.refresh()  # done by the valuation above already (then a no-op check); not assumed here
            # |positions| . (mark x tick value) from the float copy: no int->float conversion of every
            # position. Every row from 0, then sliced: the BLAS product over the same rows as before
            values = np.asarray(ep.marks.ticks, dtype=np.float64) * ledger.tick_value
            gross = np.abs(exposure.held[:n]).dot(values)[FIRST_TRADER:n]
            a = self.accounts
            self.account_samples.append((now, n - FIRST_TRADER))
            a["equity"].append(equity)
            a["im"].append(im)
            a["mm"].append(mm)
            a["health"].append(ep.house.health[FIRST_TRADER:n].copy())
            a["gross"].append(gross)
        f = self.fund
        f["time"].append(now)
        f["insurance_fund"].append(int(ledger.cash[SystemAccount.INSURANCE_FUND, QUOTE]))
        f["bad_debt"].append(ledger.bad_debt())
        f["fee_pool"].append(int(ledger.cash[SystemAccount.FEE_POOL, QUOTE]))
        self.reference.sample()
        self.vault.sample()
        self.check_refused_not_resting()

    def check_refused_not_resting(self) -> None:
        """No order the pre-trade check refused may rest on any book (asserted over whole episodes).

        Order ids are never reused, so a refused id checked once after its refusal cannot appear
        later: each sample checks the refusals since the previous one."""
        pending, self._unchecked_refusals = self._unchecked_refusals, []
        for book in self.ep.venue.books:
            for oid in pending:
                if oid in book:
                    raise AssertionError(f"order {oid} was refused by the pre-trade check but rests on "
                                         f"book {book.instrument}")

    def tables(self) -> dict[str, dict[str, np.ndarray]]:
        """Everything as column arrays (one dict per table)."""
        self._flush_trades()
        if self._trade_chunks:
            rows = _joined(self._trade_chunks)  # the chunks released as they are copied
            trades = {k: np.ascontiguousarray(rows[:, j]) if k == "time" else rows[:, j].astype(np.int64)
                      for j, k in enumerate(TRADE_COLUMNS)}
        else:
            trades = {k: np.zeros(0) for k in TRADE_COLUMNS}
        out: dict[str, dict[str, np.ndarray]] = {
            "trades": trades,
            "oracle": {k: np.asarray(v) for k, v in self.publications.items()},
            "market": {k: np.asarray(v) for k, v in self.market.items()},
            "fund": {k: np.asarray(v) for k, v in self.fund.items()},
            # what the clearing house enforced, at each full re-valuation
            "margin_totals": {k: np.asarray(col) for k, col in zip(
                ("time", "im", "mm", "equity", "gross"),
                zip(*self.ep.house.margin_samples) if self.ep.house.margin_samples else [[]] * 5)},
        }
        times, counts = (np.array(c) for c in zip(*self.account_samples)) if self.account_samples else \
            (np.zeros(0), np.zeros(0, dtype=np.int64))
        if counts.size:
            # FIRST_TRADER.. per sample, filled in place (int64; the empty column below is float64, as every
            # empty column of these tables is: np.zeros(0))
            accounts: np.ndarray = np.empty(int(counts.sum()), dtype=np.int64)
            at = 0
            for c in counts.tolist():
                accounts[at:at + c] = np.arange(FIRST_TRADER, FIRST_TRADER + c)
                at += c
        else:
            accounts = np.zeros(0)
        out["accounts"] = {
            "time": np.repeat(times, counts),
            "account": accounts,
            **{k: _joined(v) for k, v in self.accounts.items()},
        }
        engine = self.ep.engine
        ev = engine.events
        out["liquidations"] = {
            "liq_id": np.array([e.liq_id for e in ev], dtype=np.int64),
            "account": np.array([e.account for e in ev], dtype=np.int64),
            "breach_time": np.array([e.breach_time for e in ev]),
            "start_time": np.array([e.start_time for e in ev]),
            "end_time": np.array([e.end_time for e in ev]),
            "cause": np.array([e.cause.kind.name.lower() for e in ev], dtype=object),
            "cause_ref": np.array([e.cause.ref for e in ev], dtype=np.int64),
            "parent": np.array([e.parent for e in ev], dtype=np.int64),
            "generation": np.array([e.generation for e in ev], dtype=np.int64),
            "equity_at_breach": np.array([e.equity_at_breach for e in ev]),
            "mm_at_breach": np.array([e.mm_at_breach for e in ev]),
            "outcome": np.array([e.outcome for e in ev], dtype=object),
            "notional": np.array([e.notional for e in ev], dtype=np.int64),
            # the but-for split of the equity change since the account was last at or above
            # maintenance (clearing.attribution), minor units: the rule can be re-checked from these
            **{name: np.array([getattr(e.why, name) for e in ev], dtype=np.float64) for name in BREACH_CHANNELS},
            "endogenous": np.array([e.why.endogenous for e in ev], dtype=bool),
        }
        liquidations = out["liquidations"]
        liquidations["spell"] = assign_spells(
            liquidations["liq_id"], liquidations["account"], liquidations["breach_time"], liquidations["end_time"],
            liquidations["outcome"], self.ep.config.outputs.spell_quiet_time)
        st = engine.steps
        out["liquidation_steps"] = {
            "liq_id": np.array([s.liq_id for s in st], dtype=np.int64),
            "time": np.array([s.time for s in st]),
            "account": np.array([s.account for s in st], dtype=np.int64),
            "instrument": np.array([s.instrument for s in st], dtype=np.int64),
            "policy": np.array([s.policy for s in st], dtype=object),
            "lots": np.array([s.lots for s in st], dtype=np.int64),
            "notional": np.array([s.notional for s in st], dtype=np.int64),
            "avg_price": np.array([s.avg_price_ticks for s in st]),
            "mark": np.array([s.mark_ticks for s in st]),
            "bankruptcy": np.array([s.bankruptcy_ticks for s in st]),
            "fee": np.array([s.fee for s in st], dtype=np.int64),
        }
        rec = self.ep.absorber.records
        out["losses"] = {
            "time": np.array([r[0] for r in rec]),
            "liq_id": np.array([r[1] for r in rec], dtype=np.int64),
            "account": np.array([r[2] for r in rec], dtype=np.int64),
            "layer": np.array([r[3] for r in rec], dtype=object),
            "amount": np.array([r[4] for r in rec], dtype=np.int64),
        }
        out["reference_margin"] = self.reference.table()
        out["backstop_vault"] = self.vault.table()
        out["who_paid"] = loss_ledger(self.ep, self.vault)
        return out
