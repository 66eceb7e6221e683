"""TIMS / FINRA Rule 4210(g)-style portfolio margin (METHODS.md section 3).

Class group = all instruments on one underlying. Each class group is revalued at ``points``
equidistant price points across [-down, +up] (half below, half above the current price, zero
excluded: the default +/-15% in 10 points is -15, -12, -9, -6, -3, +3, ..., +15 %), vol unchanged.
Inside a class group gains and losses offset 100% (the group's P&L per point is the plain sum).
Across the class groups of one product group (``product_groups``) offsets are partial: at each
point, a group's gain counts at ``offset`` and a loss in full,
``pg_pnl(point) = sum_g [min(pnl_g, 0) + offset x max(pnl_g, 0)]``; points are aligned (every
group at its k-th down/up point together). Underlyings outside any product group are their own
product group.

Requirement per product group = max(worst loss over the points, minimum), minimum =
``minimum_per_contract`` x contract_units (the multiplier) x |lots| summed over its positions
(FINRA: $0.375 per contract multiplier). Account requirement = sum over product groups;
MM = ``mm_ratio`` x IM (FINRA: one requirement, so 1.0).
"""

from __future__ import annotations

import numpy as np

from sim.core.instruments import InstrumentTable, MarketState
from clearing.margin.base import MarginRegime, MarketPath, Positions, Requirements, few_segment_sums, \
    put_transposed, segment_sums_t, segments_by_group, slot_products, slot_sums_along, takes_few_path
from clearing.margin.scenarios import Revaluer, market_key
from clearing.margin.config import TimsConfig


ALONG_RUNS = 64  # requirements_along: runs whose P&L matrices are built and summed together


