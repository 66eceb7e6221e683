"""Socialised loss: spread a bankrupt account's remaining deficit over other accounts, exactly.

Two ways (METHODS.md section 8):

* ``socialise_over_open_interest`` charges holders of the bankrupt's instrument pro rata to their
  open lots -- the ledger form of "shift the cumulative funding of longs and shorts by
  loss / open interest", settled at once in cash.
* ``haircut_depositors`` charges accounts pro rata to their positive equity (never more than it).

Both use ``allocate_pro_rata``: an exact integer largest-remainder split, so the charges sum to
exactly the amount allocated, nobody pays more than their real-valued share rounded up (share + 1
minor unit at most), and ties are broken by ascending key (account id) so runs are reproducible.
Every charge is one ``ledger.transfer`` from the charged account to the beneficiary, so
``ledger.check()`` keeps holding.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from clearing.ledger import FIRST_TRADER, QUOTE, Ledger

_INT64_MAX = np.iinfo(np.int64).max


def allocate_pro_rata(total: int, weights: ArrayLike, keys: ArrayLike | None = None) -> np.ndarray:
    """Split the integer ``total`` over non-negative integer ``weights``; largest remainder, exact.

    Each entry gets ``floor(total * w_i / W)``; the ``total - sum(floors)`` units left over go one
    each to the entries with the largest remainders ``total * w_i mod W`` (compared exactly as
    integers), ties to the smallest ``keys`` (default: position in the array). The result sums to
    ``total`` exactly and each entry is within one unit above its real share; with
    ``total <= W`` nobody receives more than its weight. Entries with zero weight receive zero.

    Vectorised in int64 when ``total * max(w)`` fits, else exact in Python integers.
    ``total`` must be >= 0 and, when positive, ``sum(weights)`` must be > 0.
    O(n log n) for the remainder ordering.
    """
    total = int(total)
    if total < 0:
        raise ValueError(f"cannot allocate a negative total ({total})")
    w = np.asarray(weights)
    if w.ndim != 1:
        raise ValueError("weights must be a 1-d array")
    n = w.shape[0]
    key_arr = np.arange(n, dtype=np.int64) if keys is None else np.asarray(keys, dtype=np.int64)
    if key_arr.shape != (n,):
        raise ValueError("keys must have the same length as weights")
    if w.dtype == object:
        ints: list[int] | None = [int(x) for x in w.tolist()]
        wv = None
        lowest = min(ints) if ints else 0
    else:
        if np.issubdtype(w.dtype, np.floating):
            if not np.all(np.isfinite(w)) or np.any(w != np.floor(w)):
                raise ValueError("weights must be finite whole numbers (convert to minor units or lots first)")
        wv = w.astype(np.int64)
        ints = None
        lowest = int(wv.min()) if n else 0
    if lowest < 0:
        raise ValueError("weights must be non-negative")
    if total == 0:
        return np.zeros(n, dtype=np.int64)

    if wv is not None and n:
        max_w = int(wv.max())
        fits = float(wv.sum(dtype=np.float64)) < 2.0**62 and total <= _INT64_MAX // max(max_w, 1)
        if fits:
            w_sum = int(wv.sum())
            if w_sum <= 0:
                raise ValueError(f"cannot allocate {total} over weights that sum to {w_sum}")
            prod = wv * total
            base = prod // w_sum
            rem = prod % w_sum
            left = total - int(base.sum())
            if left:
                order = np.lexsort((key_arr, -rem))  # largest remainder first, then smallest key
                base[order[:left]] += 1
            return base
        ints = wv.tolist()

    # Exact in arbitrary-precision integers (huge totals or weights).
    ints = ints or []
    w_sum = sum(ints)
    if w_sum <= 0:
        raise ValueError(f"cannot allocate {total} over weights that sum to {w_sum}")
    base_l, rem_l = [], []
    for x in ints:
        q, r = divmod(total * x, w_sum)
        base_l.append(q)
        rem_l.append(r)
    left = total - sum(base_l)
    order_l = sorted(range(n), key=lambda i: (-rem_l[i], int(key_arr[i])))
    for i in order_l[:left]:
        base_l[i] += 1
    return np.array(base_l, dtype=np.int64)


def _charge(ledger: Ledger, accounts: np.ndarray, amounts: np.ndarray, beneficiary: int,
            reason: str) -> dict[int, int]:
    charged: dict[int, int] = {}
    for account, amount in zip(accounts.tolist(), amounts.tolist()):
        if amount:
            ledger.transfer(account, beneficiary, QUOTE, amount, reason)
            charged[account] = amount
    return charged


def socialise_over_open_interest(ledger: Ledger, instrument: int, loss: int, beneficiary: int,
                                 side: str = "all", mark_ticks: int | None = None,
                                 reason: str = "socialised loss") -> dict[int, int]:
    """Charge holders of ``instrument`` pro rata to |lots| so the charges sum to exactly ``loss``.

    ``side`` picks who pays: ``"all"`` (default: every holder, longs and shorts), ``"long"``,
    ``"short"``, or ``"profitable"`` (holders whose unrealised PnL at ``mark_ticks`` --
    ``lots * mark * tick_value - entry_value`` -- is positive; ``mark_ticks`` is then required).
    System rows and the ``beneficiary`` itself never pay. Each charge is a transfer of quote cash
    from the holder to ``beneficiary`` (the bankrupt account); a holder's cash may go negative --
    the clearing house's next re-valuation sees that like any other loss.

    Returns ``{account: charged}`` for accounts charged a non-zero amount. ``loss <= 0`` or nobody
    to charge: nothing moves and ``{}`` is returned (the caller records the loss as bad debt).
    """
    loss = int(loss)
    if side not in ("all", "long", "short", "profitable"):
        raise ValueError(f"side must be 'all', 'long', 'short' or 'profitable', got {side!r}")
    if side == "profitable" and mark_ticks is None:
        raise ValueError("side='profitable' needs mark_ticks to value the holders' PnL")
    if loss <= 0:
        return {}
    n = ledger.n_accounts
    lots = ledger.position[FIRST_TRADER:n, instrument]
    accounts = np.arange(FIRST_TRADER, n, dtype=np.int64)
    mask = lots != 0
    if side == "long":
        mask &= lots > 0
    elif side == "short":
        mask &= lots < 0
    elif side == "profitable":
        assert mark_ticks is not None  # refused above without it (a loss allocation, not the hot path)
        value = lots.astype(object) * int(mark_ticks) * int(ledger.tick_value[instrument])
        pnl = value - ledger.entry_value[FIRST_TRADER:n, instrument].astype(object)
        mask &= np.array([p > 0 for p in pnl], dtype=bool)
    mask &= accounts != beneficiary
    if not mask.any():
        return {}
    payers = accounts[mask]
    amounts = allocate_pro_rata(loss, np.abs(lots[mask]), keys=payers)
    return _charge(ledger, payers, amounts, beneficiary, reason)


def haircut_depositors(ledger: Ledger, loss: int, beneficiary: int, equity: np.ndarray,
                       reason: str = "depositor haircut") -> dict[int, int]:
    """Charge trader accounts pro rata to their positive ``equity``, never more than it.

    ``equity`` is indexed by account id (at least ``ledger.n_accounts`` long; rows of system
    accounts and of the ``beneficiary`` are ignored), in quote minor units; fractional values are
    floored to whole minor units first. Accounts with zero or negative equity pay nothing. The
    amount charged is ``min(loss, sum of positive equity)`` -- a depositor cannot lose more than
    it holds -- split exactly by largest remainder and transferred from each account's quote cash
    to ``beneficiary``. Returns ``{account: charged}`` (non-zero charges); ``{}`` when there is
    nothing to charge. The caller records ``loss - sum(charged.values())`` as bad debt.
    """
    loss = int(loss)
    if loss <= 0:
        return {}
    n = ledger.n_accounts
    eq = np.asarray(equity)
    if eq.ndim != 1 or eq.shape[0] < n:
        raise ValueError(f"equity must be a 1-d array over the {n} ledger rows, got shape {eq.shape}")
    eq = eq[FIRST_TRADER:n]
    if np.issubdtype(eq.dtype, np.floating):
        eq = np.where(np.isfinite(eq), eq, 0.0)
        weights = np.floor(np.maximum(eq, 0.0)).astype(np.int64)
    else:
        weights = np.maximum(eq.astype(np.int64), 0)
    accounts = np.arange(FIRST_TRADER, n, dtype=np.int64)
    weights[accounts == beneficiary] = 0
    mask = weights > 0
    if not mask.any():
        return {}
    payers, w = accounts[mask], weights[mask]
    amount = min(loss, int(w.sum()))
    charges = allocate_pro_rata(amount, w, keys=payers)
    return _charge(ledger, payers, charges, beneficiary, reason)
