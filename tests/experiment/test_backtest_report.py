"""What a backtest shows people: the console table (every figure whole at 80 columns, no scientific
notation, money in the quote currency) and the HTML report's units and denominators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim.experiment.backtest import report
from sim.experiment.backtest.engine import RegimeBacktest, evaluate

ROOT = Path(__file__).parents[2]


def _result(label: str = "var") -> RegimeBacktest:
    rng = np.random.default_rng(0)
    loss = rng.normal(0.0, 1e6, (30, 3))
    margin = np.full((30, 3), 2e6)
    return RegimeBacktest(label, evaluate(margin, loss, 0.99, 0.05), margin.sum(axis=1), loss.sum(axis=1),
                          (loss > margin).sum(axis=1), margin[:, :2], loss[:, :2])


def test_the_requirement_figures_label_their_axis_with_the_quote_currency(monkeypatch):
    figures: list[Any] = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "<img>")
    report._fig_portfolio({"var": _result()}, np.arange(30), 0, "long_btc", "USDC")
    ax = figures[0].axes[0]
    assert "USDC" in ax.get_ylabel()
    ticks = [ax.yaxis.get_major_formatter()(v, 0) for v in (2e6, -1e6)]
    assert ticks == ["2M", "-1M"]  # K / M ticks, not a 1e6 offset above the axis


def test_the_report_states_each_pooled_figures_denominator_and_the_money_unit():
    summary = {"quote_currency": "USDC", "regimes": {"var": {
        "regime": "var", "scale": 1.0, "portfolios": 2_003, "tested": 1_988, "untested": 15, "runs": 1_260,
        "observations": 1_988 * 1_260, "exceedances": 1, "exceedance_rate": 1 / (1_988 * 1_260),
        "coverage": 1 - 1 / (1_988 * 1_260), "kupiec_rejected": 1_988, "christoffersen_rejected": 0,
        "zones": {"green": 1_647, "yellow": 93, "red": 248}, "largest_shortfall": 1_234_567.8,
        "median_peak_to_trough": 3.2}}}
    table = report._regime_table(summary)
    for text in ("largest shortfall (USDC)", "exceedance rate (of tested × runs)", "Kupiec rejects (of tested)",
                 "green / yellow / red (tested)", "<th>untested</th>", "1,647 / 93 / 248", "1,234,568",
                 "0.0000399 %"):
        assert text in table, text
    assert "e-0" not in table and "e+0" not in table


def test_an_episodes_accounts_are_in_its_quote_currency(tmp_path):
    from sim.experiment.backtest.run import backtest, prepare

    episode = yaml.safe_load((ROOT / "configs" / "reverse_stress" / "gap_episode.yaml").read_text())
    episode["market"]["quote"] = {"name": "USDC", "decimals": 6}
    (tmp_path / "episode.yaml").write_text(yaml.safe_dump(episode))
    cfg = {"name": "q", "days": 320, "warmup_days": 300, "horizon_days": 1, "report": False,
           "paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 100.0, "vol": 0.5}]}]},
           "portfolios": {"episode": str(tmp_path / "episode.yaml"), "at": 60.0}, "regimes": {"span": "span"}}
    assert prepare(cfg).book.quote == "USDC"
    assert backtest(cfg, write=False).summary["quote_currency"] == "USDC"


def test_a_portfolio_files_money_is_in_the_default_quote(tmp_path):
    from sim.experiment.backtest.run import backtest

    cfg = yaml.safe_load((ROOT / "configs" / "backtest" / "var_normal.yaml").read_text())
    cfg.update({"days": 320, "warmup_days": 300, "report": False, "regimes": {"span": "span"},
                "portfolios": {"file": str(ROOT / "configs" / "portfolios" / "linear_btc_eth.yaml")}})
    assert backtest(cfg, write=False).summary["quote_currency"] == "USD"


def _console_text(summary: dict, width: int) -> str:
    import io

    from rich.console import Console

    from sim.experiment.cli import _print_backtest

    screen = io.StringIO()
    # as the CLI's (soft_wrap) when its output is not a terminal: 80 columns
    _print_backtest(Console(file=screen, width=width, soft_wrap=True, color_system=None), summary, None)
    return screen.getvalue()


def _large_summary() -> dict:
    def regime(x: int, rejects: tuple[int, int], zones: tuple[int, int, int], shortfall: float) -> dict:
        return {"tested": 1_988, "untested": 15, "runs": 2_520, "observations": 1_988 * 2_520, "exceedances": x,
                "exceedance_rate": x / (1_988 * 2_520), "kupiec_rejected": rejects[0],
                "christoffersen_rejected": rejects[1], "zones": dict(zip(("green", "yellow", "red"), zones)),
                "largest_shortfall": shortfall, "significance": 0.05}

    return {"name": "strangles_ccp", "portfolios": 2_003, "runs": 2_520, "coverage": 0.99, "quote_currency": "USD",
            "regimes": {"span": regime(59_626, (826, 14), (1_647, 93, 248), 1_234_567.8),
                        "var_filtered_es_97.5": regime(1, (1_988, 1_988), (1_988, 0, 0), 98_765_432.1),
                        "tims": regime(13_276, (1_988, 34), (1_969, 0, 19), 130_062.0)}}


def test_the_console_table_shows_every_figure_whole_at_80_columns():
    """The review's case: 80 columns (output not to a terminal), thousands of books, a shortfall in
    the millions, one exceedance in 2,520 x 1,988 runs. Before: '1.98e-05%', '1.23457e+06', '1647/93/2…'."""
    text = _console_text(_large_summary(), 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    for figure in ("1.19 %", "826 / 14", "1,647/93/248", "1,234,568", "0.0000200 %", "1,988 / 1,988",
                   "1,988/0/0", "98,765,432", "0.265 %", "1,988 / 34", "1,969/0/19", "130,062", "15"):
        assert any(figure in line for line in lines), figure  # whole, on one line
    assert "…" not in text
    import re

    assert not re.search(r"\de[+-]?\d", text), "scientific notation"
    header = " ".join(line for line in lines if "┃" in line)
    for word in ("Christoffersen", "untested", "(USD)", "tested)"):
        assert word in header, word  # headers wrap at their spaces; no word is cut


def test_the_console_table_folds_rather_than_elides_on_a_narrow_terminal():
    """Narrower than the figures need: each column gives a little and a figure folds over two lines
    (all its digits still there); nothing is elided and the labels keep their column."""
    text = _console_text(_large_summary(), 60)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 60
    for start in ("│ spa", "│ var", "│ tim"):
        assert start in text, start
