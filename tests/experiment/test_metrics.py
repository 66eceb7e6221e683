"""Metrics on hand-built tables with known answers; determinism and JSON-safety of the summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sim.experiment.config import parse_episode
from sim.experiment.metrics import flatten, rnd, summarise, timing
from sim.experiment.schema.outputs import window_seconds

M = 1_000_000  # minor units per USD


def make_config(duration: float = 3600.0, sample_interval: float = 60.0):
    return parse_episode({
        "name": "synthetic", "seed": 7, "duration": duration,
        "market": {"instruments": [
            {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.001},
            {"symbol": "BTC-C", "kind": "option", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.01,
             "strike": 100000.0, "option_type": "call", "expiry": 86400.0},
        ]},
        "paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 100.0, "vol": 0.5}]}]},
        "population": {"groups": []},
        "outputs": {"sample_interval": sample_interval},
    })


def _arr(values, dtype=None):
    return np.array(values, dtype=dtype)


def make_tables() -> dict[str, dict[str, np.ndarray]]:
    nan = np.nan
    t_m = np.arange(0, 660, 60, dtype=float)
    im = np.array([0, 100, 100, 150, 300, 250, 200, 400, 400, 400, 400], dtype=float) * M
    return {
        "trades": {
            "time": _arr([1.0, 2.0, 3.0, 4.0]), "instrument": _arr([0, 0, 0, 0]), "price": _arr([100, 95, 101, 101]),
            "size": _arr([1, 1, 2, 1]), "aggressor": _arr([1, -1, 1, 1]), "maker": _arr([20, 21, 20, 21]),
            "taker": _arr([30, 31, 11, 11]), "flags": _arr([0, 1, 2, 2]),
        },
        "oracle": {
            "time": _arr([0.0, 5.0, 10.0, 0.0]), "underlying": _arr([0, 0, 0, 0]),
            "index": _arr([100.0, 95.0, 85.0, 100.0]), "true": _arr([100.0, 90.0, 80.0, 100.0]),
        },
        "market": {
            "time": _arr([0.0, 0.0, 60.0, 60.0, 120.0, 120.0, 180.0]),
            "instrument": _arr([0, 1, 0, 1, 0, 1, 0]),
            "mark": _arr([100.0, 5.0, 80.0, 4.0, 75.0, 3.0, 72.0]),
            "index": _arr([100.0, 0.0, 80.0, 0.0, 75.0, 0.0, 72.0]),
            "best_bid": _arr([99.0, 4.0, 79.0, 3.0, 69.0, 2.0, 75.0]),
            "best_ask": _arr([101.0, 6.0, 81.0, 5.0, 71.0, 4.0, nan]),  # one-sided: the bid stands in
            "open_interest": _arr([10, 1, 10, 1, 10, 1, 10]),
        },
        "accounts": {k: np.zeros(0) for k in ("time", "account", "equity", "im", "mm", "health", "gross")},
        "fund": {
            "time": _arr([0.0, 60.0, 120.0]), "insurance_fund": _arr([10 * M, 5 * M, 7 * M]),
            "bad_debt": _arr([0, 0, 4 * M]), "fee_pool": _arr([0, 1, 2]),
        },
        "margin_totals": {
            "time": t_m, "im": im, "mm": im / 2, "equity": im * 4 + 1 * M, "gross": im * 10,
        },
        "liquidations": {
            "liq_id": _arr([0, 1, 2, 3, 4], np.int64),
            "account": _arr([10, 11, 12, 13, 14], np.int64),
            "breach_time": _arr([10.0, 20.0, 30.0, 40.0, 50.0]),
            "start_time": _arr([10.2, 20.2, 31.0, 40.2, 50.2]),
            "end_time": _arr([20.0, 30.0, 40.0, 40.2, nan]),
            "cause": _arr(["oracle", "liquidation", "loss_allocation", "oracle", "liquidation"], object),
            "cause_ref": _arr([3, 0, 1, 4, 3], np.int64),
            "parent": _arr([-1, 0, 1, -1, 3], np.int64),
            "generation": _arr([0, 1, 2, 0, 1], np.int64),
            "equity_at_breach": _arr([1.0, 1.0, 1.0, 1.0, 1.0]),
            "mm_at_breach": _arr([2.0, 2.0, 2.0, 2.0, 2.0]),
            "outcome": _arr(["closed", "bankrupt", "bankrupt", "restored_by_cancel", "open"], object),
            "notional": _arr([100 * M, 50 * M, 50 * M, 0, 30 * M], np.int64),
        },
        "liquidation_steps": {
            "liq_id": _arr([0, 0, 1, 2, 4], np.int64),
            "time": _arr([10.2, 15.0, 20.2, 31.0, 50.2]),
            "account": _arr([10, 10, 11, 12, 14], np.int64),
            "instrument": _arr([0, 0, 0, 0, 0], np.int64),
            "policy": _arr(["book", "backstop", "adl", "book", "takeover"], object),
            "lots": _arr([-10, -5, 3, -1, -2], np.int64),
            "notional": _arr([60 * M, 40 * M, 50 * M, 50 * M, 30 * M], np.int64),
            "avg_price": _arr([99.0, 99.5, 101.0, 100.0, 98.0]),
            "mark": _arr([100.0, 100.0, 100.0, 100.0, 100.0]),
            "bankruptcy": _arr([90.0, nan, 101.0, 100.0, nan]),
            "fee": _arr([M, 0, 0, 0, 0], np.int64),
        },
        "losses": {
            "time": _arr([20.0, 20.0, 20.0, 31.0]),
            "liq_id": _arr([1, 1, 1, 2], np.int64),
            "account": _arr([11, 11, 11, 12], np.int64),
            "layer": _arr(["insurance_fund", "socialised:open_interest", "bad_debt", "bad_debt"], object),
            "amount": _arr([5 * M, 2 * M, 3 * M, 1 * M], np.int64),
        },
        # the fund's $5 payout: the $1 penalty it received (liquidation 0's fee), then $4 of its own
        "who_paid": {
            "time": _arr([20.0, 20.0, 20.0, 20.0, 20.2, 20.2, 31.0, 600.0]),
            "liq_id": _arr([1, 1, 1, 1, 1, 1, 2, -1], np.int64),
            "account": _arr([11, 11, 11, 11, 11, 11, 12, 99], np.int64),
            "layer": _arr(["defaulter_margin", "liquidation_penalties", "insurance_fund", "socialised", "adl",
                           "bad_debt", "bad_debt", "backstop_vault"], object),
            "borne_by": _arr(["defaulter", "liquidated", "others", "others", "others", "others", "others", "others"],
                             object),
            "amount": _arr([2 * M, M, 4 * M, 2 * M, M // 2, 3 * M, 1 * M, 1 * M], np.int64),
        },
        "backstop_vault": {"time": _arr([0.0, 300.0, 600.0]), "account": _arr([99, 99, 99], np.int64),
                           "capital": _arr([5.0 * M] * 3), "equity": _arr([5.0 * M, 3.5 * M, 4.0 * M]),
                           "pnl": _arr([0.0, -1.5 * M, -1.0 * M])},
    }


STATS = {"wall_seconds": 1.234, "events": 1000, "orders": 10, "cancels": 2, "fills": 4, "rejects": 1,
         "accounts": 5, "simulated_seconds": 3600.0}


@pytest.fixture(scope="module")
def summary():
    return summarise(make_config(), make_tables(), STATS)


def test_bad_debt_and_losses(summary):
    b = summary["bad_debt"]
    assert b["total"] == 4.0
    assert b["by_market"] == {"BTC-PERP": 4.0, "BTC-C": 0.0}
    assert b["accounts"] == 2 and b["events"] == 2 and b["unattributed"] == 0.0
    assert b["ledger_last_sample"] == 4.0
    losses = summary["losses"]
    assert losses["socialised"] == 2.0


def test_who_paid_sums_the_loss_ledger_by_layer(summary):
    losses = summary["losses"]
    who = losses["who_paid"]
    assert who["defaulter_margin"] == 2.0 and who["liquidation_penalties"] == 1.0
    assert who["insurance_fund"] == 4.0 and who["socialised"] == 2.0 and who["adl"] == 0.5
    assert who["bad_debt"] == 4.0 and who["backstop_vault"] == 1.0
    assert who["ccp_capital"] == 0.0 and who["survivors_default_fund"] == 0.0 and who["defaulter_default_fund"] == 0.0
    # everything not paid by the liquidated accounts themselves (the fund's payout less the penalty in it)
    assert losses["borne_by_others"] == 4.0 + 2.0 + 0.5 + 4.0 + 1.0
    assert losses["paid_by_liquidated"] == 3.0
    # received: the steps' fees; net: received less the whole payout ($1 + $4)
    assert losses["insurance_fund_received"] == 1.0 and losses["insurance_fund_net"] == -4.0
    assert losses["backstop_vault"] == {"capital": 5.0, "equity_final": 4.0, "pnl_final": -1.0, "pnl_min": -1.5}
    assert losses["insurance_fund_paid"] == 5.0
    assert losses["by_layer"] == {"bad_debt": 4.0, "insurance_fund": 5.0, "socialised:open_interest": 2.0}
    assert losses["deficits_total"] == 11.0


def test_insurance_fund_path(summary):
    f = summary["insurance_fund"]
    assert (f["initial"], f["min"], f["min_time"], f["final"], f["max_drawdown"]) == (10.0, 5.0, 60.0, 7.0, 5.0)


def test_liquidation_counts(summary):
    liq = summary["liquidations"]
    assert liq["count"] == 5 and liq["accounts"] == 5 and liq["steps"] == 5
    assert liq["notional"] == 230.0
    assert liq["fees"] == 1.0
    assert liq["by_policy"]["book"] == {"steps": 2, "notional": 110.0, "lots": 11}
    assert liq["by_policy"]["auction"] == {"steps": 0, "notional": 0.0, "lots": 0}
    assert liq["by_outcome"]["bankrupt"] == 2 and liq["by_outcome"]["restored"] == 0
    assert liq["by_cause"] == {"interval": 0, "liquidation": 2, "loss_allocation": 1, "oracle": 2}
    assert summary["adl"] == {"notional": 50.0, "steps": 1, "liquidations": 1, "counterparties": 2}


def test_cascade_tree(summary):
    c = summary["cascades"]
    assert c["count"] == 2 and c["contagious"] == 2
    assert c["max_generation"] == 2
    assert c["largest_size"] == 3 and c["largest_size_notional"] == 200.0
    assert c["largest_liquidations"] == 3  # every liquidation its own spell here
    assert c["largest_notional"] == 200.0 and c["largest_notional_size"] == 3
    assert c["root_notional"] == 100.0 and c["endogenous_notional"] == 130.0 and c["endogenous_count"] == 3
    assert c["amplification"] == 2.3
    assert c["endogenous_share"] == pytest.approx(130 / 230)
    assert [g["count"] for g in c["by_generation"]] == [2, 2, 1]
    assert [g["notional"] for g in c["by_generation"]] == [100.0, 80.0, 50.0]


def test_amplification_edge_cases():
    cfg = make_config()
    t = make_tables()
    t["liquidations"]["notional"] = np.array([0, 50 * M, 0, 0, 0], dtype=np.int64)  # roots closed nothing
    c = summarise(cfg, t)["cascades"]
    assert c["amplification"] is None and "zero notional" in c["amplification_note"]
    assert c["endogenous_share"] == 1.0
    t["liquidations"]["notional"] = np.zeros(5, dtype=np.int64)
    c = summarise(cfg, t)["cascades"]
    assert c["amplification"] == 1.0 and c["endogenous_share"] is None


def test_price_amplification(summary):
    p = summary["price"]
    row = p["by_instrument"]["BTC-PERP"]
    assert row["venue_drawdown"] == pytest.approx(0.3)
    assert row["true_drawdown"] == pytest.approx(0.2)
    assert row["index_drawdown"] == pytest.approx(0.15)
    assert row["mark_drawdown"] == pytest.approx(0.28)
    assert row["trade_drawdown"] == pytest.approx(0.05)
    assert row["amplification_vs_true"] == pytest.approx(1.5)
    assert row["one_sided_fraction"] == 0.25
    assert "BTC-C" not in p["by_instrument"]  # options are not compared with their underlying
    assert p["worst_instrument"] == "BTC-PERP" and p["amplification_vs_true"] == pytest.approx(1.5)
    assert "counterfactual_venue_drawdown" not in row


def test_price_against_counterfactual():
    cf = make_tables()
    cf["market"]["best_bid"] = np.array([99.0, 4.0, 89.0, 3.0, 84.0, 2.0, 90.0])
    cf["market"]["best_ask"] = np.array([101.0, 6.0, 91.0, 5.0, 86.0, 4.0, np.nan])
    p = summarise(make_config(), make_tables(), counterfactual=cf)["price"]
    row = p["by_instrument"]["BTC-PERP"]
    assert row["counterfactual_venue_drawdown"] == pytest.approx(0.15)
    assert row["amplification_vs_counterfactual"] == pytest.approx(2.0)
    assert p["amplification_vs_counterfactual"] == pytest.approx(2.0)


def _twin() -> dict[str, dict[str, np.ndarray]]:
    """The synthetic run's twin: a shallower fall, no liquidation prints on its book, less
    notional liquidated and no bad debt."""
    cf = make_tables()
    cf["market"]["best_bid"] = np.array([99.0, 4.0, 89.0, 3.0, 84.0, 2.0, 90.0])
    cf["market"]["best_ask"] = np.array([101.0, 6.0, 91.0, 5.0, 86.0, 4.0, np.nan])
    cf["market"]["mark"] = np.array([100.0, 5.0, 90.0, 4.0, 85.0, 3.0, 84.0])
    cf["trades"]["price"] = np.array([100, 90, 101, 101])
    cf["trades"]["flags"] = np.array([0, 16, 2, 2])  # the liquidation was filled outside the market
    cf["liquidations"]["notional"] = np.array([100 * M, 50 * M, 0, 0, 0], dtype=np.int64)
    cf["losses"]["amount"] = np.zeros(4, dtype=np.int64)
    return cf


def test_counterfactual_block_known_answers():
    c = summarise(make_config(), make_tables(), counterfactual=_twin())["counterfactual"]
    assert c["instrument"] == "BTC-PERP"
    assert (c["venue_drawdown"], c["twin_venue_drawdown"]) == pytest.approx((0.3, 0.15))
    assert c["venue_drawdown_amplification"] == pytest.approx(2.0)
    assert c["venue_drawdown_difference"] == pytest.approx(0.15)
    assert (c["mark_drawdown"], c["twin_mark_drawdown"]) == pytest.approx((0.28, 0.16))
    assert c["mark_drawdown_amplification"] == pytest.approx(1.75)
    # on-book prints only: the run printed 100 then 95 (a liquidation); the twin only 100
    assert (c["trade_drawdown"], c["twin_trade_drawdown"]) == pytest.approx((0.05, 0.0))
    assert c["trade_drawdown_amplification"] is None and c["trade_drawdown_difference"] == pytest.approx(0.05)
    assert (c["liquidated_notional"], c["twin_liquidated_notional"]) == (230.0, 150.0)
    assert c["liquidated_notional_ratio"] == pytest.approx(230 / 150)
    assert c["liquidated_notional_difference"] == 80.0
    assert (c["bad_debt"], c["twin_bad_debt"], c["bad_debt_ratio"], c["bad_debt_difference"]) == (4.0, 0.0, None, 4.0)
    assert c["notes"] == ["trade_drawdown: zero in the twin, ratio undefined",
                          "bad_debt: zero in the twin, ratio undefined"]
    assert (c["liquidations"], c["twin_liquidations"]) == (5, 5)
    assert c["twin_liquidation_fills_on_book"] == 0


def test_counterfactual_of_a_run_without_feedback_is_exactly_no_amplification():
    """A twin identical to the run (nothing the liquidations did moved a price): every ratio 1,
    every difference 0 -- and a twin whose book did print a liquidation is flagged."""
    c = summarise(make_config(), make_tables(), counterfactual=make_tables())["counterfactual"]
    for name in ("venue_drawdown", "trade_drawdown", "mark_drawdown"):
        assert (c[f"{name}_amplification"], c[f"{name}_difference"]) == (1.0, 0.0)
    assert (c["liquidated_notional_ratio"], c["liquidated_notional_difference"]) == (1.0, 0.0)
    assert (c["bad_debt_ratio"], c["bad_debt_difference"]) == (1.0, 0.0)
    assert c["notes"] == []
    assert c["twin_liquidation_fills_on_book"] == 1
    assert "counterfactual" not in summarise(make_config(), make_tables())


def test_margin_procyclicality_and_capital(summary):
    m = summary["margin"]
    assert m["measure_from"] == 0.0 and m["horizon_seconds"] == 360.0  # no shock: from the start
    assert m["im_initial"] == 0.0 and m["im_peak"] == 400.0 and m["im_peak_time"] == 420.0
    p = m["population_im"]
    assert p["peak_to_trough_ratio"] == 4.0  # 400 / 100 (zero IM before positions is not a trough)
    assert p["max_increase"] == 300.0 and p["max_increase_time"] == 420.0  # 100 at t=60 -> 400 at t=420
    assert p["max_increase_relative"] == 3.0 and p["max_increase_relative_time"] == 420.0
    rate = m["population_rate"]
    assert rate["peak_to_trough_ratio"] == 1.0 and rate["max_increase_relative"] == 0.0  # IM / gross never moved
    assert m["im_over_gross"] == 0.1 and m["mm_over_gross"] == 0.05
    assert m["reference_rate"]["samples"] == 0 and m["reference_rate"]["peak_to_trough_ratio"] is None


def _margin_series(times, im, gross=None):
    return {"time": np.asarray(times, dtype=float), "im": np.asarray(im, dtype=float) * M,
            "mm": np.asarray(im, dtype=float) * M / 2, "equity": np.full(len(times), 1e9 * M),
            "gross": (np.full(len(times), 1000.0) if gross is None else np.asarray(gross, dtype=float)) * M}


def _measured(outputs: dict, series: dict, shocks: list | None = None):
    cfg = make_config(duration=3600.0)
    data = cfg.model_dump(mode="json")
    data["outputs"].update(outputs)
    if shocks is not None:
        data["paths"]["shocks"] = shocks
    t = make_tables()
    t["margin_totals"] = series
    t["reference_margin"] = dict(series)
    return summarise(parse_episode(data, "synthetic"), t)["margin"]


def test_a_margin_jump_before_measure_from_is_ignored_and_one_after_is_found():
    """IM 100 until 500 s, 300 from 500 s (before the window), back to 100 at 1,000 s, then 250 at
    2,000 s: measured from 1,200 s over 600 s, the only increase is 100 -> 250, found at 2,000 s;
    the earlier jump (and its fall) is not in the window."""
    times = np.arange(0.0, 3600.0, 100.0)
    im = np.where(times < 500, 100.0, 300.0)
    im[times >= 1000] = 100.0
    im[times >= 2000] = 250.0
    m = _measured({"measure_from": 1200.0, "procyclicality_horizon": 600.0}, _margin_series(times, im))
    assert m["measure_from"] == 1200.0 and m["horizon_seconds"] == 600.0
    p = m["population_im"]
    assert p["samples"] == 24 and p["peak_to_trough_ratio"] == 2.5
    assert p["max_increase"] == 150.0 and p["max_increase_time"] == 2000.0
    assert p["max_increase_relative"] == 1.5
    # the reference rate (IM / a constant gross) sees the same: 0.1 -> 0.25
    assert m["reference_rate"]["max_increase_relative"] == pytest.approx(1.5)
    assert m["reference_rate"]["at_measure_from"] == pytest.approx(0.1)
    # measured from the start instead, the first jump (100 -> 300, +200) is the largest: first seen
    # at 600 s, the first sample with a sample a full horizon before it (t = 0)
    whole = _measured({"measure_from": 0.0, "procyclicality_horizon": 600.0}, _margin_series(times, im))
    assert whole["population_im"]["max_increase"] == 200.0 and whole["population_im"]["max_increase_time"] == 600.0


def test_the_horizon_is_in_seconds_not_rows():
    """Samples every 10 s for the first half, every 100 s after. A ramp of +40 over 200 s (20 rows)
    in the first half; +25 at 2,000 s and +25 at 2,200 s (2 rows apart) in the second. Over 300 s
    the second half's +50 is the largest; over 100 s, one step of +25 (the ramp gives +20)."""
    times = np.r_[np.arange(0.0, 1800.0, 10.0), np.arange(1800.0, 3600.0, 100.0)]
    im = np.full(times.size, 100.0)
    ramp = (times >= 500) & (times < 700)
    im[ramp] = 100.0 + 0.2 * (times[ramp] - 500.0)
    im[(times >= 700) & (times < 1000)] = 140.0
    im[times >= 2000] = 125.0
    im[times >= 2200] = 150.0
    m = _measured({"measure_from": 0.0, "procyclicality_horizon": 300.0}, _margin_series(times, im))
    assert m["population_im"]["max_increase"] == 50.0 and m["population_im"]["max_increase_time"] == 2200.0
    m = _measured({"measure_from": 0.0, "procyclicality_horizon": 100.0}, _margin_series(times, im))
    assert m["population_im"]["max_increase"] == 25.0 and m["population_im"]["max_increase_time"] == 2000.0


