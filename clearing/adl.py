"""Auto-deleveraging (METHODS.md section 8): close profitable opposite-side positions at the
bankrupt account's bankruptcy price.

Ranking (BitMEX style), vectorised over candidate accounts:

    PnL%               = unrealised PnL / |entry value|
    effective leverage = |mark value| / (mark value - bankrupt value)
                       = |mark value| / account equity         (signed values; equity > 0)
    rank               = PnL% * effective leverage   if PnL% > 0
                         PnL% / effective leverage   otherwise

Longs and shorts form separate queues: a bankrupt short is deleveraged against the long queue and
vice versa. Selection is either by rank (``select_ranked``: highest rank first, the last one
partially) or pro rata to size over every profitable opposite holder (``select_pro_rata``, exact
largest remainder). ``execute_adl`` settles the selections with ``ledger.trade`` at one price, so
cash and open interest stay exactly balanced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np
from numpy.typing import ArrayLike
from sortedcontainers import SortedList

from clearing.ledger import FIRST_TRADER, Ledger
from clearing.socialised import allocate_pro_rata

__all__ = [
    "AdlCandidates",
    "effective_leverage",
    "adl_rank",
    "adl_candidates",
    "select_ranked",
    "select_pro_rata",
    "execute_adl",
    "AdlQueue",
]


def effective_leverage(mark_value: ArrayLike, bankrupt_value: ArrayLike) -> np.ndarray:
    """``|mark value| / (mark value - bankrupt value)``, element-wise; NaN where that is undefined.

    Values are signed (a short's mark value is negative). The denominator is the account's equity
    (the distance to its bankruptcy); where it is <= 0 the account is itself bankrupt and its
    leverage is NaN, which makes its rank NaN and keeps it out of every ADL queue.
    """
    mv = np.asarray(mark_value, dtype=np.float64)
    bv = np.asarray(bankrupt_value, dtype=np.float64)
    denom = mv - bv
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, np.abs(mv) / np.where(denom > 0, denom, 1.0), np.nan)


def adl_rank(pnl_pct: ArrayLike, leverage: ArrayLike) -> np.ndarray:
    """``pnl% * leverage`` where pnl% > 0, else ``pnl% / leverage`` (element-wise).

    NaN leverage or pnl% gives a NaN rank (not eligible). A rank is > 0 exactly when the position
    is in profit and the account solvent.
    """
    p = np.asarray(pnl_pct, dtype=np.float64)
    lev = np.asarray(leverage, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * lev, p / lev)


@dataclass(frozen=True, slots=True)
class AdlCandidates:
    """Every trader holding the instrument, with what ADL needs (arrays aligned by row)."""

    accounts: np.ndarray  # int64 account ids, ascending
    lots: np.ndarray  # int64 signed positions
    pnl: np.ndarray  # float64 unrealised PnL, quote minor units
    pnl_pct: np.ndarray  # float64 PnL / |entry value|
    leverage: np.ndarray  # float64 effective leverage (NaN: equity <= 0)
    ranks: np.ndarray  # float64 ADL rank (NaN: not eligible)


def adl_candidates(ledger: Ledger, instrument: int, mark_ticks: int, equity: np.ndarray,
                   exclude: int | None = None) -> AdlCandidates:
    """Rank every trader holding ``instrument`` at ``mark_ticks`` (vectorised, no account loop).

    ``equity`` is each account's total equity in quote minor units, indexed by account id (at least
    ``ledger.n_accounts`` long) -- the clearing house's re-valuation already has it. The position's
    bankrupt value is ``mark value - equity``, so effective leverage is ``|mark value| / equity``
    (cross-margin: the whole account's equity stands behind the position). ``exclude`` (normally
    the bankrupt account) is left out.
    """
    n = ledger.n_accounts
    eq = _equity_over_rows(equity, n)
    lots_all = ledger.position[FIRST_TRADER:n, instrument]
    accounts = np.flatnonzero(lots_all) + FIRST_TRADER
    if exclude is not None:
        accounts = accounts[accounts != exclude]
    return _ranked(ledger, instrument, mark_ticks, eq[accounts], accounts)


def _equity_over_rows(equity: np.ndarray, n: int) -> np.ndarray:
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim != 1 or eq.shape[0] < n:
        raise ValueError(f"equity must be a 1-d array over the {n} ledger rows, got shape {eq.shape}")
    return eq


def _ranked(ledger: Ledger, instrument: int, mark_ticks: int, acc_eq: np.ndarray, accounts: np.ndarray
            ) -> AdlCandidates:
    """The candidates' figures for the given holders, ``acc_eq`` their equities (element-wise: a
    row's figures do not depend on which other rows are ranked with it, so a cache can re-rank a
    few rows alone)."""
    lots = ledger.position[accounts, instrument].astype(np.int64)
    cost = ledger.entry_value[accounts, instrument].astype(np.float64)
    mark_value = lots.astype(np.float64) * float(mark_ticks) * float(ledger.tick_value[instrument])
    pnl = mark_value - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        pnl_pct = np.where(cost != 0, pnl / np.abs(np.where(cost != 0, cost, 1.0)), np.nan)
    leverage = effective_leverage(mark_value, mark_value - acc_eq)
    return AdlCandidates(accounts=accounts.astype(np.int64), lots=lots, pnl=pnl, pnl_pct=pnl_pct,
                         leverage=leverage, ranks=adl_rank(pnl_pct, leverage))


def _opposite(bankrupt_lots: int, candidate_lots: np.ndarray) -> np.ndarray:
    if bankrupt_lots > 0:
        return candidate_lots < 0
    return candidate_lots > 0


def _check_inputs(candidate_accounts: ArrayLike, candidate_lots: ArrayLike, other: ArrayLike
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    acc = np.asarray(candidate_accounts, dtype=np.int64)
    lots = np.asarray(candidate_lots, dtype=np.int64)
    oth = np.asarray(other, dtype=np.float64)
    if not (acc.shape == lots.shape == oth.shape) or acc.ndim != 1:
        raise ValueError(f"candidate arrays must be 1-d and aligned, got shapes "
                         f"{acc.shape}, {lots.shape}, {oth.shape}")
    return acc, lots, oth


def select_ranked(bankrupt_lots: int, candidate_accounts: ArrayLike, ranks: ArrayLike, candidate_lots: ArrayLike
                  ) -> list[tuple[int, int]]:
    """Choose who is deleveraged, highest rank first; the last one partially.

    ``bankrupt_lots`` is the bankrupt account's signed position still to close. Eligible: accounts
    on the opposite side (longs for a bankrupt short) with a rank > 0 (in profit and solvent; NaN
    ranks are never eligible). Ordered by rank descending, ties by account id ascending. Returns
    ``[(account, lots)]`` with positive lot counts that sum to ``min(|bankrupt_lots|, eligible
    size)``. Known answer (BitMEX): longs ranked 3, 6, 1, 4, 5, 2 with sizes 10, 10, 20, 30, 20, 10
    against a bankrupt short of 20 -> the rank-6 account for 10, the rank-5 account for 10.
    """
    acc, lots, rk = _check_inputs(candidate_accounts, candidate_lots, ranks)
    need = abs(int(bankrupt_lots))
    if need == 0:
        return []
    eligible = _opposite(int(bankrupt_lots), lots) & (rk > 0)
    idx = np.flatnonzero(eligible)
    order = idx[np.lexsort((acc[idx], -rk[idx]))]
    out: list[tuple[int, int]] = []
    for i in order.tolist():
        take = min(need, abs(int(lots[i])))
        out.append((int(acc[i]), take))
        need -= take
        if need == 0:
            break
    return out


def select_pro_rata(bankrupt_lots: int, candidate_accounts: ArrayLike, candidate_lots: ArrayLike, pnl: ArrayLike
                    ) -> list[tuple[int, int]]:
    """Split the bankrupt position over every profitable opposite-side holder, pro rata to size.

    Eligible: opposite side with ``pnl > 0``. The ``min(|bankrupt_lots|, eligible size)`` lots are
    allocated exactly by largest remainder over |lots| (ties to the smallest account id), so no
    holder gives more than its size nor more than its real share + 1 lot. Returns
    ``[(account, lots)]`` in ascending account order, zero allocations omitted.
    """
    acc, lots, p = _check_inputs(candidate_accounts, candidate_lots, pnl)
    need = abs(int(bankrupt_lots))
    if need == 0:
        return []
    eligible = _opposite(int(bankrupt_lots), lots) & (p > 0)
    idx = np.flatnonzero(eligible)
    if idx.size == 0:
        return []
    idx = idx[np.argsort(acc[idx], kind="stable")]
    sizes = np.abs(lots[idx])
    total = min(need, int(sizes.sum()))
    alloc = allocate_pro_rata(total, sizes, keys=acc[idx])
    return [(int(a), int(k)) for a, k in zip(acc[idx].tolist(), alloc.tolist()) if k]


def execute_adl(ledger: Ledger, bankrupt: int, instrument: int, price_ticks: int,
                selections: list[tuple[int, int]]) -> int:
    """Trade the bankrupt's position against ``selections`` at ``price_ticks``; returns lots closed.

    A bankrupt short buys from the selected longs; a bankrupt long sells to the selected shorts --
    one ``ledger.trade`` per selection, all at the bankruptcy price. Everything is validated
    before anything moves: each selection must be a positive size on the opposite side that does
    not exceed (flip) the counterparty's position, an account may appear once, and the total may
    not exceed the bankrupt's position. Raises ``ValueError`` otherwise (nothing traded).
    """
    held = int(ledger.position[bankrupt, instrument])
    if held == 0 or not selections:
        return 0
    total = 0
    seen: set[int] = set()
    for account, lots in selections:
        account, lots = int(account), int(lots)
        if account == bankrupt or account < FIRST_TRADER or account >= ledger.n_accounts:
            raise ValueError(f"ADL counterparty {account} is not another trader account")
        if account in seen:
            raise ValueError(f"ADL counterparty {account} selected twice")
        seen.add(account)
        if lots <= 0:
            raise ValueError(f"ADL size for account {account} must be positive, got {lots}")
        theirs = int(ledger.position[account, instrument])
        if (theirs > 0) == (held > 0) or theirs == 0 or lots > abs(theirs):
            raise ValueError(f"account {account} holds {theirs} lots; cannot take {lots} lots of the "
                             f"other side of a bankrupt position of {held}")
        total += lots
    if total > abs(held):
        raise ValueError(f"selections total {total} lots but the bankrupt account holds only {abs(held)}")
    for account, lots in selections:
        if held < 0:
            ledger.trade(int(bankrupt), int(account), instrument, int(price_ticks), int(lots))
        else:
            ledger.trade(int(account), int(bankrupt), instrument, int(price_ticks), int(lots))
    return total


@dataclass(slots=True)
class _Kept:
    """One instrument's queues, sorted at one mark and valuation version, and what changed since."""

    key: tuple  # (mark ticks, valuation version) the sort was made at
    cursor: int  # the ledger's change log, read up to here
    size: int  # holders in the sorted queues (the re-sort threshold's base)
    sorted: tuple  # (longs, shorts): each (accounts, sizes, ranks) arrays, rank descending, account ascending
    stale: set  # accounts changed since the sort: their entries in ``sorted`` are skipped
    fresh: tuple  # (longs, shorts): SortedList of (-rank, account, size) of the stale accounts eligible now
    where: dict  # account -> (side 0/1, its item in ``fresh``)
    pending: set  # accounts last ranked with a caller's equity override: ranked again at the next select


