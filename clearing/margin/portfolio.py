"""Crypto portfolio margin, Deribit's published method (METHODS.md section 4; sources and values
in docs/METHODOLOGY.md, "Portfolio").

Per underlying, the portfolio is revalued in:

- the core table: forward moves -R .. +R in ``price_steps`` steps per side (default -16% .. +16%
  in 4% steps, 9 points) x 3 vol states (unchanged, up, down) = 27 scenarios. Vol shocks depend
  on days to expiry: f = (30 / max(DTE, min_dte))^p, p = ``vega_power_short`` (0.3) when
  DTE < 30 else ``vega_power_long`` (0.13); vol up = max(vol (1 + vol_up f), min_vol_up), vol
  down = max(vol (1 - vol_down f), 0) (defaults vol_up 0.5, min_vol_up 0.5, vol_down 0.25);
- the extended table: tail moves m (-66%, -33%, +50%, +100% ... +500%) at vol up, each counted at
  a fraction ``extended_table_factor`` x R / |m| of its P&L, less the dampener
  (|m| / R - 1) x ``extended_dampener``: loss_m = max(-fraction x P&L_m - dampener_m, 0). A linear
  position loses R per unit in every row of it (never more than the core); short options, whose
  loss grows faster than the move, are what it catches. risk = max(core worst loss, worst loss_m).

Add-ons (per underlying): delta shock, a liquidity charge on large delta only -- with x = |net
delta| x price (Black-76 deltas for options), rate = min(``delta_shock_increment`` x units of
underlying beyond ``delta_shock_threshold``, ``max_delta_shock``), charge = rate x x (zero below
the threshold); roll shock for dated futures: every future's price moves by
+/- max(exp(``roll_shock_rate`` x years to expiry) - 1, ``roll_shock_floor``) x F together
(perpetuals unshocked), charge = worst of the up/down basis moves.

IM = risk + delta shock + roll shock; MM = ``mm_ratio`` (0.8) x IM.

Multi-asset:

- ``cross_asset="sum"``: each underlying separately, summed (no offset across assets).
- ``cross_asset="joint"``: joint scenarios, each asset as the driver: for each underlying d in
  turn, d moves over the full grid and every other underlying u moves by beta x the same move (in
  the extended table no deeper than its worst fall), for three betas -- with the correlation
  (rho(d, u) from ``correlations`` "A/B", default ``correlation``), against it (max(rho - z
  sqrt(1 - rho^2), -1)) and beyond it (min(rho + z sqrt(1 - rho^2), 1)), z = ``decorrelation``
  (2): sqrt(1 - rho^2) is u's conditional standard deviation given d's move (unit vols), so the
  against-scenario moves the assets in opposite directions for rho < z / sqrt(1 + z^2) (0.89).
  The vol state applies to all underlyings together. The core risk is the worst over all 3U x 27
  scenarios (extended likewise). A single-asset account gets exactly its "sum" figure; a hedge
  across assets is credited only as far as the against-scenario allows, and same-direction
  positions get no credit once rho + z sqrt(1 - rho^2) >= 1. Delta and roll shocks stay per
  underlying.

Computation: one instruments x columns matrix per market state (scenario P&L per long lot, the
extended columns pre-scaled by their fraction, plus columns for delta notional, delta units and
roll up/down), built once and cached. The non-zeros are grouped per (account, underlying) in
"sum" mode, per account in "joint" mode, once per Positions object (cached), and each *distinct*
segment (the same instruments and lots) is margined once (``base.segment_reduce_distinct``): its
sums are one sparse product (distinct segments x instruments) @ the matrix, reduced to the
per-segment figures block by block while in cache; the figures are spread back to the segments
and summed per account with ``np.bincount`` -- no loop over accounts. A later call on the same
matrix (the house's changed rows, an account's other states) takes the segments it shares with the
last whole-book call from that call's figures. Every path does the same floating-point operations
per segment, so the requirements are the same to the bit whichever is taken.
"""

from __future__ import annotations

import numpy as np

