"""SPAN-style scenario margin (CME), METHODS.md section 2.

Risk arrays: for each instrument, the P&L of one long lot (PROFIT convention, + = gain) in the 16
CME scenarios, in CME order::

    1 (0, vol up)   2 (0, vol down)   3 (+1/3, up)  4 (+1/3, down)  5 (-1/3, up)  6 (-1/3, down)
    7 (+2/3, up)    8 (+2/3, down)    9 (-2/3, up) 10 (-2/3, down) 11 (+3/3, up) 12 (+3/3, down)
    13 (-3/3, up)  14 (-3/3, down)   15 (+extreme, vol unchanged) x cover  16 (-extreme) x cover

Built from the pricing model (``scenarios.Revaluer``) with the price scan range (by default
z(confidence) x vol x sqrt(MPOR days / 365) of the forward, the vol held from the first valuation;
or a configured fraction of the forward, or an absolute price move), vol scan range (relative or absolute), extreme
multiple and cover fraction -- or supplied per instrument (``risk_arrays``, by symbol or index),
as a CCP's risk-parameter file provides them; supplied arrays replace the model's.

Per account and combined commodity (= underlying):

- scan risk = max(0, max over scenarios of -sum(lots x array));
- intra-commodity spread charge = spreads x charge, where the commodity's net delta per expiry
  (perpetual = its own expiry; an option counts in the expiry of its forward instrument, as SPAN
  puts an option's delta in its underlying future's month) is split into long and short expiries and
  spreads = min(sum of long-expiry deltas, sum of short-expiry deltas), in lot-equivalents of the
  commodity's reference contract (its first perpetual/future); charge per spread =
  ``intra_spread_charge`` (+ ``intra_spread_rate`` x the reference lot's notional);
- inter-commodity credit (CME): for each configured pair in order, with the legs' remaining net
  deltas of opposite sign, spreads = min(|delta_a| / ratio_a, |delta_b| / ratio_b), credit =
  credit_rate x spreads x (ratio_a x WFPR_a + ratio_b x WFPR_b), WFPR = scan risk / |net delta|
  (the outright margin per delta); the deltas used are consumed;
- commodity risk = max(scan + intra - credit, short option minimum), short option minimum =
  sum over short option lots of (``short_option_minimum`` + ``short_option_minimum_rate`` x
  forward x contract_units).

SPAN requirement = sum over commodities. Net option value NOV = sum over options of lots x mark x
contract_units (long > 0). Convention: clearsim compares requirements with mark-to-market equity,
which already includes option values, so by default NOV is reported but not netted
(``net_option_value=False``); with ``net_option_value=True`` (CME's cash form, for collateral that
excludes option value) the requirement is max(multiplier x SPAN - NOV, 0): long option value
reduces it, short option value increases it.

MM = ``mm_multiplier`` x SPAN (default 1.0: CME maintenance is the SPAN figure), IM =
``im_multiplier`` x SPAN (default 1.1: CME initial for speculators).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from sim.core.instruments import InstrumentKind, InstrumentTable, MarketState
from clearing.margin.base import MarginRegime, MarketPath, Positions, Requirements, RowSums, \
    put_transposed, segments_by_group, slot_products, slot_sums_along, worst_loss_per_group
from clearing.margin.scenarios import DAYS_PER_YEAR, Revaluer, market_key
from clearing.margin.config import SpanConfig

# Price-move fraction of the scan range and vol direction per scenario (extremes: multiple set later).
_PRICE = np.array([0, 0, 1, 1, -1, -1, 2, 2, -2, -2, 3, 3, -3, -3, 0, 0], dtype=np.float64) / 3.0
_VOL = np.array([1, -1] * 7 + [0, 0], dtype=np.float64)
SCENARIO_LABELS = (
    "0/up", "0/down", "+1/3/up", "+1/3/down", "-1/3/up", "-1/3/down", "+2/3/up", "+2/3/down",
    "-2/3/up", "-2/3/down", "+3/3/up", "+3/3/down", "-3/3/up", "-3/3/down", "+extreme", "-extreme",
)


ALONG_RUNS = 64  # requirements_along: runs whose market arrays are built and summed together


class SpanRegime(MarginRegime):
    name = "span"
    row_separable = True  # per account: its own scenario losses and spreads

    def __init__(self, table: InstrumentTable, config: SpanConfig | None = None,
                 risk_arrays: dict | None = None, risk_array_convention: str | None = None,
                 deltas: dict | None = None) -> None:
        super().__init__(table)
        self.config = cfg = config or SpanConfig()
        self.rev = Revaluer(table)
        n, unders = len(table), table.underlyings
        self.n_commodities = len(unders)
        self.commodity = table.underlying_index.astype(np.int64)
        sym_index = {ins.symbol: ins.id for ins in table.instruments}

        def resolve(key: int | np.integer | str) -> int:
            if isinstance(key, (int, np.integer)):
                if not 0 <= int(key) < n:
                    raise KeyError(f"risk array for unknown instrument index {key}")
                return int(key)
            if key not in sym_index:
                raise KeyError(f"risk array for unknown instrument {key!r}")
            return sym_index[key]

        # external arrays (config first, constructor argument overrides), stored as profit
        self.external: dict[int, np.ndarray] = {}
        for source, conv in ((cfg.risk_arrays, cfg.risk_array_convention),
                             (risk_arrays or {}, risk_array_convention or cfg.risk_array_convention)):
            for key, arr in source.items():
                a = np.asarray(arr, dtype=np.float64)
                if a.shape != (16,):
                    raise ValueError(f"risk array for {key!r} must have 16 values, got shape {a.shape}")
                self.external[resolve(key)] = a if conv == "profit" else -a
        self._ext_idx = np.array(sorted(self.external), dtype=np.int64)
        self._ext_arr = (np.stack([self.external[i] for i in self._ext_idx]) if self._ext_idx.size
                         else np.zeros((0, 16)))
        self.supplied_deltas = {resolve(k): float(v) for k, v in {**cfg.deltas, **(deltas or {})}.items()}

        # per-commodity parameters
        if cfg.price_scan_mode != "volatility":
            self.price_scan = np.array([cfg.price_scan_by_underlying.get(u, cfg.price_scan or np.nan) for u in unders])
            if np.isnan(self.price_scan).any():
                raise ValueError(f"span: no absolute price_scan for {[u for u, p in zip(unders, self.price_scan) if np.isnan(p)]}")
        else:  # set from the vols at the first valuation
            self.price_scan = np.full(len(unders), np.nan)
            self._scan_vol = np.array([cfg.scan_vol_by_underlying.get(u, np.nan) for u in unders])
            self._scan_z = float(NormalDist().inv_cdf(cfg.scan_confidence))
        self.vol_scan = np.array([cfg.vol_scan_by_underlying.get(u, cfg.vol_scan) for u in unders])
        self.intra_abs = np.array([cfg.intra_spread_charge_by_underlying.get(u, cfg.intra_spread_charge)
                                   for u in unders])
        # reference contract per commodity: first linear instrument, else the first instrument
        self.ref = np.zeros(self.n_commodities, dtype=np.int64)
        for c in range(self.n_commodities):
            members = np.flatnonzero(self.commodity == c)
            linear = members[table.kind[members] != InstrumentKind.OPTION]
            self.ref[c] = linear[0] if linear.size else members[0]
        self.ref_units = table.contract_units[self.ref]
        # expiry tiers: one per (commodity, expiry); an option's delta sits in the tier of its
        # forward instrument (as SPAN assigns an option to its underlying future's month)
        tier_expiry = table.expiry.copy()
        has_src = table.is_option & (self.rev.source >= 0)
        tier_expiry[has_src] = table.expiry[self.rev.source[has_src]]
        pairs = list(zip(self.commodity.tolist(), tier_expiry.tolist()))
        uniq = list(dict.fromkeys(pairs))
        where = {p: k for k, p in enumerate(uniq)}
        self.tier = np.array([where[p] for p in pairs], dtype=np.int64)
        self.n_tiers = len(uniq)
        self.tier_commodity = np.array([p[0] for p in uniq], dtype=np.int64)
        self._tier_to_commodity = np.zeros((self.n_tiers, self.n_commodities))
        self._tier_to_commodity[np.arange(self.n_tiers), self.tier_commodity] = 1.0
        # inter-commodity pairs present in this table
        cidx = {u: k for k, u in enumerate(unders)}
        self.pairs = [(cidx[p.leg_a], cidx[p.leg_b], p.ratio_a, p.ratio_b, p.credit_rate, p.opposite)
                      for p in cfg.inter_commodity if p.leg_a in cidx and p.leg_b in cidx]
        self._cache_key: tuple | None = None
        self._cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------------- per-market data
    def scan_ranges(self, market: MarketState | MarketPath) -> np.ndarray:
        """Price scan range per commodity (fraction of the forward, or absolute price units).

        In ``volatility`` mode the first call fixes it from ``scan_vol_by_underlying`` or the
        market's ATM vols: z x vol x sqrt(MPOR days / 365). A :class:`MarketPath` comes here only
        once it is fixed (:meth:`requirements_along` fixes it on its first run first)."""
        if np.isnan(self.price_scan).any():
            cfg = self.config
            vols = np.where(np.isnan(self._scan_vol), np.asarray(market.atm_vols, dtype=np.float64), self._scan_vol)
            self.price_scan = self._scan_z * vols * np.sqrt(cfg.margin_period_of_risk_days / DAYS_PER_YEAR)
        return self.price_scan

    def _scan_abs(self, market: MarketState | MarketPath) -> np.ndarray:
        """Absolute price scan range per instrument (in forward price units)."""
        fwd, _, _ = self.rev.base(market)
        psr = self.scan_ranges(market)[self.commodity]
        return psr if self.config.price_scan_mode == "absolute" else fwd * psr

    def model_risk_arrays(self, market: MarketState | MarketPath) -> np.ndarray:
        """Risk arrays from the pricing model, I x 16, profit per long lot (cover applied)."""
        cfg = self.config
        fwd, _, vols = self.rev.base(market)
        frac = _PRICE.copy()
        frac[14], frac[15] = cfg.extreme_multiple, -cfg.extreme_multiple
        new_fwd = fwd[..., :, None] + self._scan_abs(market)[..., :, None] * frac[None, :]
        vsr = self.vol_scan[self.commodity][:, None]
        if cfg.vol_scan_mode == "relative":
            new_vol = vols[..., :, None] * (1.0 + vsr * _VOL[None, :])
        else:
            new_vol = vols[..., :, None] + vsr * _VOL[None, :]
        new_vol = np.maximum(new_vol, 0.0)
        pnl = self.rev.pnl(market, new_fwd, new_vol)
        pnl[..., 14:] *= cfg.cover_fraction
        return pnl

    def _prepare(self, market: MarketState) -> dict[str, np.ndarray]:
        key = market_key(market)
        if key == self._cache_key:
            return self._cache
        self._cache = self._market_arrays(market)
        self._cache_key = key
        return self._cache

    def _market_arrays(self, market: MarketState | MarketPath) -> dict[str, np.ndarray]:
        """:meth:`_prepare` uncached; for a :class:`MarketPath` each array has a leading runs axis."""
        t = self.table
        arrays = self.model_risk_arrays(market)
        if self._ext_idx.size:
            arrays[..., self._ext_idx, :] = self._ext_arr
        delta_units = self.rev.deltas(market)
        # options with a supplied array but no model-consistent delta: estimate from the array
        scan_abs = self._scan_abs(market)
        for i in self._ext_idx:
            if t.is_option[i]:
                a = self.external[int(i)]
                delta_units[..., i] = ((a[2] + a[3]) - (a[4] + a[5])) / 2.0 / (2.0 * scan_abs[..., i] / 3.0)
        for i, d in self.supplied_deltas.items():
            delta_units[..., i] = d * self.ref_units[self.commodity[i]]
        fwd, _, _ = self.rev.base(market)
        som = np.where(t.is_option, self.config.short_option_minimum
                       + self.config.short_option_minimum_rate * fwd * t.contract_units, 0.0)
        ref_notional = fwd[..., self.ref] * self.ref_units
        return {
            "arrays": arrays,
            "delta_ref": delta_units / self.ref_units[self.commodity],
            "value": self.rev.values(market),
            "som": som,
            "intra_charge": self.intra_abs + self.config.intra_spread_rate * ref_notional,
        }

    def risk_arrays(self, market: MarketState) -> np.ndarray:
        """I x 16 risk arrays in use (profit convention, per long lot)."""
        return self._prepare(market)["arrays"].copy()

    # ------------------------------------------------------------------------------ computation
    def components(self, positions: Positions, market: MarketState) -> dict[str, np.ndarray]:
        """Per-account components (each an (A,) array, or (A, C) where noted)."""
        p = self._prepare(market)
        n, C, T = positions.n_accounts, self.n_commodities, self.n_tiers
        scan = worst_loss_per_group(positions, p["arrays"], self.commodity, C)  # (A, C)
        _, cols, lots = positions.csr()
        rows = positions.rows()
        tier_delta = np.bincount(rows * T + self.tier[cols], weights=lots * p["delta_ref"][cols],
                                 minlength=n * T).reshape(n, T)
        short_lots = np.maximum(-lots, 0.0)
        som = np.bincount(rows * C + self.commodity[cols], weights=short_lots * p["som"][cols],
                          minlength=n * C).reshape(n, C)
        nov = np.bincount(rows, weights=lots * p["value"][cols], minlength=n)
        return self._combine(scan, tier_delta, som, nov, p["intra_charge"])

    def _combine(self, scan: np.ndarray, tier_delta: np.ndarray, som: np.ndarray, nov: np.ndarray,
                 intra_charge: np.ndarray) -> dict[str, np.ndarray]:
        """The per-account steps after the sums: spreads, credits, the short option minimum."""
        n, C = scan.shape
        m = self._tier_to_commodity
        long_d = np.maximum(tier_delta, 0.0) @ m
        short_d = np.maximum(-tier_delta, 0.0) @ m
        net_delta = long_d - short_d  # (A, C), reference lots
        intra = np.minimum(long_d, short_d) * intra_charge[None, :]
        # inter-commodity credits
        credit = np.zeros((n, C))
        if self.pairs:
            absd = np.abs(net_delta)
            with np.errstate(divide="ignore", invalid="ignore"):
                wfpr = np.where(absd > 0, scan / absd, 0.0)
            remaining = absd.copy()
            for a, b, ra, rb, rate, opposite in self.pairs:
                sa, sb = np.sign(net_delta[:, a]), np.sign(net_delta[:, b])
                ok = (sa * sb < 0) if opposite else (sa * sb > 0)
                spreads = np.where(ok, np.minimum(remaining[:, a] / ra, remaining[:, b] / rb), 0.0)
                credit[:, a] += rate * spreads * ra * wfpr[:, a]
                credit[:, b] += rate * spreads * rb * wfpr[:, b]
                remaining[:, a] -= spreads * ra
                remaining[:, b] -= spreads * rb
        risk = np.maximum(np.maximum(scan + intra - credit, 0.0), som)
        return {"scan": scan, "intra": intra, "credit": credit, "som": som, "risk": risk,
                "net_delta": net_delta, "span": risk.sum(axis=1), "nov": nov}

    def requirements_along(self, positions: Positions, path: MarketPath, which: str = "im") -> np.ndarray:
        """:meth:`requirements` on every run of ``path``, to the bit, without the per-run sums.

        The market arrays of a chunk of runs are built together (:meth:`_market_arrays`); the scan
        risk of each distinct (account, commodity) segment with the per-slot arithmetic of
        ``worst_loss_per_group`` (``base.slot_sums_along``); the tier deltas, short option minima
        and option values with ``base.RowSums`` (bincount's additions); then :meth:`_combine` and
        :meth:`_finish` run by run on the (accounts, commodities) arrays, as in :meth:`requirements`."""
        n, runs = positions.n_accounts, len(path)
        C, T = self.n_commodities, self.n_tiers
        if runs:
            self.scan_ranges(path.at(0))  # volatility mode: fixed by the first valuation, as run by run
        seg = segments_by_group(positions, self.commodity, C)
        unique, inverse = seg.distinct()
        _, cols, lots = positions.csr()
        rows = positions.rows()
        by_tier = RowSums(rows * T + self.tier[cols], n * T)
        by_commodity = RowSums(rows * C + self.commodity[cols], n * C)
        by_account = RowSums(rows, n) if self.config.net_option_value else None
        lots_c, short_c = lots[:, None], np.maximum(-lots, 0.0)[:, None]
        scan_at = seg.row * C + seg.group
        no_nov = np.zeros(n)  # the option value only enters _finish with net_option_value

        def runs_first(values_t: np.ndarray, width: int) -> np.ndarray:  # (n x width, R) -> (R, n, width)
            out_r = np.empty((values_t.shape[1], values_t.shape[0]))
            put_transposed(out_r, values_t)
            return out_r.reshape(values_t.shape[1], n, width)

        out = np.empty((runs, n))
        for a in range(0, runs, ALONG_RUNS):
            b = min(runs, a + ALONG_RUNS)
            p = self._market_arrays(path.rows(a, b))
            sums = slot_sums_along(unique, slot_products(unique, p["arrays"]))
            worst = np.maximum(-sums.min(axis=0), 0.0)  # (distinct segments, runs), as _worst
            scan_t = np.zeros((n * C, b - a))
            scan_t[scan_at] = worst if inverse is None else worst[inverse]
            scan = runs_first(scan_t, C)
            # the weights as requirements() forms them (lots x per-instrument figure), entries x runs
            tier_delta = runs_first(by_tier.transposed(lots_c * p["delta_ref"].T[cols]), T)
            som = runs_first(by_commodity.transposed(short_c * p["som"].T[cols]), C)
            nov = runs_first(by_account.transposed(lots_c * p["value"].T[cols]), 1)[:, :, 0] if by_account else None
            for r in range(b - a):  # the per-account steps on one run's arrays, as requirements() takes them
                nov_r = no_nov if nov is None else nov[r]
                span = self._combine(scan[r], tier_delta[r], som[r], nov_r, p["intra_charge"][r])["span"]
                im, mm = self._finish(span, nov_r)
                out[a + r] = im if which == "im" else mm
        return out

    def _finish(self, span: np.ndarray, nov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if cfg.net_option_value:
            return (np.maximum(cfg.im_multiplier * span - nov, 0.0),
                    np.maximum(cfg.mm_multiplier * span - nov, 0.0))
        return cfg.im_multiplier * span, cfg.mm_multiplier * span

    def requirements(self, positions: Positions, market: MarketState) -> Requirements:
        c = self.components(positions, market)
        im, mm = self._finish(c["span"], c["nov"])
        return Requirements(im=im, mm=mm)

    def breakdown(self, lots: np.ndarray, market: MarketState) -> dict[str, float]:
        c = self.components(Positions.of(lots), market)
        im, mm = self._finish(c["span"], c["nov"])
        out = {"im": float(im[0]), "mm": float(mm[0]), "span": float(c["span"][0]),
               "scan_risk": float(c["scan"][0].sum()), "intra_spread": float(c["intra"][0].sum()),
               "inter_credit": float(c["credit"][0].sum()), "short_option_min": float(c["som"][0].sum()),
               "net_option_value": float(c["nov"][0])}
        for k, u in enumerate(self.table.underlyings):
            if c["risk"][0, k] or c["scan"][0, k]:
                out[f"risk[{u}]"] = float(c["risk"][0, k])
        return out