def test_measure_from_defaults_to_the_first_scripted_shock():
    shocks = [{"kind": "gap", "start": 2400.0, "size": -0.1}, {"kind": "crash", "start": 1800.0, "drop": 0.2,
                                                                "duration": 60.0}]
    times = np.arange(0.0, 3600.0, 100.0)
    m = _measured({}, _margin_series(times, np.full(times.size, 100.0)), shocks)
    assert m["measure_from"] == 1800.0 and m["horizon_seconds"] == 180.0  # a tenth of the 1,800 s window
    assert m["population_im"]["samples"] == 18


def test_window_choice():
    assert window_seconds(7 * 86_400, 60) == 86_400
    assert window_seconds(5_400, 30) == 540
    assert window_seconds(12 * 3_600, 60) == 3_600
    assert window_seconds(300, 60) == 60


def test_delays_and_slippage(summary):
    d = summary["liquidation_delay"]
    assert d["breach_to_start"]["count"] == 5
    assert d["breach_to_start"]["max"] == pytest.approx(1.0)
    assert d["breach_to_start"]["median"] == pytest.approx(0.2)
    assert d["breach_to_end"]["count"] == 4 and d["open_at_end"] == 1
    s = summary["slippage"]
    assert s["mean_bps"] == pytest.approx(19000 / 230)
    assert s["by_policy"]["book"] == pytest.approx(6000 / 110)
    assert s["by_policy"]["adl"] == pytest.approx(100.0)  # bought back above the mark
    assert s["by_policy"]["auction"] is None
    assert s["max_bps"] == pytest.approx(200.0)