from sim.core.instruments import InstrumentKind, InstrumentTable, MarketState
from clearing.margin.base import MarginRegime, MarketPath, Positions, Requirements, RowSums, few_segment_sums, \
    put_transposed, segment_reduce_distinct, segments_by_group, slot_products, slot_sums_along, takes_few_path
from clearing.margin.scenarios import Revaluer, days_to_expiry, market_key
from clearing.margin.config import PortfolioConfig


# requirements_along: runs whose P&L matrices are built together, and the size (scenario columns x
# runs x distinct segments) of one reduction block
ALONG_RUNS = 16
ALONG_CELLS = 1 << 16


def _segment_im(core: np.ndarray, ext: np.ndarray, delta: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Per-segment IM, max(core, extended) + delta shock + roll shock, in ``core``'s buffer."""
    np.maximum(core, ext, out=core)
    core += delta
    core += roll
    return core


def _distinct_core(matrix: np.ndarray, n_core: int) -> tuple[np.ndarray, int]:
    """``matrix`` (runs, instruments, columns) without the core columns that repeat an earlier one
    bit for bit on every run and instrument, and how many core columns are left. A repeated column
    gives every segment the same sums, so the worst core loss (a minimum) is the same bits without
    it. In joint mode about a quarter of the core repeats: the zero move once per (driver, beta)
    block, and the "beyond" blocks of different drivers when both betas reach 1 (every underlying
    moving by the full move)."""
    core = matrix[:, :, :n_core].reshape(-1, n_core).T.view(np.int64)  # compared by their bits
    _, first = np.unique(core, axis=0, return_index=True)
    if first.size == n_core:
        return matrix, n_core
    keep = np.concatenate([np.sort(first), np.arange(n_core, matrix.shape[2])])
    return np.ascontiguousarray(matrix[:, :, keep]), int(first.size)


class PortfolioRegime(MarginRegime):
    name = "portfolio"
    row_separable = True  # per account: its segments' scenario losses, summed

    def __init__(self, table: InstrumentTable, config: PortfolioConfig | None = None) -> None:
        super().__init__(table)
        self.config = cfg = config or PortfolioConfig()
        self.joint = cfg.cross_asset == "joint"
        self.name = "portfolio_joint" if self.joint else "portfolio"
        self.rev = Revaluer(table)
        self.n_under = U = len(table.underlyings)
        self.underlying = table.underlying_index.astype(np.int64)
        self.moves = np.linspace(-cfg.price_range, cfg.price_range, 2 * cfg.price_steps + 1)
        self.extended = np.asarray(cfg.extended_moves, dtype=np.float64)
        self.dtype = np.dtype(cfg.dtype)
        corr = np.full((U, U), cfg.correlation)
        np.fill_diagonal(corr, 1.0)
        idx = {u: k for k, u in enumerate(table.underlyings)}
        for key, rho in cfg.correlations.items():
            a, b = key.split("/")
            if a in idx and b in idx:
                corr[idx[a], idx[b]] = corr[idx[b], idx[a]] = rho
        self.correlation = corr
        # joint mode: the other underlyings move with, against and beyond the correlation
        spread = cfg.decorrelation * np.sqrt(np.maximum(1.0 - corr**2, 0.0))
        self.betas = [corr, np.maximum(corr - spread, -1.0), np.minimum(corr + spread, 1.0)]
        for beta in self.betas:
            np.fill_diagonal(beta, 1.0)
        n_core, n_ext = 3 * self.moves.size, self.extended.size
        blocks = U * len(self.betas) if self.joint else 1
        self.n_core, self.n_ext = n_core * blocks, n_ext * blocks
        # the extended table's fraction per move and its dampener (quote units) per column
        r = cfg.price_range
        self.ext_fraction = cfg.extended_table_factor * r / np.abs(self.extended)
        self.floor_move = min(-r, float(self.extended.min())) if self.extended.size else -r
        self.ext_dampener = np.tile((np.maximum(np.abs(self.extended) / r, 1.0) - 1.0) * cfg.extended_dampener,
                                    blocks)[:, None]
        # column layout: core | extended | delta notional | delta units (one each per underlying in
        # joint mode, else one) | roll up/down
        self.n_delta = U if self.joint else 1
        self.n_roll = 2 * U if self.joint else 2
        self._key: tuple | None = None
        # the P&L matrix and its transpose, of the market state ``_key``: set by pnl_matrix with the
        # key (no key matches before it), and read only after a call of it
        self._matrix: np.ndarray
        self._matrix_t: np.ndarray
        self._workspace: dict = {}
        if self.joint:
            self._groups, self._n_groups = np.zeros(len(table), dtype=np.int64), 1
        else:
            self._groups, self._n_groups = self.underlying, U

    # ---------------------------------------------------------------------------- the P&L matrix
    def vol_shocks(self, market: MarketState | MarketPath) -> tuple[np.ndarray, np.ndarray]:
        """(vol up, vol down) per instrument under the DTE-dependent shocks."""
        cfg = self.config
        vols = np.asarray(market.vols, dtype=np.float64)
        dte = np.maximum(days_to_expiry(self.table, market.now), cfg.min_dte_days)
        power = np.where(dte < cfg.vega_power_switch_days, cfg.vega_power_short, cfg.vega_power_long)
        f = (30.0 / dte) ** power
        up = np.maximum(vols * (1.0 + cfg.vol_up * f), cfg.min_vol_up)
        down = np.maximum(vols * (1.0 - cfg.vol_down * f), 0.0)
        return up, down

    def _scenario_pnl(self, market: MarketState | MarketPath) -> tuple[np.ndarray, np.ndarray]:
        """(core I x 27 or I x 3U*27, extended I x E or I x 3U*E, scaled by its fractions).

        In joint mode an instrument's move under driver d and beta matrix B is B[d, its
        underlying] x the driver's move, no deeper than the extended table's worst fall (a +500%
        tail turned against the driver is a -66% fall, not a negative price). Core columns are move-major within a vol state: unchanged (9),
        up (9), down (9).
        """
        up, down = self.vol_shocks(market)
        vols = np.asarray(market.vols, dtype=np.float64)
        n = len(self.table)
        drivers = [(d, b) for d in range(self.n_under) for b in self.betas] if self.joint else [(None, None)]
        core_blocks, ext_blocks = [], []
        for d, betas in drivers:
            # (None, None): the one driver outside joint mode; testing the matrix, not d, shows the
            # type checker that it is one below
            beta = np.ones(n) if betas is None else betas[d, self.underlying]
            m = beta[:, None] * self.moves[None, :]
            mv = np.concatenate([m, m, m], axis=1)
            vl = np.concatenate([np.repeat(vols[..., :, None], m.shape[1], -1),
                                 np.repeat(up[..., :, None], m.shape[1], -1),
                                 np.repeat(down[..., :, None], m.shape[1], -1)], axis=-1)
            core_blocks.append(self.rev.relative(market, mv, vol_level=vl))
            e = np.maximum(beta[:, None] * self.extended[None, :], self.floor_move)
            ext = self.rev.relative(market, e, vol_level=np.repeat(up[..., :, None], e.shape[1], -1))
            ext_blocks.append(ext * self.ext_fraction[None, :])
        return np.concatenate(core_blocks, axis=-1), np.concatenate(ext_blocks, axis=-1)

    def pnl_matrix(self, market: MarketState) -> np.ndarray:
        """Instruments x columns: core scenarios | extended (scaled) | delta notional | delta units |
        roll up/down.

        Built once per market state (cached on a cheap key of the state)."""
        key = market_key(market)
        if key == self._key:
            return self._matrix
        self._matrix = self._build_matrix(market)
        self._matrix_t = np.ascontiguousarray(self._matrix.T)
        self._key = key
        return self._matrix

    def _build_matrix(self, market: MarketState | MarketPath) -> np.ndarray:
        """:meth:`pnl_matrix` uncached; for a :class:`MarketPath` (runs, instruments, columns)."""
        t, cfg, n = self.table, self.config, len(self.table)
        core, ext = self._scenario_pnl(market)
        price = np.asarray(market.underlying_prices, dtype=np.float64)[..., self.underlying]
        delta_units = self.rev.deltas(market)
        delta_notional = delta_units * price
        fwd, years, _ = self.rev.base(market)
        dated = t.kind == InstrumentKind.FUTURE
        move = np.maximum(np.expm1(cfg.roll_shock_rate * np.where(dated, years, 0.0)), cfg.roll_shock_floor)
        shift = np.where(dated, move * fwd * t.contract_units, 0.0)
        if self.joint:
            onehot = np.zeros((n, self.n_under))
            onehot[np.arange(n), self.underlying] = 1.0
            delta_cols = np.concatenate([onehot * delta_notional[..., None], onehot * delta_units[..., None]], axis=-1)
            roll_cols = np.concatenate([onehot * shift[..., None], -onehot * shift[..., None]], axis=-1)
        else:
            delta_cols = np.stack([delta_notional, delta_units], axis=-1)
            roll_cols = np.stack([shift, -shift], axis=-1)
        return np.ascontiguousarray(np.concatenate([core, ext, delta_cols, roll_cols], axis=-1), dtype=self.dtype)

    # ----------------------------------------------------------------------------- requirements
    def _ext_buffer(self, like: np.ndarray) -> np.ndarray:
        buf = self._workspace.get("ext")
        if buf is None or buf.shape[0] != like.shape[0] or buf.shape[1] < like.shape[1] or buf.dtype != like.dtype:
            buf = np.empty(like.shape, dtype=like.dtype)
            self._workspace["ext"] = buf
        return buf[:, : like.shape[1]]

    def _reduce(self, summed_t: np.ndarray, n_core: int | None = None) -> tuple[np.ndarray, ...]:
        """Per segment (column of ``summed_t``, K x S): core loss, extended loss, delta shock,
        roll shock (float64). ``n_core``: the core columns present (``requirements_along`` drops
        repeated ones; default all)."""
        cfg = self.config
        a = self.n_core if n_core is None else n_core
        b = a + self.n_ext
        c = b + self.n_delta
        e = c + self.n_delta
        # copy=False: no second copy in the working precision float64 (the values are the same)
        core = np.maximum(-summed_t[:a].min(axis=0), 0.0).astype(np.float64, copy=False)
        if self.n_ext and cfg.extended_table_factor:
            # the same operations as -x - dampener, in one reused buffer instead of two temporaries
            ext_t = self._ext_buffer(summed_t[a:b])
            np.negative(summed_t[a:b], out=ext_t)
            np.subtract(ext_t, self.ext_dampener, out=ext_t)
            ext = np.maximum(ext_t.max(axis=0), 0.0).astype(np.float64, copy=False)
        else:
            ext = np.zeros_like(core)
        # delta shock: rate = increment x units beyond the threshold (units x excess notional /
        # notional), capped; charged on the whole delta notional
        notional = np.abs(summed_t[b:c]).astype(np.float64, copy=False)
        units = np.abs(summed_t[c:e]).astype(np.float64, copy=False)
        excess = np.maximum(notional - cfg.delta_shock_threshold, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            beyond = np.where(excess > 0, units * excess / notional, 0.0)
        rate = np.minimum(cfg.delta_shock_increment * beyond, cfg.max_delta_shock)
        delta = (rate * notional).sum(axis=0)
        c = e
        if self.joint:
            worst = np.minimum(summed_t[c:c + self.n_under], summed_t[c + self.n_under:])
            roll = np.maximum(-worst, 0.0).sum(axis=0, dtype=np.float64)
        else:
            roll = np.maximum(-summed_t[c:].min(axis=0), 0.0).astype(np.float64)
        return core, ext, delta, roll

    def _segments(self, positions: Positions, market: MarketState
                  ) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
        """Each segment's account, the index of each among the distinct ones (None: every one is its
        own) and per distinct segment (core, extended, delta shock, roll shock)."""
        self.pnl_matrix(market)
        if takes_few_path(positions, self._matrix):
            # a pre-trade check's states of one account, a fill's two parties: the sparse product's
            # additions entry by entry, in the segments' order (so the per-account sums match too)
            rows, _, summed_t = few_segment_sums(positions, self._matrix, self._groups, from_zero=True)
            return rows, None, list(self._reduce(summed_t))
        seg, inverse, figures = segment_reduce_distinct(positions, self._matrix_t, self._groups, self._n_groups,
                                                        self._reduce, 4, workspace=self._workspace)
        return seg.row, inverse, figures

    def components(self, positions: Positions, market: MarketState) -> dict[str, np.ndarray]:
        """Per-account (A,) arrays: core, extended, risk, delta_shock, roll_shock, im."""
        n = positions.n_accounts
        rows, inverse, (core, ext, delta, roll) = self._segments(positions, market)
        risk = np.maximum(core, ext)
        out = {}
        for name, v in (("core", core), ("extended", ext), ("risk", risk), ("delta_shock", delta),
                        ("roll_shock", roll), ("im", risk + delta + roll)):
            out[name] = np.bincount(rows, weights=v if inverse is None else v[inverse], minlength=n)
        return out

    def requirements(self, positions: Positions, market: MarketState) -> Requirements:
        n = positions.n_accounts
        rows, inverse, (core, ext, delta, roll) = self._segments(positions, market)
        # per distinct segment (element-wise, so the same figures as per segment), then spread
        core = _segment_im(core, ext, delta, roll)
        im = np.bincount(rows, weights=core if inverse is None else core[inverse], minlength=n)
        return Requirements(im=im, mm=self.config.mm_ratio * im)

    def requirements_along(self, positions: Positions, path: MarketPath, which: str = "im") -> np.ndarray:
        """:meth:`requirements` on every run of ``path``, to the bit, without a call per run.

        The segments, their distinct set and the per-account spread are found once; the P&L
        matrices of a chunk of runs are built together (:meth:`_build_matrix`, element-wise over
        the runs axis), each distinct segment's sums are the sparse product's additions
        (``base.slot_sums_along``) and :meth:`_reduce` reduces them a (K, segments x runs) block at
        a time -- column by column, as on one run's block."""
        n, runs = positions.n_accounts, len(path)
        seg = segments_by_group(positions, self._groups, self._n_groups)
        unique, inverse = seg.distinct()
        # np.bincount(seg.row, weights=figures[inverse], minlength=n) per run
        spread = RowSums(seg.row, n, source=inverse)
        out = np.empty((runs, n))
        for a in range(0, runs, ALONG_RUNS):
            b = min(runs, a + ALONG_RUNS)
            matrix, n_core = _distinct_core(self._build_matrix(path.rows(a, b)), self.n_core)
            k = matrix.shape[2]
            products = slot_products(unique, matrix)
            first = products + 0.0  # the sparse product's sums start from 0.0 (see _reduce_sparse)
            step = max(1, ALONG_CELLS // (k * (b - a)))  # distinct segments per reduction block
            figures = np.empty((unique.n, b - a))
            for lo in range(0, unique.n, step):
                hi = min(unique.n, lo + step)
                sums = slot_sums_along(unique, products, lo, hi, first)
                core = _segment_im(*self._reduce(sums.reshape(k, -1), n_core))  # as requirements() does
                figures[lo:hi] = core.reshape(hi - lo, b - a)
            im = spread.transposed(figures)  # (accounts, runs)
            put_transposed(out[a:b], im if which == "im" else self.config.mm_ratio * im)
        return out

    def breakdown(self, lots: np.ndarray, market: MarketState) -> dict[str, float]:
        c = self.components(Positions.of(lots), market)
        im = float(c["im"][0])
        out = {"im": im, "mm": self.config.mm_ratio * im}
        out.update({k: float(v[0]) for k, v in c.items() if k != "im"})
        if not self.joint:
            lots = np.asarray(lots, dtype=np.float64)
            for k, u in enumerate(self.table.underlyings):
                sel = np.where(self.underlying == k, lots, 0.0)
                if sel.any():
                    out[f"im[{u}]"] = float(self.components(Positions.of(sel), market)["im"][0])
        return out
