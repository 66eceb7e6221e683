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

import numpy as np

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
]


def effective_leverage(mark_value, bankrupt_value) -> np.ndarray:
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


def adl_rank(pnl_pct, leverage) -> np.ndarray:
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
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim != 1 or eq.shape[0] < n:
        raise ValueError(f"equity must be a 1-d array over the {n} ledger rows, got shape {eq.shape}")
    lots_all = ledger.position[FIRST_TRADER:n, instrument]
    rows = np.flatnonzero(lots_all)
    accounts = rows + FIRST_TRADER
    if exclude is not None:
        keep = accounts != exclude
        rows, accounts = rows[keep], accounts[keep]
    lots = lots_all[rows].astype(np.int64)
    cost = ledger.entry_value[FIRST_TRADER:n, instrument][rows].astype(np.float64)
    mark_value = lots.astype(np.float64) * float(mark_ticks) * float(ledger.tick_value[instrument])
    pnl = mark_value - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        pnl_pct = np.where(cost != 0, pnl / np.abs(np.where(cost != 0, cost, 1.0)), np.nan)
    acc_eq = eq[accounts]
    leverage = effective_leverage(mark_value, mark_value - acc_eq)
    return AdlCandidates(accounts=accounts.astype(np.int64), lots=lots, pnl=pnl, pnl_pct=pnl_pct,
                         leverage=leverage, ranks=adl_rank(pnl_pct, leverage))


def _opposite(bankrupt_lots: int, candidate_lots: np.ndarray) -> np.ndarray:
    if bankrupt_lots > 0:
        return candidate_lots < 0
    return candidate_lots > 0


def _check_inputs(candidate_accounts, candidate_lots, other) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    acc = np.asarray(candidate_accounts, dtype=np.int64)
    lots = np.asarray(candidate_lots, dtype=np.int64)
    oth = np.asarray(other, dtype=np.float64)
    if not (acc.shape == lots.shape == oth.shape) or acc.ndim != 1:
        raise ValueError(f"candidate arrays must be 1-d and aligned, got shapes "
                         f"{acc.shape}, {lots.shape}, {oth.shape}")
    return acc, lots, oth


def select_ranked(bankrupt_lots: int, candidate_accounts, ranks, candidate_lots) -> list[tuple[int, int]]:
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


def select_pro_rata(bankrupt_lots: int, candidate_accounts, candidate_lots, pnl) -> list[tuple[int, int]]:
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
