"""The margin CLI (sim/experiment/margin_cli.py) and its portfolio-file schema: the example portfolios run
under every regime, errors name the field, and the McMillan file reproduces the SPAN known
answer (METHODS.md section 2, known-answer cases)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sim.experiment.margin_cli import margin_command
from clearing.margin.config import REGIME_NAMES

PORTFOLIOS = Path(__file__).resolve().parents[2] / "configs" / "portfolios"


@pytest.mark.parametrize("path", sorted(PORTFOLIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_run_under_every_regime(path, capsys):
    assert margin_command(str(path), None, True) == 0
    out = json.loads(capsys.readouterr().out)
    for name in REGIME_NAMES:
        assert name in out["regimes"] or name in out["skipped"]
    for label, reg in out["regimes"].items():
        for acc in reg["accounts"].values():
            assert acc["im"] >= acc["mm"] - 1e-9 >= -1e-9, label


def test_rich_output(capsys):
    assert margin_command(str(PORTFOLIOS / "covered_call_calendar.yaml"), None, False) == 0
    out = capsys.readouterr().out
    assert "covered_call" in out and "portfolio" in out and "liquidation price" in out and "all 3 accounts" in out
    assert "breakdown" not in out  # the components are asked for (--breakdown) or come with --regime
    assert margin_command(str(PORTFOLIOS / "covered_call_calendar.yaml"), None, False, breakdown=True) == 0
    out = capsys.readouterr().out
    assert "breakdown" in out and "risk array" in out


def test_mcmillan_file_gives_3990(capsys):
    assert margin_command(str(PORTFOLIOS / "span_mcmillan.yaml"), "span", True) == 0
    out = json.loads(capsys.readouterr().out)
    acc = out["regimes"]["span"]["accounts"]
    assert acc["long_call"]["mm"] == pytest.approx(3990.0)
    assert acc["long_future"]["mm"] == pytest.approx(10000.0)


def _write(tmp_path, data) -> str:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


BASE = {
    "underlyings": {"BTC": {"price": 60000, "vol": 0.6}},
    "instruments": [{"symbol": "P", "kind": "perpetual", "underlying": "BTC"}],
    "accounts": [{"name": "a", "positions": {"P": 1}}],
}


@pytest.mark.parametrize("patch, needle", [
    ({"instruments": [{"symbol": "O", "kind": "option", "underlying": "BTC", "expiry_days": 30}]}, "instruments.0"),
    ({"accounts": [{"name": "a", "positions": {"NOPE": 1}}]}, "unknown instruments"),
    ({"regimes": {"span": {"cover_fraction": 3}}}, "regimes.span"),
    ({"regimes": {"mine": {"regime": "tims", "points": 7}}}, "points"),
    ({"underlyings": {"BTC": {"price": -1, "vol": 0.6}}}, "underlyings.BTC.price"),
    ({"instruments": [{"symbol": "P", "kind": "perpetual", "underlying": "ETH"}]}, "unknown underlying"),
])
def test_invalid_files_name_the_field(tmp_path, capsys, patch, needle):
    assert margin_command(_write(tmp_path, {**BASE, **patch}), None, False) == 2
    assert needle in capsys.readouterr().err


def test_unknown_regime_and_missing_history(tmp_path, capsys):
    path = _write(tmp_path, BASE)
    assert margin_command(path, "nope", False) == 2
    assert "unknown regime" in capsys.readouterr().err
    assert margin_command(path, "var", False) == 2
    assert "history" in capsys.readouterr().err
    assert margin_command(path, None, True) == 0  # all regimes: VaR ones are skipped, with a reason
    out = json.loads(capsys.readouterr().out)
    assert set(out["skipped"]) == {"var", "var_apc"}
    assert margin_command(str(tmp_path / "missing.yaml"), None, False) == 2


def test_history_prices_inline(tmp_path, capsys):
    prices = [60000 * (1 + 0.01 * ((i * 7) % 5 - 2)) for i in range(300)]
    path = _write(tmp_path, {**BASE, "history": {"prices": {"BTC": prices}}})
    assert margin_command(path, "var", True) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["regimes"]["var"]["accounts"]["a"]["im"] > 0


# ------------------------------------------------------------------------ the calculator (issue 16)
def _json(capsys, *args, **kwargs) -> dict:
    assert margin_command(*args, **kwargs) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_positions_on_the_command_line_need_no_file(capsys):
    out = _json(capsys, None, "standard", True, positions=["BTC-PERP=+2"], prices=["BTC=60000"])
    acc = out["regimes"]["standard"]["accounts"]["positions"]
    # standard defaults: IM 10%, MM 5% of 2 x 60,000
    assert (acc["im"], acc["mm"], acc["im_share"], acc["mm_share"]) == (12000.0, 6000.0, 0.1, 0.05)
    assert out["notional"] == {"positions": 120000.0}
    assert out["regimes"]["standard"]["total"] == {"im": 12000.0, "mm": 6000.0, "im_share": 0.1, "mm_share": 0.05}


def test_liquidation_price_known_answer(capsys):
    """Long 1 BTC perp at 60,000 under 10%/5%, equity = IM = 6,000: equity(S) = 6,000 + S - 60,000
    meets MM(S) = 0.05 S at S = 54,000 / 0.95 = 56,842.105..., and never on the way up."""
    out = _json(capsys, None, "standard", True, positions=["BTC-PERP=1"], prices=["BTC=60000"])
    liq = out["regimes"]["standard"]["accounts"]["positions"]["liquidation"]["BTC"]
    assert liq["down"] == pytest.approx(54000 / 0.95, abs=0.05) and liq["up"] is None
    out = _json(capsys, None, "standard", True, positions=["BTC-PERP=-1"], prices=["BTC=60000"], collateral=9000.0)
    liq = out["regimes"]["standard"]["accounts"]["positions"]["liquidation"]["BTC"]
    # short: 9,000 - (S - 60,000) = 0.05 S  ->  S = 69,000 / 1.05
    assert liq["up"] == pytest.approx(69000 / 1.05, abs=0.05) and liq["down"] is None
    out = _json(capsys, None, "standard", True, positions=["BTC-PERP=1"], prices=["BTC=60000"], collateral=0.0)
    acc = out["regimes"]["standard"]["accounts"]["positions"]
    assert acc["below_mm"] is True and acc["liquidation"]["BTC"] == {"down": None, "up": None}


def test_shock_what_if_known_answer(capsys):
    out = _json(capsys, None, "standard", True, positions=["BTC-PERP=1"], prices=["BTC=60000"],
                shocks=["BTC=-20%,vol=+30%"])
    (shock,) = out["shocks"]
    after = shock["regimes"]["standard"]["positions"]
    # price 48,000: P&L -12,000 on equity 6,000; MM 5% x 48,000
    assert after == {"im": 4800.0, "mm": 2400.0, "equity": -6000.0, "excess": -8400.0}
    assert shock["label"] == "BTC=-20%,vol=+30%"


def test_span_risk_array_and_portfolio_worst_scenario(capsys):
    out = _json(capsys, None, None, True, positions=["BTC-PERP=1"], prices=["BTC=60000"])
    span = out["regimes"]["span"]["risk_array"]
    values = span["accounts"]["positions"]["BTC"]
    assert len(values) == 16 and span["scenarios"][12] == "-3/3/up"
    # the price scan range from the product's vol and a 2-day margin period of risk:
    # z(99%) x 60% x sqrt(2 / 365) = 10.33% of 60,000 on one long lot
    assert min(values) == values[12] == pytest.approx(-60_000 * 2.3263478740 * 0.6 * (2 / 365) ** 0.5, abs=0.01)
    worst = out["regimes"]["portfolio"]["worst_scenario"]["positions"]["BTC"]
    assert worst["move"] == -0.16 and worst["pnl"] == -9600.0


def test_positions_replace_the_file_accounts_and_errors_name_the_flag(capsys):
    path = str(PORTFOLIOS / "covered_call_calendar.yaml")
    out = _json(capsys, path, "span", True, positions=["BTC-PERP=3"])
    assert out["accounts"] == ["positions"]
    assert margin_command(None, None, True, positions=["BTC-PERP=two"], prices=["BTC=1"]) == 2
    assert "clearsim: error: --position BTC-PERP: 'two' is not a number" in capsys.readouterr().err
    assert margin_command(None, None, True, positions=["BTC-PERP=1"]) == 2
    assert "--price: give the price of BTC" in capsys.readouterr().err
    assert margin_command(None, None, True, positions=["DOGE-MOON=1"], prices=["DOGE=1"]) == 2
    assert "unknown instrument" in capsys.readouterr().err
    assert margin_command(path, None, True, shocks=["ETH=-10%"]) == 2
    assert "unknown underlying 'ETH'" in capsys.readouterr().err


def test_json_is_rounded(capsys):
    out = _json(capsys, str(PORTFOLIOS / "covered_call_calendar.yaml"), "span", True)
    for acc in out["regimes"]["span"]["accounts"].values():
        assert acc["im"] == round(acc["im"], 2)
        assert len(repr(acc["im_share"]).split(".")[-1]) <= 8


def test_tables_fit_80_columns_without_wrapping(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "sim.experiment.cli", "margin", str(PORTFOLIOS / "covered_call_calendar.yaml"),
                           "--shock", "BTC=-20%,vol=+30%", "--breakdown"], capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="80", PYTHONPATH=str(root)), cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "e+0" not in done.stdout and "None" not in done.stdout
    # a row is whole on one line (a squeezed table would fold "12,480.00" or the regime name)
    assert "│ portfolio         │  8,168.49 │  6,534.79 │  6.8% │  5.4% │" in lines
