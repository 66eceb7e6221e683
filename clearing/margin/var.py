"""Historical / filtered-historical VaR and expected-shortfall margin with anti-procyclicality
tools (METHODS.md section 5; EMIR RTS 153/2013 Art. 28).

History: a (T, U) array of prices per underlying (one row per ``row_interval`` seconds, columns
in the instrument table's underlying order), supplied at construction and extended with
:meth:`update_history`. Horizons are configured in days and turned into rows here: ``mpor`` =
``mpor_days`` x 86,400 / ``row_interval`` rows (a whole number, or the regime is refused),
``lookback`` / ``floor_lookback`` likewise (rounded to the nearest row).

Scenarios: the overlapping ``mpor``-row returns whose windows end in the last ``lookback`` rows,
r = P[t] / P[t - mpor] - 1, all underlyings jointly (their historical co-movement is the
correlation model). ``method="filtered"`` (FHS): daily log returns are divided by the EWMA vol
(``ewma_lambda``) of the day before and multiplied by today's EWMA vol, then compounded over the
window. A scenario moves every forward on an underlying by its return (F' = F (1 + r)); options
are revalued with Black-76 at unchanged vol and at the end of the margin period of risk: their time
to expiry less the MPOR (``mpor`` rows of ``row_interval`` seconds, floored at zero), as a CCP's
full revaluation does -- so a scenario's P&L includes the option's time decay (theta) over the
MPOR, and an option expiring within the MPOR is valued at its intrinsic value.

Measure per account over its scenario losses L (S of them): VaR = the k-th largest loss,
k = ceil((1 - confidence) x S); ES = the mean of the k largest; floored at 0.

Anti-procyclicality, applied in this order to the per-account figure V:

1. stressed weighting (``stressed_weight`` w): V = (1 - w) V + w V_stressed, V_stressed the same
   measure over the returns of the stressed period -- ``stressed_period_days`` [start, end), or by
   default the ``lookback``-row window of the history so far with the highest realised volatility
   (mean over underlyings of the daily log-return standard deviation);
2. buffer (``buffer`` b): normally margin = (1 + b) V. The buffer is released when the buffered
   margin would rise by more than ``release_threshold`` over the account's previous margin (or
   while :meth:`set_stress` says so): that day margin = max(V, (1 + threshold) x previous), and
   while released margin = max(V, min(previous, (1 + b) V)) -- the buffer absorbs the rise until
   used up, then the margin follows V, and it does not fall while V eases. The buffer is rebuilt
   (release ends) once (1 + b) V is back at or below the previous margin, so the rebuild is
   never itself a margin increase. Stateful: "previous" is the account row's margin (and release
   flag) at the last history row -- the state advances when the history does, so any number of
   calls between two history updates give the same figure; reset when the number of accounts
   changes, or by :meth:`reset`;
3. floor (``floor_lookback`` n): margin = max(margin, the same measure over the last n rows of
   history -- or all of it when shorter).

The stressed and floor sets always use plain (unfiltered) returns: rescaling them to today's
volatility would undo their purpose.

IM = margin, MM = ``mm_ratio`` x IM (default 0.8: see ``VaRConfig``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sim.core.instruments import SECONDS_PER_YEAR, InstrumentTable, MarketState
from clearing.margin.base import FEW_ACCOUNTS, MarginRegime, Positions, Requirements, distinct_entries
from clearing.margin.scenarios import Revaluer, market_key
from clearing.margin.config import VaRConfig

DAY = 86_400.0  # seconds


def mpor_returns(prices: np.ndarray, mpor: int) -> np.ndarray:
    """Overlapping ``mpor``-row simple returns, (T - mpor, U)."""
    return prices[mpor:] / prices[:-mpor] - 1.0


def ewma_vol(log_returns: np.ndarray, lam: float, seed_rows: int = 20) -> np.ndarray:
    """EWMA volatility after each row (same shape as ``log_returns``), seeded with the sample
    standard deviation of the first ``seed_rows`` rows."""
    n = log_returns.shape[0]
    out = np.empty_like(log_returns)
    var = np.var(log_returns[: max(1, min(seed_rows, n))], axis=0) + 1e-18
    for t in range(n):  # loop over time (history rows), once per history update
        var = lam * var + (1.0 - lam) * log_returns[t] ** 2
        out[t] = np.sqrt(var)
    return out


def filtered_returns(prices: np.ndarray, mpor: int, lam: float) -> np.ndarray:
    """FHS ``mpor``-row returns rescaled to today's EWMA volatility, (T - mpor, U)."""
    d = np.diff(np.log(prices), axis=0)  # (T-1, U): d[s] is the return into row s+1
    vol = ewma_vol(d, lam)
    prior = np.vstack([vol[:1], vol[:-1]])  # vol known before each return
    z = d * (vol[-1] / prior)
    c = np.vstack([np.zeros((1, z.shape[1])), np.cumsum(z, axis=0)])  # (T, U) cumulative
    return np.expm1(c[mpor:] - c[:-mpor])


def tail_measure(losses_t: np.ndarray, confidence: float, measure: str) -> np.ndarray:
    """Per column of ``losses_t`` (S x A): VaR (k-th largest) or ES (mean of k largest), >= 0.

    Not on the regime's path (that is :func:`tail_of`): the plain definition -- a partition of
    every loss -- kept as the reference the tests hold the pruned search to
    (tests/clearing/test_var_tail.py)."""
    s = losses_t.shape[0]
    if s == 0:
        return np.zeros(losses_t.shape[1])
    k = tail_count(s, confidence)
    part = np.partition(losses_t, s - k, axis=0)
    if measure == "var":
        val = part[s - k]
    else:
        val = part[s - k:].mean(axis=0)
    return np.maximum(val, 0.0)