class AdlQueue:
    """The ranked ADL queues of each instrument, sorted once per price update and kept across
    bankruptcies; the work per bankruptcy follows what changed, not the number of accounts.

    ``select_ranked`` over ``adl_candidates`` ranks and sorts every holder for each bankrupt
    account -- in a crash of a million accounts that was most of the run. A holder's rank depends
    on its lots, entry value and equity and on the mark only. Equity moves with the account's
    cash and positions (every such change is in the ledger's change log, ``Ledger.changes_since``)
    and with the marks, collateral prices and haircuts (``version()``, the valuation inputs: a new
    one sorts afresh). So between price updates the queue sorted at the last one stays right for
    every holder the log does not name; ``select`` reads the log from its cursor, re-ranks only the
    accounts named since it last looked (equity by ``equity_of``, which must give a row the same
    bits whichever rows it is computed with: ``clearing.ledger.row_equities``, which the house's
    ``equities`` is), keeps them in a sorted list per
    side, and merges that list with the kept order by the same key -- rank descending, account
    ascending -- so the selections equal ``select_ranked``'s over a fresh ranking with the same
    equities (tests/clearing/test_adl.py, test_adl_queue.py). A new mark or version, a log emptied
    past the cursor, or many changed holders (more than ``RESORT_FRACTION`` of the queue) sort
    afresh. Pro-rata ADL (``select_pro_rata``) allocates over every profitable holder, so it is
    O(holders) per bankruptcy by definition and does not use this queue.
    """

    RESORT_FRACTION = 0.25

    def __init__(self, ledger: Ledger, equity_of: Callable[[np.ndarray | slice], np.ndarray],
                 version: Callable[[], Hashable] | None = None) -> None:
        self.ledger = ledger
        self.equity_of = equity_of  # ascending int64 rows or a range -> their equities (row by row, see above)
        self.version = version if version is not None else (lambda: None)
        self._queues: dict[int, _Kept] = {}
        self.sorts = 0  # full rankings so far (for tests and benchmarks)
        self.reranked = 0  # rows re-ranked between sorts (likewise)

    def _equities(self, rows: np.ndarray | slice, override: dict[int, float] | None) -> np.ndarray:
        """``equity_of(rows)`` with ``override[account]`` in place of the computed value of each
        overridden account among ``rows`` (ascending ids, or a range from row 0: an id is its index)."""
        eq = self.equity_of(rows)
        for account, value in (override or {}).items():
            if isinstance(rows, slice):
                if account < eq.shape[0]:
                    eq[account] = value
                continue
            i = int(np.searchsorted(rows, account))
            if i < rows.size and rows[i] == account:
                eq[i] = value
        return eq

    def _sort(self, instrument: int, mark_ticks: int, key: tuple, override: dict[int, float] | None) -> _Kept:
        ledger, n = self.ledger, self.ledger.n_accounts
        cursor = ledger.change_cursor()
        holders = np.flatnonzero(ledger.position[FIRST_TRADER:n, instrument]) + FIRST_TRADER
        # every row by a range, then the holders picked out: the same bits (row by row), and ~5x
        # cheaper than gathering the holders' rows first
        eq = self._equities(slice(0, n), override)
        c = _ranked(ledger, instrument, mark_ticks, eq[holders], holders)
        queues = []
        for side in (1, -1):  # the longs' queue (against a bankrupt short), then the shorts'
            idx = np.flatnonzero(((c.lots > 0) if side > 0 else (c.lots < 0)) & (c.ranks > 0))
            order = idx[np.lexsort((c.accounts[idx], -c.ranks[idx]))]
            queues.append((c.accounts[order], np.abs(c.lots[order]), c.ranks[order]))
        self.sorts += 1
        kept = _Kept(key, cursor, int(holders.size), (queues[0], queues[1]), set(), (SortedList(), SortedList()),
                     {}, set(override) if override else set())
        self._queues[instrument] = kept
        return kept

    def _rerank(self, kept: _Kept, instrument: int, mark_ticks: int, accounts: list[int],
                override: dict[int, float] | None) -> None:
        """Rank ``accounts`` again and put those eligible now into the fresh lists."""
        fresh, where = kept.fresh, kept.where
        for a in accounts:
            old = where.pop(a, None)
            if old is not None:
                fresh[old[0]].remove(old[1])
        rows = np.array(accounts, dtype=np.int64)
        rows = rows[self.ledger.position[rows, instrument] != 0]
        self.reranked += int(rows.size)
        if not rows.size:
            return
        c = _ranked(self.ledger, instrument, mark_ticks, self._equities(rows, override), rows)
        for i in np.flatnonzero(c.ranks > 0).tolist():
            side = 0 if c.lots[i] > 0 else 1
            item = (-float(c.ranks[i]), int(c.accounts[i]), abs(int(c.lots[i])))
            fresh[side].add(item)
            where[item[1]] = (side, item)

    def select(self, bankrupt_lots: int, instrument: int, mark_ticks: int, exclude: int | None = None,
               equity_override: dict[int, float] | None = None) -> list[tuple[int, int]]:
        """``select_ranked(bankrupt_lots, *adl_candidates(...))``'s answer, from the kept queue, with
        every account's equity from ``equity_of`` -- or ``equity_override[account]`` where given
        (the liquidation engine's equities from before its own ADL fills, for a bankrupt account's
        second instrument)."""
        need = abs(int(bankrupt_lots))
        if need == 0:
            return []
        ledger = self.ledger
        key = (int(mark_ticks), self.version())
        kept = self._queues.get(instrument)
        if kept is None or kept.key != key:
            kept = self._sort(instrument, mark_ticks, key, equity_override)
        else:
            logged, cursor = ledger.changes_since(kept.cursor)
            if logged is None:
                kept = self._sort(instrument, mark_ticks, key, equity_override)
            else:
                kept.cursor = cursor
                named = set(logged)
                named |= kept.pending
                kept.pending = set(equity_override) if equity_override else set()
                named |= kept.pending
                traders = sorted(a for a in named if a >= FIRST_TRADER)
                kept.stale.update(traders)
                if len(kept.stale) > self.RESORT_FRACTION * max(1, kept.size):
                    kept = self._sort(instrument, mark_ticks, key, equity_override)
                elif traders:
                    self._rerank(kept, instrument, mark_ticks, traders, equity_override)
        accounts, sizes, ranks = kept.sorted[0] if bankrupt_lots < 0 else kept.sorted[1]
        fresh = kept.fresh[0] if bankrupt_lots < 0 else kept.fresh[1]
        stale = kept.stale
        skip = -1 if exclude is None else int(exclude)
        out: list[tuple[int, int]] = []
        j, total = 0, accounts.shape[0]
        it = iter(fresh)
        f: tuple[float, int, int] | None = next(it, None)  # the fresh list's next (-rank, account, size)
        while need > 0 and (j < total or f is not None):  # a merge of the two sorted lists, lazily
            if f is not None and f[1] == skip:
                f = next(it, None)
                continue
            if j < total:
                a = int(accounts[j])
                if a in stale or a == skip:
                    j += 1
                    continue
                r = float(ranks[j])
                if f is not None and (-f[0] > r or (-f[0] == r and f[1] < a)):
                    a, size, f = f[1], f[2], next(it, None)
                else:
                    size, j = int(sizes[j]), j + 1
            else:  # the sorted list is used up, so (the loop's condition) f is not None
                a, size, f = f[1], f[2], next(it, None)  # type: ignore[index]  # f is not None: see the line above
            take = min(need, size)
            out.append((int(a), int(take)))
            need -= take
        return out
