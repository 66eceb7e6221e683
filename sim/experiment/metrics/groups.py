"""Per population group: how much margin each regime asked of it, and how much leverage it allowed.

``group_margin(tables, scale)`` reads the recorder's ``accounts`` samples (every trader account's
equity, IM and gross notional every ``outputs.sample_interval`` seconds) and its ``directory`` (``accounts.parquet``)
table (account -> group, agent type, starting capital) and returns, per group, sums over the
group's accounts and all samples, so a reader sees who gets capital relief under a regime and who
pays for it:

- ``im_over_gross``: sum(IM) / sum(gross notional) over the group's account samples (None when the
  group never held a position); lower = less capital per unit of exposure.
- ``im_over_capital``: mean over samples of the group's total IM / its total starting capital.
- ``leverage``: sum(gross) / sum(equity) over samples where the group's total equity is positive;
  ``leverage_peak``: the largest such ratio at one sample.
- ``im_mean`` / ``gross_mean``: the group's total IM / gross, averaged over samples (quote units).
- ``liquidations`` / ``liquidated_notional``: liquidation events of the group's accounts and their
  notional (quote units).

Groups are in ``directory`` (``accounts.parquet``) order (the population's order); sums use ``np.bincount`` over group
codes, never a Python loop over accounts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.experiment.metrics.columns import Tables, column_of

GROUP_FIELDS = ("accounts", "agent_type", "capital", "im_over_gross", "im_over_capital", "leverage",
                "leverage_peak", "im_mean", "gross_mean", "liquidations", "liquidated_notional")


def group_margin(tables: Tables, scale: float) -> dict[str, dict[str, Any]]:
    """Per-group margin and leverage (see the module docstring); ``scale`` = minor units per quote unit."""
    kind = column_of(tables, "directory", "type").astype(str)
    traders = (kind != "system") & (kind != "other")  # population groups and the house's vault
    meta_acc = column_of(tables, "directory", "account").astype(np.int64)[traders]
    if meta_acc.size == 0:
        return {}
    meta_group = column_of(tables, "directory", "group").astype(str)[traders]
    meta_type = kind[traders]
    capital = column_of(tables, "directory", "initial_capital").astype(np.float64)[traders] / scale
    names = list(dict.fromkeys(meta_group.tolist()))
    code_of_group = {g: k for k, g in enumerate(names)}
    n_groups = len(names)
    # account id -> group code (-1: an account no group owns)
    lookup = np.full(int(meta_acc.max()) + 1, -1, dtype=np.int64)
    lookup[meta_acc] = [code_of_group[g] for g in meta_group.tolist()]

    def codes(accounts: np.ndarray) -> np.ndarray:
        accounts = accounts.astype(np.int64)
        inside = (accounts >= 0) & (accounts < lookup.size)
        out = np.full(accounts.size, -1, dtype=np.int64)
        out[inside] = lookup[accounts[inside]]
        return out

    t = column_of(tables, "accounts", "time").astype(np.float64)
    code = codes(column_of(tables, "accounts", "account"))
    keep = code >= 0
    t, code = t[keep], code[keep]
    im = column_of(tables, "accounts", "im").astype(np.float64)[keep]
    gross = column_of(tables, "accounts", "gross").astype(np.float64)[keep]
    equity = column_of(tables, "accounts", "equity").astype(np.float64)[keep]
    times, sample = np.unique(t, return_inverse=True)
    n_samples = max(int(times.size), 1)
    # group x sample totals, one bincount per column
    cell = code * n_samples + sample
    size = n_groups * n_samples

    def per_cell(x: np.ndarray) -> np.ndarray:
        return np.bincount(cell, weights=x, minlength=size).reshape(n_groups, n_samples)

    im_gs, gross_gs, eq_gs = per_cell(im), per_cell(gross), per_cell(equity)
    pos_eq = eq_gs > 0
    cap = np.bincount(codes(meta_acc), weights=capital, minlength=n_groups)
    count = np.bincount(codes(meta_acc), minlength=n_groups)

    l_code = codes(column_of(tables, "liquidations", "account"))
    l_notional = column_of(tables, "liquidations", "notional").astype(np.float64)
    ok = l_code >= 0
    liq_n = np.bincount(l_code[ok], minlength=n_groups)
    liq_v = np.bincount(l_code[ok], weights=l_notional[ok], minlength=n_groups)

    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        im_sum, gross_sum = float(im_gs[k].sum()), float(gross_gs[k].sum())
        eq_sum = float(eq_gs[k][pos_eq[k]].sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            lev_s = np.where(pos_eq[k], gross_gs[k] / eq_gs[k], np.nan)
        out[name] = {
            "accounts": int(count[k]),
            "agent_type": str(meta_type[meta_group == name][0]),
            "capital": float(cap[k]),
            "im_over_gross": im_sum / gross_sum if gross_sum > 0 else None,
            "im_over_capital": float(im_gs[k].mean()) / scale / float(cap[k]) if cap[k] > 0 and times.size else None,
            "leverage": float(gross_gs[k][pos_eq[k]].sum()) / eq_sum if eq_sum > 0 else None,
            "leverage_peak": float(np.nanmax(lev_s)) if np.isfinite(lev_s).any() else None,
            "im_mean": float(im_gs[k].mean()) / scale if times.size else None,
            "gross_mean": float(gross_gs[k].mean()) / scale if times.size else None,
            "liquidations": int(liq_n[k]),
            "liquidated_notional": float(liq_v[k]) / scale,
        }
    return out
