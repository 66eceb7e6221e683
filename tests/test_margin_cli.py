"""The margin CLI (sim/margin_cli.py) and its portfolio-file schema: the example portfolios run
under every regime, errors name the field, and the McMillan file reproduces the SPAN known
answer (METHODS.md section 2, known-answer cases)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sim.margin_cli import margin_command
from sim.schema.margin import REGIME_NAMES

PORTFOLIOS = Path(__file__).resolve().parents[1] / "configs" / "portfolios"


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