def tail_count(s: int, confidence: float) -> int:
    """k: how many of ``s`` scenario losses make the tail (the VaR is the k-th largest)."""
    return max(1, math.ceil((1.0 - confidence) * s - 1e-9))


def group_size(k: int) -> int:
    """Scenarios per group of the pruned tail search: a power of two >= k, 16 to 32 (measured on
    the backtest benchmark's books: smaller groups bound tighter but cost more bounds, larger
    ones more losses per group computed)."""
    return min(32, max(16, 1 << max(0, k - 1).bit_length()))


def scenario_groups(returns: np.ndarray, size: int) -> np.ndarray:
    """(G, size) scenario indices in groups of scenarios that lie close together in return space;
    when ``size`` does not divide S the last group is short, padded with the index S (no scenario).

    Every underlying but the last is cut into ~(S / size)^(1/U) quantile bins; within a bin the
    scenarios are ordered by the last underlying's return, and the order is cut into groups of
    ``size``. Close returns mean close P&L per instrument (a scenario's P&L is monotone or smooth in
    its underlying's move), so a group's per-instrument min and max bound its scenarios' losses
    tightly. Any grouping gives the same tail figures; this one only makes the pruning effective.
    """
    s, u = returns.shape
    g = -(-s // size)
    if u > 1 and s > size:
        bins = max(1, int(math.ceil((s / size) ** (1.0 / u))))
        by = np.argsort(returns[:, :-1], axis=0, kind="stable")
        ranks = np.empty_like(by)  # the inverse permutation: what a second argsort gives, in one pass
        np.put_along_axis(ranks, by, np.arange(s)[:, None], axis=0)
        keys = [returns[:, -1]] + [(ranks[:, j] * bins) // s for j in range(u - 2, -1, -1)]
        order = np.lexsort(keys)
    else:
        order = np.argsort(returns[:, -1] if u else np.zeros(s), kind="stable")
    out = np.full(g * size, s, dtype=np.int64)
    out[:s] = order
    return out.reshape(g, size)


def _slot_sums(ends: list[int], term: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Sum over slots of ``term(q, e)``, slot q's terms of the first ``e`` = ``ends[q]`` rows: slot 0
    for every row, then each further slot added to its prefix of rows, in slot order -- the
    additions every loss of :class:`LotSlots` is made of (and ``segment_sums_t``'s)."""
    out = term(0, ends[0])
    for q in range(1, len(ends)):  # loop over slots (a handful), each over a prefix of portfolios
        e = ends[q]
        if e == 0:
            break
        out[:e] += term(q, e)
    return out


class LotSlots:
    """A block of accounts' lots prepared for :func:`top_losses`: identical portfolios once, each
    as its held instruments in column order (slot j = its j-th held instrument), portfolios ordered
    by how many instruments they hold, most first, so slot j applies to a prefix of them."""

    __slots__ = ("n", "inverse", "dense", "nheld", "col", "lot", "prefix", "searchable", "signed", "magnitude", "term",
                 "term_col", "term_lot")

    # the pruned search's tables: unset until :meth:`prepare_search` builds them (``searchable``),
    # which every reader calls first -- :meth:`terms` itself, the rest take its result or follow it
    signed: np.ndarray
    magnitude: np.ndarray
    term: np.ndarray
    term_col: np.ndarray
    term_lot: np.ndarray

    def __init__(self, lots: np.ndarray) -> None:
        lots = np.asarray(lots, dtype=np.float64)
        self.n = lots.shape[0]
        # what only the pruned search reads is built when it first asks (:meth:`prepare_search`):
        # the house's one-account what-if checks build hundreds of thousands of these per episode
        self.searchable = False
        if self.n <= FEW_ACCOUNTS:
            self._of_few(lots)
            return
        # the same lots: the same figures
        uniq, inv = np.unique(lots, axis=0, return_inverse=True)
        nheld = np.count_nonzero(uniq, axis=1)
        order = np.argsort(-nheld, kind="stable")
        keep = order[nheld[order] > 0]  # a flat book has no losses (its figure is 0)
        rank = np.full(uniq.shape[0], -1, dtype=np.int64)
        rank[keep] = np.arange(keep.size)
        self.inverse = rank[np.asarray(inv).reshape(-1)]
        self.dense = np.ascontiguousarray(uniq[keep])
        self.nheld = nheld[keep]
        width = int(self.nheld[0]) if keep.size else 0
        r, c = np.nonzero(self.dense)  # row-major: each row's held columns in ascending order
        j = np.arange(r.size) - np.searchsorted(r, r)
        self.col = np.zeros((keep.size, width), dtype=np.int64)
        self.lot = np.zeros((keep.size, width))
        self.col[r, j], self.lot[r, j] = c, self.dense[r, c]
        self.prefix = [int(np.count_nonzero(self.nheld > q)) for q in range(width)]

    def _of_few(self, lots: np.ndarray) -> None:
        """The same tables for a few rows (a pre-trade check's states of one account), built in
        plain Python: the whole-block path's dozen numpy calls cost more than the rows. Distinct
        rows as ``np.unique`` orders and collapses them (lexicographic; equal values, signed zeros
        among them, are one row), the most held first in that order."""
        rows = [tuple(row) for row in lots.tolist()]
        distinct = sorted(set(rows))
        held = [[(c, x) for c, x in enumerate(row) if x != 0.0] for row in distinct]
        keep = [j for j in sorted(range(len(distinct)), key=lambda j: -len(held[j])) if held[j]]  # stable
        rank = {distinct[j]: r for r, j in enumerate(keep)}
        self.inverse = np.array([rank.get(row, -1) for row in rows], dtype=np.int64)
        self.dense = np.array([distinct[j] for j in keep], dtype=np.float64).reshape(len(keep), lots.shape[1])
        counts = [len(held[j]) for j in keep]
        self.nheld = np.array(counts, dtype=np.int64)
        width = counts[0] if keep else 0
        pad = [(0, 0.0)] * width
        slots = [(held[j] + pad)[:width] for j in keep]  # (column, lot) per slot, zero-padded to the widest
        self.col = np.array([[c for c, _ in row] for row in slots], dtype=np.int64).reshape(len(keep), width)
        self.lot = np.array([[x for _, x in row] for row in slots], dtype=np.float64).reshape(len(keep), width)
        self.prefix = [sum(1 for c in counts if c > q) for q in range(width)]

    def prepare_search(self) -> None:
        """The pruned search's tables, once: [lots+, lots-] (one product with [max; min] gives the
        loss bounds), |lots|, and the distinct (instrument, lot) terms."""
        if self.searchable:
            return
        self.signed = np.concatenate([np.maximum(self.dense, 0.0), np.minimum(self.dense, 0.0)], axis=1)
        self.magnitude = np.abs(self.dense)
        # a term lot x per-lot loss depends on the (instrument, lot) only, and few pairs recur across
        # thousands of books: each term's products are made once per call (:meth:`terms`) and a
        # book's loss is a sum of gathered products -- the same products, so the same bits
        r, c = np.nonzero(self.dense)
        j = np.arange(r.size) - np.searchsorted(r, r)
        self.term_col, self.term_lot, tinv = distinct_entries(c, self.dense[r, c])
        self.term = np.zeros(self.col.shape, dtype=np.int64)
        self.term[r, j] = tinv
        self.searchable = True

    def all_losses(self, loss: np.ndarray) -> np.ndarray:
        """(rows, S): every portfolio's loss in every scenario of the (I, S) per-lot ``loss`` -- the
        products and additions of :meth:`losses`, made directly (no term table): for small blocks."""
        return _slot_sums(self.prefix, lambda q, e: self.lot[:e, q, None] * loss[self.col[:e, q]])

    def terms(self, loss: np.ndarray) -> np.ndarray:
        """(T, ...) each distinct (instrument, lot) term's loss: lot x ``loss[instrument]``."""
        self.prepare_search()
        return self.term_lot.reshape((-1,) + (1,) * (loss.ndim - 1)) * loss[self.term_col]

    def losses(self, rows: np.ndarray | None, terms: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Loss of portfolio ``rows[p]`` (every portfolio if None; rows ascending) in scenario
        ``cols[p, j]`` (or ``cols[0, j]`` for every portfolio), from ``terms`` = :meth:`terms` of the
        (I, S) per-lot losses: lot x per-lot loss summed over the held instruments in column order
        -- the same products and additions, in the same order, as ``segment_sums_t`` makes, so a
        loss has the same bits whichever path computed it."""
        if rows is None:
            rows = np.arange(self.dense.shape[0])
            ends = self.prefix
        else:
            ends = [int(np.searchsorted(-self.nheld[rows], -q, side="left")) for q in range(len(self.prefix))]
        if cols.shape[0] == 1:  # the same scenarios for every portfolio: whole rows of products
            sub = terms[:, : cols.shape[1]] if np.array_equal(cols[0], np.arange(cols.shape[1])) else terms[:, cols[0]]

            def gather(t: np.ndarray, e: int) -> np.ndarray:
                return np.take(sub, t, axis=0)
        else:  # flat element gathers: far cheaper than a 2-D fancy index
            flat, stride = terms.ravel(), terms.shape[1]

            def gather(t: np.ndarray, e: int) -> np.ndarray:
                return np.take(flat, t[:, None] * stride + cols[:e])

        return _slot_sums(ends, lambda q, e: gather(self.term[rows[:e], q], e))

    def group_losses(self, rows: np.ndarray, cells: np.ndarray, gids: np.ndarray) -> np.ndarray:
        """Losses of portfolio ``rows[p]`` in every scenario of groups ``gids[p, :]``: (p, n x size).
        ``cells`` is the (T x G, size) loss of each term in each group (:meth:`terms` of the per-lot
        losses group by group); the same sums as :meth:`losses` (row gathers of products)."""
        g_n = cells.shape[0] // self.term_lot.size
        ends = [int(np.searchsorted(-self.nheld[rows], -q, side="left")) for q in range(len(self.prefix))]
        out = _slot_sums(ends, lambda q, e: np.take(cells, self.term[rows[:e], q, None] * g_n + gids[:e], axis=0))
        return out.reshape(rows.size, gids.shape[1] * cells.shape[1])


# Below this many distinct books the bounds cost more than they save: building them reads every
# instrument x scenario cell however few books there are, and the clearing house's what-if checks
# (one account, two rows) call this hundreds of thousands of times an episode. Both paths give the
# same figures (tests/clearing/test_var_tail.py).
PRUNE_MIN_BOOKS = 2048


def top_losses(lots: "np.ndarray | LotSlots", loss: np.ndarray, k: int, groups: np.ndarray | None = None) -> np.ndarray:
    """(A, k): the k largest of each portfolio's scenario losses ``lots @ loss``, largest first.

    :func:`tail_of` per account (the regime calls :func:`tail_of` on its distinct books itself):
    what the tests compare with the full sort (tests/clearing/test_var_tail.py).

    ``lots``: (A, I) lots (or their :class:`LotSlots`); ``loss``: (I, S) loss per long lot per
    scenario; ``groups`` from :func:`scenario_groups` (None: every loss is computed). With groups,
    the losses that can be in the tail are found without computing them all -- exactly: the result
    is the same as sorting every loss (see :func:`tail_of`).
    """
    book = lots if isinstance(lots, LotSlots) else LotSlots(lots)
    out = np.zeros((book.n, k))
    top, _ = tail_of(book, loss, k, groups)
    keep = book.inverse >= 0
    out[keep] = top[book.inverse[keep]]
    return out


def tail_of(book: LotSlots, loss: np.ndarray, k: int, groups: np.ndarray | None = None,
            hint: np.ndarray | None = None, ordered: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The k largest scenario losses of each of ``book``'s distinct portfolios (rows of
    ``book.dense``), largest first (in no order unless ``ordered``: VaR needs only the smallest of
    them), and the scenarios they are in (None when every loss was computed); ``hint``: (rows, k)
    scenarios per portfolio to start from (-1: none), e.g. the previous margin run's tail, which
    moves little from one run to the next.

    With groups (and at least ``PRUNE_MIN_BOOKS`` portfolios), exactly the figures of sorting every
    loss, without computing most of them:

    1. per group and instrument the min and max loss per lot bound each portfolio's losses in the
       group from above: UB = lots+ @ max + lots- @ min (plus a rounding allowance);
    2. tau, a lower bound of each portfolio's k-th largest loss: the k-th largest loss of some
       scenarios -- the k hinted ones, else those of the groups with the highest bounds (the best,
       then ``ROUNDS`` more one at a time);
    3. only groups whose bound reaches tau can hold a tail loss: they are computed at once, and the
       k largest of their losses >= tau are the answer (a portfolio whose bound reaches tau in
       most groups -- hedged to rounding noise -- is computed in one full row instead).

    The hint only decides where the search starts, never the figures: any k distinct scenarios
    give a valid tau.

    Cost per call ~ A x (G x I  +  the groups reaching tau x size x held instruments) instead of
    A x S x held plus a partition of A x S: the tail is a handful of groups out of S / size.
    """
    s = loss.shape[1]
    a_n = book.dense.shape[0]
    if a_n == 0 or s == 0:
        return np.zeros((a_n, k)), None
    size = group_size(k) if groups is None else groups.shape[1]
    m = -(-k // size)  # seed groups: enough full groups to hold k scenarios (1 but for k > 32)
    if groups is None or groups.shape[0] <= m + 2 or a_n < PRUNE_MIN_BOOKS:
        vals = book.all_losses(loss)
        top = np.partition(vals, s - k, axis=1)[:, s - k:]
        return (-np.sort(-top, axis=1) if ordered else top), None
    book.prepare_search()
    loss_ext = np.concatenate([loss, np.zeros((loss.shape[0], 1))], axis=1)  # column S: the padding
    top, ids = _pruned_top(book, loss, loss_ext, k, groups, m, hint)
    if not ordered:
        return top, ids
    order = np.argsort(-top, axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(ids, order, axis=1)


ROUNDS = 4  # without a hint: groups computed one at a time (highest bound first) to raise tau


def _pruned_top(book: LotSlots, loss: np.ndarray, loss_ext: np.ndarray, k: int, groups: np.ndarray,
                m: int, hint: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(A, k) the k largest losses per portfolio and their scenarios, unordered (see :func:`tail_of`)."""
    s = loss.shape[1]
    a_n, (g_n, size) = book.dense.shape[0], groups.shape
    per_lot = loss_ext[:, groups]  # (I, G, size): each instrument's per-lot loss, group by group
    short = s % size  # scenarios in the last group when it is short (its padding is column S: 0)
    if short:
        hi = np.concatenate([per_lot[:, :-1].max(axis=2), per_lot[:, -1:, :short].max(axis=2)], axis=1)
        lo = np.concatenate([per_lot[:, :-1].min(axis=2), per_lot[:, -1:, :short].min(axis=2)], axis=1)
    else:
        hi, lo = per_lot.max(axis=2), per_lot.min(axis=2)
    terms = book.terms(per_lot)  # (T, G, size): each (instrument, lot) term's loss, group by group
    cells = terms.reshape(-1, size)  # (T x G, size)
    terms = terms.reshape(terms.shape[0], g_n * size)  # by scenario: column at[j] holds scenario j
    at = np.empty(s + 1, dtype=np.int64)
    at[groups.ravel()] = np.arange(g_n * size)
    # rounding allowance: a bound and a computed loss may differ by a few ulps of sum |lot x loss|
    slack = (8.0 * (loss.shape[0] + 4) * np.finfo(np.float64).eps) * (book.magnitude @ np.abs(loss).max(axis=1))
    ub = book.signed @ np.concatenate([hi, lo])  # (A, G): lots+ @ max + lots- @ min in one product
    ub += slack[:, None]

    def computed(who: np.ndarray, gids: np.ndarray) -> np.ndarray:
        vals = book.group_losses(who, cells, gids)
        if short:  # the padding is no scenario
            vals.reshape(who.size, gids.shape[1], size)[:, :, short:][gids == g_n - 1] = -np.inf
        return vals

    # tau: the k-th largest loss of k distinct scenarios is at most the k-th largest of all
    tau = np.full(a_n, -np.inf)
    if hint is not None:
        hinted = np.flatnonzero((hint >= 0).all(axis=1))
        if hinted.size:
            tau[hinted] = book.losses(hinted, terms, at[hint[hinted]]).min(axis=1)
    seeded = np.flatnonzero(tau == -np.inf)
    if seeded.size:  # no hint: the m groups with the highest bounds (never the short one: m full groups hold >= k)
        sub = ub[seeded]
        if short:
            sub[:, -1] = -np.inf
        rows = np.arange(seeded.size)
        seeds = np.empty((seeded.size, m), dtype=np.int64)
        for j in range(m):  # m is 1 or 2: an argmax pass beats a partition of every row
            seeds[:, j] = np.argmax(sub, axis=1)
            sub[rows, seeds[:, j]] = -np.inf
        vals = computed(seeded, seeds)
        best = np.partition(vals, vals.shape[1] - k, axis=1)[:, vals.shape[1] - k:]
        # then the next highest bounds, a group a round: a weak tau would send most groups of a
        # long floor to the batch below (the first run of a backtest, a new set of positions)
        for _ in range(min(ROUNDS, g_n - m - (1 if short else 0))):  # never a group twice
            g = np.argmax(sub, axis=1)
            sub[rows, g] = -np.inf
            vals = np.concatenate([best, computed(seeded, g[:, None])], axis=1)
            best = np.partition(vals, size, axis=1)[:, size:]
        tau[seeded] = best.min(axis=1)
    # every group whose bound reaches tau, at once; the losses below tau cannot be in the tail
    reach = ub >= tau[:, None]
    top = np.empty((a_n, k))
    ids = np.empty((a_n, k), dtype=np.int64)
    # a book whose losses are all alike (hedged to rounding noise: a perpetual against a deep
    # in-the-money option) reaches tau in most groups: its losses are computed in one row each
    wide = np.flatnonzero(np.count_nonzero(reach, axis=1) > g_n // 2)
    if wide.size:
        vals = book.losses(wide, terms, np.arange(g_n * size)[None, :])  # in group order
        if short:
            vals[:, groups.ravel() == s] = -np.inf  # the padding is no scenario
        pick = np.argpartition(vals, vals.shape[1] - k, axis=1)[:, vals.shape[1] - k:]
        top[wide] = np.take_along_axis(vals, pick, axis=1)
        ids[wide] = groups.ravel()[pick]
        reach[wide] = False
        narrow = np.flatnonzero(reach.any(axis=1))
    else:
        narrow = np.arange(a_n)
    la, lg = np.nonzero(reach)
    vals = computed(la, lg[:, None])
    kept = np.flatnonzero(vals >= tau[la, None])  # row-major: by book, then group, then scenario
    pair = kept // size
    owner = la[pair]
    if wide.size:  # rows of the narrow books only
        slot = np.zeros(a_n, dtype=np.int64)
        slot[narrow] = np.arange(narrow.size)
        owner = slot[owner]
    top[narrow], ids[narrow] = _segment_top(owner, vals.ravel()[kept], groups.ravel()[lg[pair] * size + kept % size],
                                            narrow.size, k)
    return top, ids


def _segment_top(owner: np.ndarray, vals: np.ndarray, ids: np.ndarray, a_n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(a_n, k) the k largest ``vals`` of each owner (``owner`` ascending, each with at least k)
    and their ``ids``, unordered. With a close tau most owners have exactly k: those are taken as
    they are; the others' rows are padded with -inf and partitioned."""
    counts = np.bincount(owner, minlength=a_n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    top = np.empty((a_n, k))
    top_ids = np.empty((a_n, k), dtype=ids.dtype)
    exact = counts == k
    at = starts[exact, None] + np.arange(k)
    top[exact], top_ids[exact] = vals[at], ids[at]
    more = np.flatnonzero(~exact)
    if more.size:
        width = int(counts[more].max())
        at = starts[more, None] + np.arange(width)
        valid = np.arange(width) < counts[more, None]
        at = np.where(valid, at, 0)
        mat = np.where(valid, vals[at], -np.inf)
        pick = np.argpartition(mat, width - k, axis=1)[:, width - k:]
        top[more] = np.take_along_axis(mat, pick, axis=1)
        top_ids[more] = np.take_along_axis(ids[at], pick, axis=1)
    return top, top_ids


def _hint(ids: np.ndarray, end: int, first: int, s: int, k: int) -> np.ndarray:
    """A previous call's tail scenarios ``ids`` (history return indices; that set ended at return
    ``end``) as k scenarios of the set of ``s`` returns from ``first`` on, per portfolio: those no
    longer in the set, or missing (k grew), are replaced by scenarios new since that call (never
    among the previous ones, so the k stay distinct), else -1 (that row has no hint)."""
    h = ids[:, :k] - first
    if h.shape[1] < k:
        h = np.concatenate([h, np.full((h.shape[0], k - h.shape[1]), -1, dtype=h.dtype)], axis=1)
    bad = (h < 0) | (h >= s)
    if bad.any():
        fresh = np.arange(max(end - first, 0), s)
        rank = np.cumsum(bad, axis=1) - 1
        fill = bad & (rank < fresh.size)
        h[fill] = fresh[rank[fill]]
        h[bad & ~fill] = -1
    return h


def fixed_sets(cfg: VaRConfig) -> frozenset[tuple]:
    """The scenario sets of ``cfg`` fixed by its configuration alone, as definitions that equal
    another config's on every margin run along the same history: the lookback (plain, or filtered
    with its lambda), the floor (plain returns over ``floor_lookback_days``: the same set as a
    plain lookback of that length) and a configured stressed period. Two configs with a common
    definition measure a set in common on every run -- what a caller running them together shares
    (:class:`SharedMeasures`; whether two sets are equal on a run is :meth:`VaRRegime.set_key`'s,
    this only says where to look). The default stressed window moves with the history: not here."""
    common = (cfg.measure, cfg.confidence, cfg.mpor_days, cfg.chunk_accounts)
    out = {(("filtered", cfg.ewma_lambda) if cfg.method == "filtered" else ("plain",)) + (cfg.lookback_days,) + common}
    if cfg.floor_lookback_days:
        out.add(("plain", cfg.floor_lookback_days) + common)
    if cfg.stressed_weight and cfg.stressed_period_days is not None:
        out.add(("period",) + tuple(cfg.stressed_period_days) + common)
    return frozenset(out)


class SharedMeasures:
    """Scenario-set measures handed between VaR regimes that margin the same positions on the same
    market (:meth:`VaRRegime.share_measures`), keyed by what a measure is a function of
    (:meth:`VaRRegime.set_key`) -- the set's definition, never a regime's name. An entry keeps its
    positions and table, so the identities in its key cannot be reused by other objects while it
    is held, and is given out read-only (the regimes only read their measures). The owner empties
    it (:meth:`clear`) when the market or the history moves on: a backtest before each run."""

    __slots__ = ("_entries", "taken", "measured")

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[Positions, InstrumentTable, np.ndarray]] = {}
        self.taken = 0  # measures handed out (a control: 0 when no two regimes share a set)
        self.measured = 0

    def get(self, key: tuple, positions: Positions, table: InstrumentTable) -> np.ndarray | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] is not positions or hit[1] is not table:
            return None
        self.taken += 1
        return hit[2]

    def put(self, key: tuple, positions: Positions, table: InstrumentTable, value: np.ndarray) -> None:
        value.flags.writeable = False
        self._entries[key] = (positions, table, value)
        self.measured += 1

    def clear(self) -> None:
        self._entries.clear()


class VaRRegime(MarginRegime):
    name = "var"

    def __init__(self, table: InstrumentTable, config: VaRConfig | None = None,
                 history: np.ndarray | None = None, row_interval: float = DAY) -> None:
        super().__init__(table)
        self.config = cfg = config or VaRConfig()
        self.name = cfg.regime
        if not row_interval > 0:
            raise ValueError(f"row_interval must be positive seconds, got {row_interval}")
        self.row_interval = float(row_interval)
        mpor = cfg.mpor_days * DAY / row_interval
        if mpor < 1.0 - 1e-9 or abs(mpor - round(mpor)) > 1e-6:
            raise ValueError(f"mpor_days {cfg.mpor_days:g} is {mpor:g} history rows of {row_interval:g} s: "
                             "the margin period of risk must be a whole number (>= 1) of rows")
        self.mpor = int(round(mpor))
        self.lookback = self.rows(cfg.lookback_days)
        self.floor_lookback = None if cfg.floor_lookback_days is None else self.rows(cfg.floor_lookback_days)
        self.stressed_period = (None if cfg.stressed_period_days is None
                                else tuple(int(round(d * DAY / row_interval)) for d in cfg.stressed_period_days))
        self.rev = Revaluer(table)
        self._history = np.zeros((0, len(table.underlyings)))
        self._version = 0
        self._key: tuple | None = None
        self._pnl: dict[str, np.ndarray] = {}
        self._groups: dict[str, np.ndarray] = {}
        # each set's first return (see _scenario_windows); looked up with a measure's set name, or
        # None for a measure of no named set (offset 0)
        self._offsets: dict[str | None, int] = {}
        self._groups_version = -1
        self._windows: dict[str, tuple[int, np.ndarray]] = {}
        self._windows_version = -1
        self._prev_margin: np.ndarray | None = None  # margin at the previous history version
        self._cur_margin: np.ndarray | None = None  # margin at the current history version
        self._prev_released: np.ndarray | None = None
        self._cur_released: np.ndarray | None = None
        self._state_version = -1
        self._stress: bool | None = None
        self._share: SharedMeasures | None = None
        if history is not None:
            self.set_history(history)

    def rows(self, days: float) -> int:
        """History rows in ``days`` of time (at least one)."""
        return max(1, int(round(days * DAY / self.row_interval)))

    # ------------------------------------------------------------------------------- history
    @property
    def history(self) -> np.ndarray:
        return self._history

    def set_history(self, history: np.ndarray) -> None:
        h = np.asarray(history, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != len(self.table.underlyings):
            raise ValueError(f"history must be (rows, {len(self.table.underlyings)}) prices, got {h.shape}")
        if not np.all(np.isfinite(h)) or np.any(h <= 0):
            raise ValueError("history prices must be finite and positive")
        self._history = h.copy()
        self._version += 1

    def update_history(self, rows: np.ndarray) -> None:
        """Append one row (U,) or several rows (n, U) of prices."""
        r = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        self.set_history(np.vstack([self._history, r]) if self._history.size else r)

    def set_stress(self, flag: bool | None) -> None:
        """Force the buffer released (True) or kept (False); None: automatic."""
        self._stress = flag

    def share_measures(self, store: "SharedMeasures | None") -> None:
        """Hand scenario-set measures to and take them from ``store`` (None: stop). For a caller that
        margins the same positions on the same market with several VaR regimes (a backtest's
        regime set): a set both measure is measured by the first and taken by the others
        (:meth:`set_key` says when two sets are the same). The caller empties the store when
        the market or the history moves on."""
        self._share = store

    def reset(self) -> None:
        """Forget the per-account previous margins (buffer state)."""
        self._prev_margin = self._cur_margin = None
        self._prev_released = self._cur_released = None
        self._state_version = -1

    # ----------------------------------------------------------------------------- scenarios
    def _returns(self, prices: np.ndarray) -> np.ndarray:
        cfg = self.config
        if prices.shape[0] <= self.mpor:
            return np.zeros((0, prices.shape[1]))
        if cfg.method == "filtered":
            return filtered_returns(prices, self.mpor, cfg.ewma_lambda)
        return mpor_returns(prices, self.mpor)

    def stressed_window(self) -> tuple[int, int]:
        """[start, end) rows of the stressed period (configured, or the most volatile window)."""
        h = self._history
        if self.stressed_period is not None:
            a, b = self.stressed_period
            return min(a, h.shape[0]), min(b, h.shape[0])
        n = h.shape[0]
        w = min(self.lookback + self.mpor, n)
        if n < 3 or w < 3:
            return 0, n
        d = np.diff(np.log(h), axis=0)
        c1 = np.vstack([np.zeros((1, d.shape[1])), np.cumsum(d, axis=0)])
        c2 = np.vstack([np.zeros((1, d.shape[1])), np.cumsum(d * d, axis=0)])
        m = w - 1  # returns per window
        s1, s2 = c1[m:] - c1[:-m], c2[m:] - c2[:-m]
        var = np.maximum(s2 / m - (s1 / m) ** 2, 0.0)
        start = int(np.argmax(np.sqrt(var).mean(axis=1)))
        return start, start + w

    def scenario_sets(self) -> dict[str, np.ndarray]:
        """Scenario returns (S x U) per use: 'base', and 'stressed' / 'floor' when configured."""
        return {name: r for name, (_, r) in self._scenario_windows().items()}

    def _scenario_windows(self) -> dict[str, tuple[int, np.ndarray]]:
        """Per scenario set: (index of its first scenario among the history's mpor-row returns --
        return j ends at row j + mpor --, its returns): a set's scenarios are consecutive returns.
        Cached per history version (they depend on the history alone)."""
        if self._windows_version != self._version:
            self._windows = self._find_windows()
            self._windows_version = self._version
        return self._windows

    def _find_windows(self) -> dict[str, tuple[int, np.ndarray]]:
        cfg, h, mpor = self.config, self._history, self.mpor
        n = h.shape[0]
        # filtered: filter with the whole history, keep the lookback windows
        out = {"base": (max(0, n - mpor - self.lookback),
                        self._returns(h)[-self.lookback:] if cfg.method == "filtered"
                        else self._returns(h[-(self.lookback + mpor):]))}
        if cfg.stressed_weight:
            a, b = self.stressed_window()
            out["stressed"] = (a, mpor_returns(h[a:b], mpor) if b - a > mpor else np.zeros((0, h.shape[1])))
        if self.floor_lookback:
            seg = h[-(self.floor_lookback + mpor):]
            out["floor"] = (max(0, n - mpor - self.floor_lookback),
                            mpor_returns(seg, mpor) if seg.shape[0] > mpor else np.zeros((0, h.shape[1])))
        return out

    def pnl_matrices(self, market: MarketState) -> dict[str, np.ndarray]:
        """Instruments x scenarios P&L per long lot for each scenario set (cached)."""
        key = (market_key(market), self._version)
        if key != self._key:
            windows = self._scenario_windows()
            self._pnl = self._price(market, windows)
            if self._groups_version != self._version:  # the groups depend on the returns, not the market
                self._groups = {name: scenario_groups(r, group_size(tail_count(r.shape[0], self.config.confidence)))
                                for name, (_, r) in windows.items()}
                self._offsets = {name: first for name, (first, _) in windows.items()}
                self._groups_version = self._version
            self._key = key
        return self._pnl

    def _price(self, market: MarketState, windows: dict[str, tuple[int, np.ndarray]]) -> dict[str, np.ndarray]:
        """Each set's P&L matrix. Plain-return sets are runs of the same history returns and mostly
        overlap (the lookback and the stressed window lie inside the 10-year floor): each stretch
        of returns is priced once and the sets are its columns -- the pricing is elementwise, so
        the same bits as pricing each set alone."""
        u = self.table.underlying_index
        aged = self.mpor * self.row_interval / SECONDS_PER_YEAR  # the MPOR in years
        out = {name: np.zeros((len(self.table), 0)) for name, (_, r) in windows.items() if not r.shape[0]}
        plain = sorted((first, first + r.shape[0], name) for name, (first, r) in windows.items()
                       if r.shape[0] and not (name == "base" and self.config.method == "filtered"))
        if self.config.method == "filtered" and windows["base"][1].shape[0]:
            out["base"] = self.rev.relative(market, windows["base"][1].T[u], years_shift=aged)
        h = self._history
        while plain:  # a stretch: every set overlapping the first one, transitively
            a, b, names = plain[0][0], plain[0][1], []
            while plain and plain[0][0] <= b:
                b = max(b, plain[0][1])
                names.append(plain.pop(0))
            pnl = self.rev.relative(market, mpor_returns(h[a:b + self.mpor], self.mpor).T[u], years_shift=aged)
            for first, end, name in names:
                out[name] = pnl[:, first - a:end - a]
        return {name: out[name] for name in windows}

    def set_key(self, name: str, positions: Positions, market: MarketState) -> tuple:
        """What scenario set ``name``'s measure (:meth:`_measure`) is a function of, on ``market``
        and the current history: two regimes whose keys are equal give it the same bits.

        The measure is the k-th largest (VaR) or the mean of the k largest (ES) of the positions'
        losses -lots x P&L, with the same products and additions whichever search finds them
        (:func:`tail_of`; its grouping and hint only decide where it looks), in blocks of
        ``chunk_accounts``. The P&L is the table's revaluation on the market at the end of the MPOR
        (its length in seconds) of the set's returns, element by element; a plain set's returns are
        those of its history rows (their bytes are in the key), a filtered set's those of the
        whole history filtered with lambda. So: the positions and table (by identity: the store
        holds them), the market, the MPOR, k and the measure, the chunking, the rows."""
        cfg = self.config
        first, r = self._scenario_windows()[name]
        s = r.shape[0]
        if name == "base" and cfg.method == "filtered":
            rows: tuple = ("filtered", cfg.ewma_lambda, s, self._history.tobytes())
        else:
            rows = ("plain", self._history[first:first + s + self.mpor].tobytes())
        return (id(positions), id(self.table), market_key(market), self.mpor, self.mpor * self.row_interval,
                cfg.measure, tail_count(s, cfg.confidence) if s else 0, cfg.chunk_accounts, rows)

    # ---------------------------------------------------------------------------- computation
    def _measure(self, positions: Positions, pnl: np.ndarray, groups: np.ndarray | None = None,
                 name: str | None = None) -> np.ndarray:
        cfg, n = self.config, positions.n_accounts
        out = np.zeros(n)
        s = pnl.shape[1]
        if s == 0:
            return out
        k = tail_count(s, cfg.confidence)
        loss = -pnl
        step = cfg.chunk_accounts
        first = self._offsets.get(name, 0)
        for a in range(0, n, step):  # loop over account blocks (bounded memory), not accounts
            key = ("var_slots", a, step)
            book = positions._cache.get(key)
            if book is None:  # built once per positions object (a backtest reuses it on every run)
                book = positions._cache[key] = LotSlots(positions.dense[a:a + step])
            # the tail scenarios of the last call on these positions (a backtest's previous run):
            # where they still are scenarios of this set they give the search a close lower bound
            # (several regimes sharing measures on one positions keep their own: their sets of the
            # same name may differ)
            memo = ("var_tail", name, a, step) if self._share is None else ("var_tail", name, a, step, id(self))
            last: tuple[np.ndarray, int] | None = positions._cache.get(memo) if name is not None else None
            hint = None if last is None else _hint(*last, first, s, k)
            top, ids = tail_of(book, loss, k, groups, hint, ordered=cfg.measure == "es")
            if ids is not None and name is not None:
                positions._cache[memo] = (ids + first, first + s)
            if top.shape[0] == 0:
                continue  # every account flat: no scenario losses, 0
            # VaR: the k-th largest, the smallest of the k; ES: their mean, largest first (the order
            # of the additions of the plain sort's mean, so the same bits)
            val = top.min(axis=1) if cfg.measure == "var" else top.mean(axis=1)
            # an account with no position has no scenario losses: 0, as the segment path gives
            out[a:a + book.n] = np.where(book.inverse >= 0, np.maximum(val, 0.0)[np.maximum(book.inverse, 0)], 0.0)
        return out

    def components(self, positions: Positions, market: MarketState, update_state: bool = True) -> dict[str, np.ndarray]:
        cfg = self.config
        windows = self._scenario_windows()
        # with a store, the sets are priced only if one of them is not in it (a regime whose sets
        # another has measured prices nothing): empty until then
        mats = self.pnl_matrices(market) if self._share is None else {}
        done: dict[tuple[int, int], np.ndarray] = {}

        def measure(name: str) -> np.ndarray:
            nonlocal mats
            # sets of the same plain returns (all of a short history; the lookback window when it is
            # the most volatile) have the same figures: measured once
            first, r = windows[name]
            same = None if name == "base" and cfg.method == "filtered" else (first, r.shape[0])
            if same is None or same not in done:
                out: np.ndarray | None
                if self._share is None:
                    out = self._measure(positions, mats[name], self._groups[name], name)
                else:  # another regime of the store may have measured this very set
                    key = self.set_key(name, positions, market)
                    out = self._share.get(key, positions, self.table)
                    if out is None:
                        mats = mats or self.pnl_matrices(market)  # priced, it is never empty: "base" is always a set
                        out = self._measure(positions, mats[name], self._groups[name], name)
                        self._share.put(key, positions, self.table, out)
                if same is not None:
                    done[same] = out
                return out
            return done[same]

        comp: dict[str, np.ndarray] = {"base": measure("base")}
        v = comp["base"]
        if "stressed" in windows:
            comp["stressed"] = measure("stressed")
            weight = cfg.stressed_weight or 0.0  # a stressed set exists only with a weight (_scenario_windows)
            v = (1.0 - weight) * v + weight * comp["stressed"]
        comp["weighted"] = v
        margin = v
        if cfg.buffer is not None:
            buffered = (1.0 + cfg.buffer) * v
            if update_state and self._state_version != self._version:
                self._prev_margin, self._prev_released = self._cur_margin, self._cur_released
                self._state_version = self._version
            prev = self._prev_margin if update_state else None
            if prev is None or prev.shape != v.shape:
                margin = buffered
                released = np.zeros(v.shape, dtype=bool)
            else:
                was = self._prev_released if self._prev_released is not None else np.zeros(v.shape, dtype=bool)
                cap = (1.0 + cfg.release_threshold) * prev
                if self._stress is None:
                    start = ~was & (buffered > cap)
                    stay = was & (buffered > prev)
                else:
                    start = np.full(v.shape, bool(self._stress)) & ~was
                    stay = np.full(v.shape, bool(self._stress)) & was
                margin = np.where(start, np.maximum(v, np.minimum(buffered, cap)), buffered)
                margin = np.where(stay, np.maximum(v, np.minimum(prev, buffered)), margin)
                released = start | stay
            comp["buffered"] = margin
            comp["released"] = released.astype(np.float64)
        if "floor" in windows:
            comp["floor"] = measure("floor")
            margin = np.maximum(margin, comp["floor"])
        comp["margin"] = margin
        if update_state and cfg.buffer is not None:
            self._cur_margin = comp["buffered"].copy()
            self._cur_released = comp["released"] > 0
        return comp

    def requirements(self, positions: Positions, market: MarketState) -> Requirements:
        im = self.components(positions, market)["margin"]
        return Requirements(im=im, mm=self.config.mm_ratio * im)

    def requirements_stateless(self, positions: Positions, market: MarketState) -> Requirements:
        """Requirements for a subset of accounts (a pre-trade check, a fill's two parties): the
        buffer state, which belongs to the full set of accounts, is neither read nor advanced."""
        im = self.components(positions, market, update_state=False)["margin"]
        return Requirements(im=im, mm=self.config.mm_ratio * im)

    def breakdown(self, lots: np.ndarray, market: MarketState) -> dict[str, float]:
        """One account's figures; does not touch the buffer state (uses no previous margin)."""
        c = self.components(Positions.of(lots), market, update_state=False)
        im = float(c["margin"][0])
        out = {"im": im, "mm": self.config.mm_ratio * im, "scenarios": float(self.pnl_matrices(market)["base"].shape[1])}
        out.update({k: float(v[0]) for k, v in c.items() if k != "margin"})
        return out