class TimsRegime(MarginRegime):
    name = "tims"
    row_separable = True  # per account: its own scenario losses and spreads

    def __init__(self, table: InstrumentTable, config: TimsConfig | None = None) -> None:
        super().__init__(table)
        self.config = cfg = config or TimsConfig()
        self.rev = Revaluer(table)
        unders = table.underlyings
        self.n_class = len(unders)
        self.class_group = table.underlying_index.astype(np.int64)
        half = cfg.points // 2
        steps = np.arange(1, half + 1) / half
        self.moves = np.empty((self.n_class, cfg.points))
        for c, u in enumerate(unders):
            r = cfg.range_by_underlying.get(u)
            up, down = (r.up, r.down) if r is not None else (cfg.up, cfg.down)
            self.moves[c] = np.concatenate((-down * steps[::-1], up * steps))
        # product groups
        pg_of: dict[str, int] = {}
        self.pg_names: list[str] = []
        offsets: list[float] = []
        for name, pg in cfg.product_groups.items():
            members = [u for u in pg.underlyings if u in unders]
            if not members:
                continue
            for u in members:
                pg_of[u] = len(self.pg_names)
            self.pg_names.append(name)
            offsets.append(pg.offset)
        for u in unders:
            if u not in pg_of:
                pg_of[u] = len(self.pg_names)
                self.pg_names.append(u)
                offsets.append(1.0)
        self.n_pg = len(self.pg_names)
        self.class_pg = np.array([pg_of[u] for u in unders], dtype=np.int64)
        self.class_offset = np.array(offsets)[self.class_pg]
        self.minimum = cfg.minimum_per_contract * table.contract_units
        self._singletons = all(int(np.count_nonzero(self.class_pg == g)) == 1 for g in range(self.n_pg))
        self._key: tuple | None = None
        # the P&L matrix and its transpose, of the market state ``_key``: set by pnl_matrix with the
        # key (no key matches before it), and read only after a call of it
        self._pnl: np.ndarray
        self._pnl_t: np.ndarray
        self._workspace: dict = {}

    def pnl_matrix(self, market: MarketState) -> np.ndarray:
        """Instruments x points P&L per long lot (cached per market state)."""
        key = market_key(market)
        if key != self._key:
            self._pnl = self.rev.relative(market, self.moves[self.class_group])
            self._pnl_t = np.ascontiguousarray(self._pnl.T)
            self._key = key
        return self._pnl

    def components(self, positions: Positions, market: MarketState) -> dict[str, np.ndarray]:
        n, P, G = positions.n_accounts, self.config.points, self.n_pg
        self.pnl_matrix(market)
        if takes_few_path(positions, self._pnl):
            # a pre-trade check's states of one account: the same sums entry by entry, in the
            # segments' order, without the segment machinery's fixed costs
            rows, groups, s_t = few_segment_sums(positions, self._pnl, self.class_group, from_zero=False)
        else:
            seg, s_t = segment_sums_t(positions, self._pnl_t, self.class_group, self.n_class, self._workspace)
            rows, groups = seg.row, seg.group
        worst = np.zeros((n, G))
        if rows.size:
            pg = self.class_pg[groups]
            if self._singletons:  # every product group is one class group: no cross-group offset
                worst[rows, pg] = np.maximum(-s_t.min(axis=0), 0.0)
            else:
                off = self.class_offset[groups]
                adj = np.minimum(s_t, 0.0) + off * np.maximum(s_t, 0.0)  # (P, segments)
                key = rows * G + pg
                pg_pnl = np.empty((P, n * G))
                for k in range(P):  # loop over valuation points, not accounts
                    pg_pnl[k] = np.bincount(key, weights=adj[k], minlength=n * G)
                worst = np.maximum(-pg_pnl.min(axis=0), 0.0).reshape(n, G)
        minimum = self._minimum(positions)
        req = np.maximum(worst, minimum)
        return {"worst": worst, "minimum": minimum, "requirement": req, "total": req.sum(axis=-1)}

    def _minimum(self, positions: Positions) -> np.ndarray:
        """(A, product groups) minimum charge: it depends on the positions alone."""
        n, G = positions.n_accounts, self.n_pg
        _, cols, lots = positions.csr()
        rows = positions.rows()
        return np.bincount(rows * G + self.class_pg[self.class_group[cols]],
                           weights=np.abs(lots) * self.minimum[cols], minlength=n * G).reshape(n, G)

    def requirements_along(self, positions: Positions, path: MarketPath, which: str = "im") -> np.ndarray:
        """:meth:`requirements` on every run of ``path``, to the bit, without a call per run: the
        minimum and the segments' distinct set once, the P&L matrices of a chunk of runs together,
        the distinct segments' sums with the per-slot arithmetic of ``segment_sums_t``
        (``base.slot_sums_along``) and the same element-wise steps after it. Product groups of
        several class groups (offsets across them) go run by run."""
        if not self._singletons:
            return super().requirements_along(positions, path, which)
        n, runs = positions.n_accounts, len(path)
        seg = segments_by_group(positions, self.class_group, self.n_class)
        unique, inverse = seg.distinct()
        minimum = self._minimum(positions)
        at = seg.row * self.n_pg + self.class_pg[seg.group]
        out = np.empty((runs, n))
        moves = self.moves[self.class_group]
        for a in range(0, runs, ALONG_RUNS):
            b = min(runs, a + ALONG_RUNS)
            sums = slot_sums_along(unique, slot_products(unique, self.rev.relative(path.rows(a, b), moves)))
            w = np.maximum(-sums.min(axis=0), 0.0)  # (distinct segments, runs)
            worst_t = np.zeros((n * self.n_pg, b - a))  # laid out (account x product group, run)
            worst_t[at] = w if inverse is None else w[inverse]
            worst = np.empty((b - a, n * self.n_pg))
            put_transposed(worst, worst_t)
            # as components(): (accounts, product groups) per run, summed over its last axis
            total = np.maximum(worst.reshape(b - a, n, self.n_pg), minimum).sum(axis=-1)
            out[a:b] = total if which == "im" else self.config.mm_ratio * total
        return out

    def requirements(self, positions: Positions, market: MarketState) -> Requirements:
        total = self.components(positions, market)["total"]
        return Requirements(im=total, mm=self.config.mm_ratio * total)

    def breakdown(self, lots: np.ndarray, market: MarketState) -> dict[str, float]:
        c = self.components(Positions.of(lots), market)
        total = float(c["total"][0])
        out = {"im": total, "mm": self.config.mm_ratio * total, "worst_loss": float(c["worst"][0].sum()),
               "minimum": float(c["minimum"][0].sum())}
        for k, name in enumerate(self.pg_names):
            if c["requirement"][0, k]:
                out[f"requirement[{name}]"] = float(c["requirement"][0, k])
        return out