def test_liquidations_filled_at_the_mark_have_zero_slippage():
    """The zero control: every step filled exactly at its mark."""
    tables = make_tables()
    steps = tables["liquidation_steps"]
    steps["avg_price"] = np.asarray(steps["mark"], dtype=np.float64).copy()
    s = summarise(make_config(), tables)["slippage"]
    assert s["mean_bps"] == 0.0 and s["max_bps"] == 0.0


def test_summary_is_deterministic_json_without_wall_time(summary):
    text = json.dumps(summary, sort_keys=True, allow_nan=False)
    again = json.dumps(summarise(make_config(), make_tables(), dict(STATS, wall_seconds=99.0)), sort_keys=True,
                       allow_nan=False)
    assert text == again
    assert "wall" not in text
    assert summary["run"]["events"] == 1000 and summary["run"]["regime"] == "standard"
    t = timing(STATS)
    assert t["wall_seconds"] == 1.234 and t["events_per_second"] == pytest.approx(1000 / 1.234)


def test_empty_tables():
    empty = {name: {col: np.zeros(0, dtype=object if col in ("cause", "outcome", "policy", "layer", "borne_by") else float)
                    for col in cols} for name, cols in make_tables().items()}
    s = summarise(make_config(), empty)
    json.dumps(s, allow_nan=False)
    assert s["liquidations"]["count"] == 0 and s["bad_debt"]["total"] == 0.0
    assert s["cascades"]["amplification"] is None and s["insurance_fund"]["min"] is None
    assert s["margin"]["population_im"]["peak_to_trough_ratio"] is None and s["slippage"]["mean_bps"] is None
    assert s["losses"]["borne_by_others"] == 0.0 and s["losses"]["backstop_vault"]["pnl_final"] is None


