"""Who lost what: bad debt, the insurance fund, losses borne by others and who paid them, ADL, and
solvency at true prices."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.experiment.who_paid import LAYERS as WHO_PAID_LAYERS
from sim.experiment.metrics.columns import ADL_FLAG, Tables, column_of


def bad_debt_figures(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    layer = column_of(tables, "losses", "layer").astype(str)
    amount = column_of(tables, "losses", "amount").astype(np.float64)
    liq = column_of(tables, "losses", "liq_id", np.int64)
    account = column_of(tables, "losses", "account", np.int64)
    bad = (layer == "bad_debt") & (amount > 0)
    # the market a deficit belongs to: the instrument of the liquidation's last step (as the absorber does)
    s_liq = column_of(tables, "liquidation_steps", "liq_id", np.int64)
    s_ins = column_of(tables, "liquidation_steps", "instrument", np.int64)
    last_instrument = {int(l_): int(i) for l_, i in zip(s_liq.tolist(), s_ins.tolist())}
    by_market = {s: 0.0 for s in cv["symbols"]}
    unattributed = 0.0
    for lid, amt in zip(liq[bad].tolist(), amount[bad].tolist()):
        ins = last_instrument.get(lid)
        if ins is None or not 0 <= ins < len(cv["symbols"]):
            unattributed += amt
        else:
            by_market[cv["symbols"][ins]] += amt
    fund_bad = column_of(tables, "fund", "bad_debt").astype(np.float64)
    return {
        "total": float(amount[bad].sum()) / scale,
        "by_market": {k: v / scale for k, v in by_market.items()},
        "unattributed": unattributed / scale,
        "accounts": int(np.unique(account[bad]).size),
        "events": int(np.unique(liq[bad]).size),
        "ledger_last_sample": float(fund_bad[-1]) / scale if fund_bad.size else 0.0,
    }


def insurance_figures(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    t = column_of(tables, "fund", "time").astype(np.float64)
    f = column_of(tables, "fund", "insurance_fund").astype(np.float64)
    fee = column_of(tables, "fund", "fee_pool").astype(np.float64)
    if f.size == 0:
        return {"initial": None, "min": None, "min_time": None, "final": None, "max_drawdown": None,
                "fee_pool_final": None}
    k = int(np.argmin(f))
    peak = np.maximum.accumulate(f)
    return {
        "initial": float(f[0]) / scale,
        "min": float(f[k]) / scale,
        "min_time": float(t[k]),
        "final": float(f[-1]) / scale,
        "max_drawdown": float(np.max(peak - f)) / scale,
        "fee_pool_final": float(fee[-1]) / scale if fee.size else None,
    }


def loss_figures(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    layer = column_of(tables, "losses", "layer").astype(str)
    amount = column_of(tables, "losses", "amount").astype(np.float64)
    by_layer = {str(name): float(amount[layer == name].sum()) / scale for name in sorted(set(layer.tolist()))}
    socialised = float(amount[np.char.startswith(layer, "socialised")].sum()) / scale if layer.size else 0.0
    waterfall = float(amount[np.char.startswith(layer, "waterfall")].sum()) / scale if layer.size else 0.0
    deficits = float(amount[layer != "collateral_sold"].sum()) / scale if layer.size else 0.0
    return {"by_layer": by_layer, "socialised": socialised, "waterfall": waterfall,
            "insurance_fund_paid": by_layer.get("insurance_fund", 0.0),
            "deficits_total": deficits, **_who_paid(tables, cv)}


def _who_paid(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    """The loss ledger by layer (the ``who_paid`` table, see ``sim.experiment.who_paid``) and the backstop
    vault's P&L (the ``backstop_vault`` table)."""
    scale = cv["scale"]
    layer = column_of(tables, "who_paid", "layer").astype(str)
    borne = column_of(tables, "who_paid", "borne_by").astype(str)
    amount = column_of(tables, "who_paid", "amount").astype(np.float64)
    who = {name: float(amount[layer == name].sum()) / scale for name in WHO_PAID_LAYERS}
    pnl = column_of(tables, "backstop_vault", "pnl").astype(np.float64)
    capital = column_of(tables, "backstop_vault", "capital").astype(np.float64)
    equity = column_of(tables, "backstop_vault", "equity").astype(np.float64)
    vault = {"capital": float(capital[0]) / scale if capital.size else None,
             "equity_final": float(equity[-1]) / scale if equity.size else None,
             "pnl_final": float(pnl[-1]) / scale if pnl.size else None,
             "pnl_min": float(pnl.min()) / scale if pnl.size else None}
    # every fee goes to the insurance fund: what it received is the liquidation penalties; what it
    # paid out, the two who-paid layers its payouts are split into (penalties first, then its own)
    received = float(column_of(tables, "liquidation_steps", "fee", np.int64).sum()) / scale
    paid_out = who["liquidation_penalties"] + who["insurance_fund"]
    return {
        "who_paid": who,
        "borne_by_others": float(amount[borne == "others"].sum()) / scale,
        "paid_by_liquidated": float(amount[(borne == "defaulter") | (borne == "liquidated")].sum()) / scale,
        "insurance_fund_received": received,
        "insurance_fund_net": received - paid_out,
        "backstop_vault": vault,
    }


def adl_figures(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    scale = cv["scale"]
    policy = column_of(tables, "liquidation_steps", "policy").astype(str)
    m = policy == "adl"
    s_not = column_of(tables, "liquidation_steps", "notional").astype(np.float64)
    flags = column_of(tables, "trades", "flags", np.int64)
    maker = column_of(tables, "trades", "maker", np.int64)
    adl_trades = (flags & ADL_FLAG) != 0
    return {
        "notional": float(s_not[m].sum()) / scale,
        "steps": int(m.sum()),
        "liquidations": int(np.unique(column_of(tables, "liquidation_steps", "liq_id", np.int64)[m]).size),
        "counterparties": int(np.unique(maker[adl_trades]).size),
    }


def solvency_figures(tables: Tables, cv: dict[str, Any]) -> dict[str, Any]:
    """Deficits at the end, with collateral at published prices and at true prices (an oracle
    stuck above the market hides the difference); ``kind`` 0 is the insurance fund, 1 the
    bad-debt row's recoveries in kind, 2 the traders."""
    if "solvency" not in tables or column_of(tables, "solvency", "account").size == 0:
        return {}
    scale = cv["scale"]
    kind = column_of(tables, "solvency", "kind", np.int64)
    seen = column_of(tables, "solvency", "equity").astype(np.float64) / scale
    true = column_of(tables, "solvency", "equity_true_collateral").astype(np.float64) / scale
    traders = kind == 2
    fund_seen, fund_true = float(seen[kind == 0].sum()), float(true[kind == 0].sum())
    rec_seen, rec_true = float(seen[kind == 1].sum()), float(true[kind == 1].sum())
    deficit_seen = float(np.maximum(-seen[traders], 0.0).sum())
    deficit_true = float(np.maximum(-true[traders], 0.0).sum())
    return {
        "insolvent_accounts": int((seen[traders] < 0).sum()),
        "insolvent_accounts_at_true_prices": int((true[traders] < 0).sum()),
        "deficit": deficit_seen,
        "deficit_at_true_prices": deficit_true,
        "insurance_fund_value": fund_seen,
        "insurance_fund_value_at_true_prices": fund_true,
        "bad_debt_recoveries": rec_seen,
        "bad_debt_recoveries_at_true_prices": rec_true,
        "hidden_loss": deficit_true - deficit_seen + (fund_seen - fund_true) + (rec_seen - rec_true),
    }