def test_rounding():
    assert rnd(1 / 3) == 0.3333333333
    assert rnd(np.float32(0.1)) == 0.1000000015
    assert rnd(-0.0) == 0.0 and math.copysign(1, rnd(-0.0)) == 1.0
    assert rnd(float("nan")) is None and rnd(np.inf) is None
    assert rnd({"a": np.int64(3), 1: [np.float64(2.0)]}) == {"a": 3, "1": [2.0]}
    assert flatten({"a": {"b": 1, "c": {"d": [1]}}}) == {"a.b": 1, "a.c.d": [1]}


def test_im_over_gross_is_time_weighted():
    """Re-valuations come irregularly (often during a crash): each sample counts for the time it held."""
    t = make_tables()
    t["margin_totals"] = {"time": np.array([0.0, 100.0, 101.0, 102.0]), "im": np.array([10.0, 30.0, 30.0, 30.0]),
                          "mm": np.array([5.0, 15.0, 15.0, 15.0]), "equity": np.full(4, 100.0),
                          "gross": np.array([100.0, 100.0, 100.0, 100.0])}
    m = summarise(make_config(duration=200.0), t)["margin"]
    assert m["im_over_gross"] == pytest.approx((0.1 * 100 + 0.3 * 100) / 200)
    assert m["mm_over_gross"] == pytest.approx((0.05 * 100 + 0.15 * 100) / 200)
    assert m["population_rate"]["max_increase_relative"] == pytest.approx(2.0)  # 0.1 -> 0.3 within 60 s
