"""Margin backtesting: known answers (normal returns under 99% VaR, half of it, a margin that
covers everything, a flat book), the statistics' behaviour, vectorisation, determinism, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from clearing.margin.base import Positions
from clearing.margin.registry import build_regime
from sim.experiment.backtest.engine import marks_along, realised_losses, requirement_series, run_days
from sim.experiment.backtest.run import backtest, path_of, prepare
from sim.experiment.backtest.stats import christoffersen_independence, kupiec_pof, largest_increase, peak_to_trough, \
    transition_counts
from sim.experiment.cli import main
from sim.experiment.errors import ConfigError

BOOK = {
    "name": "test book",
    "underlyings": {"BTC": {"price": 100.0, "vol": 0.5}},
    "instruments": [{"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC"}],
    "accounts": [{"name": "long", "positions": {"BTC-PERP": 2}}, {"name": "short", "positions": {"BTC-PERP": -1}},
                 {"name": "flat", "positions": {}}],
}


def config(tmp_path, **extra) -> dict:
    (tmp_path / "book.yaml").write_text(yaml.safe_dump(BOOK))
    cfg = {
        "name": "normal", "seed": 5, "days": 3000, "warmup_days": 500,
        "paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 100.0, "vol": 0.5}]}]},
        "portfolios": {"file": str(tmp_path / "book.yaml")},
        "regimes": {
            "var": {"regime": "var", "mpor_days": 1, "lookback_days": 500, "confidence": 0.99},
            "var_half": {"regime": "var", "mpor_days": 1, "lookback_days": 500, "confidence": 0.99, "scale": 0.5},
            "cover_all": {"regime": "standard", "tiers": [{"im_rate": 1.0, "mm_rate": 1.0}]},
        },
        "horizon_days": 1, "coverage": 0.99, "report": False,
    }
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bt")
    return backtest(config(tmp), write=False)


def test_99_var_on_normal_returns_breaks_about_one_percent_and_kupiec_keeps_it(normal_run):
    var = normal_run.summary["regimes"]["var"]
    f = normal_run.results["var"].per_portfolio
    assert var["runs"] == 2500 and var["tested"] == 2
    for k in (0, 1):  # long, short: 2,500 runs each, ~25 expected
        assert 0.005 < f["exceedance_rate"][k] < 0.02
        assert f["kupiec_p"][k] > 0.05 and not f["kupiec_reject"][k]
        assert f["christoffersen_p"][k] > 0.05
        assert f["zone"][k] == 0  # green


def test_half_the_var_margin_is_rejected(normal_run):
    f = normal_run.results["var_half"].per_portfolio
    for k in (0, 1):
        # P(loss > 0.5 x 2.33 sigma) = P(Z > 1.16) ~ 12%
        assert 0.08 < f["exceedance_rate"][k] < 0.16
        assert f["kupiec_reject"][k] and f["kupiec_p"][k] < 1e-10
        assert f["zone"][k] == 2  # red
    assert normal_run.summary["regimes"]["var_half"]["kupiec_rejected"] == 2


def test_a_margin_that_covers_every_loss_has_zero_exceedances(normal_run):
    f = normal_run.results["cover_all"].per_portfolio
    assert f["exceedances"][:2].tolist() == [0, 0]
    assert f["largest_shortfall"][:2].tolist() == [0.0, 0.0]
    # Kupiec is two-sided: no exceedances at all in 2,500 runs is itself evidence against 99%
    assert f["kupiec_reject"][:2].all()
    assert f["zone"][:2].tolist() == [0, 0]


def test_a_flat_book_is_not_tested_and_never_exceeds(normal_run):
    for label, res in normal_run.results.items():
        f = res.per_portfolio
        assert f["exceedances"][2] == 0 and not f["tested"][2], label
        assert math.isnan(f["kupiec_p"][2]) and not f["kupiec_reject"][2]


def test_pooled_rate_and_zones_count_only_tested_books_by_hand():
    """Known answer: three books whose exceedances are counted by hand and a flat one. The pooled rate
    is exceedances / (tested books x runs) = 4 / (3 x 8), not 4 / (4 x 8); the zones count the three
    tested books (one in each) and the flat book in none."""
    from sim.experiment.backtest.engine import RegimeBacktest, aggregate, evaluate, per_portfolio_rows

    loss = np.array([[5, 1, 1, 0], [1, 1, 5, 0], [5, 1, 1, 0], [1, 1, 1, 0],
                     [5, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0]], dtype=float)
    margin = np.where(np.arange(4) < 3, 2.0, 0.0) * np.ones((8, 1))  # the flat book (column 3): none
    # by hand: column 0 breaks on runs 0, 2, 4 (3), column 1 never (0), column 2 on run 1 (1)
    # P[X <= x], X ~ Binomial(8, 1%): x = 0 -> 0.923 (green), 1 -> 0.997 (yellow), 3 -> 0.9999993 (red)
    f = evaluate(margin, loss, coverage=0.99, significance=0.05)
    assert f["exceedances"].tolist() == [3, 0, 1, 0]
    assert f["tested"].tolist() == [True, True, True, False]
    assert f["zone"].tolist() == [2, 0, 1, -1]
    assert math.isnan(f["exceedance_rate"][3]) and math.isnan(f["traffic_light_probability"][3])
    res = RegimeBacktest("hand", f, margin.sum(axis=1), loss.sum(axis=1), (loss > margin).sum(axis=1),
                         np.zeros((8, 0)), np.zeros((8, 0)))
    head = aggregate(res, 0.05)
    assert (head["portfolios"], head["tested"], head["untested"], head["runs"]) == (4, 3, 1, 8)
    assert head["observations"] == 3 * 8 and head["exceedances"] == 4
    assert head["exceedance_rate"] == pytest.approx(4 / 24, abs=0, rel=1e-15)
    assert head["coverage"] == pytest.approx(1 - 4 / 24, abs=0, rel=1e-15)
    assert head["zones"] == {"green": 1, "yellow": 1, "red": 1}
    assert per_portfolio_rows("hand", list("abcd"), f)["zone"].tolist() == ["red", "green", "yellow", None]


def test_a_book_with_a_requirement_or_a_profit_and_loss_is_tested():
    """Only a book with neither a requirement nor a profit or loss on any run is left out: one with a
    requirement and no P&L, or with P&L (gains only) and no requirement, is a test of the model."""
    from sim.experiment.backtest.engine import evaluate

    margin = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    loss = np.array([[0.0, -3.0, 0.0], [0.0, 0.0, 0.0]])
    assert evaluate(margin, loss, 0.99, 0.05)["tested"].tolist() == [True, True, False]


def test_the_headline_of_a_book_set_with_a_flat_book_is_over_the_tested_books(normal_run):
    for label, res in normal_run.results.items():
        head = normal_run.summary["regimes"][label]
        f = res.per_portfolio
        assert (head["tested"], head["untested"], head["observations"]) == (2, 1, 2 * 2500), label
        assert head["exceedance_rate"] == pytest.approx(f["exceedances"][:2].sum() / (2 * 2500), abs=0, rel=1e-9)
        assert sum(head["zones"].values()) == 2, label
        assert head["by_portfolio"]["flat"]["zone"] is None and not head["by_portfolio"]["flat"]["tested"]
    # half the 99% VaR breaks ~12% of the two real books' runs (P(Z > 1.16)); over three books it read ~8%
    assert 0.10 < normal_run.summary["regimes"]["var_half"]["exceedance_rate"] < 0.14


def test_a_repeated_regime_is_labelled_by_what_differs(tmp_path):
    """configs/regimes/ccp.yaml's ES 97.5% entry read `var_2`; an unlabelled repeat now says how it
    differs from the entry holding its regime's name. Numbered only when nothing differs; an entry's
    own label is used."""
    from sim.experiment.backtest.run import _regime_entries, load_backtest

    ccp = Path(__file__).parents[2] / "configs" / "regimes" / "ccp.yaml"
    cfg, root = load_backtest(config(tmp_path, regimes={}, regime_set=str(ccp)))
    assert list(_regime_entries(cfg, root)) == ["span", "tims", "var", "var_apc", "var_filtered_es_97.5"]
    (tmp_path / "set.yaml").write_text(yaml.safe_dump({"compare_regimes": [
        "var", {"regime": "var", "measure": "es", "confidence": 0.975}, {"regime": "var", "scale": 0.5}, "var",
        {"regime": "var", "mpor_days": 5}, "var_apc", {"regime": "var_apc", "floor_lookback_days": None},
        {"regime": "var", "label": "my ES", "measure": "es"}]}))
    cfg, root = load_backtest(config(tmp_path, regimes={"var_half": {"regime": "var", "scale": 0.5}},
                                     regime_set=str(tmp_path / "set.yaml")))
    labels = list(_regime_entries(cfg, root))
    assert labels == ["var_half", "var", "var_es_97.5", "var_scale=0.5", "var_2", "var_mpor_days=5", "var_apc",
                      "var_apc_no_floor_lookback_days", "my ES"]
    assert list(_regime_entries(cfg, root)) == labels  # deterministic


def test_a_label_used_twice_is_refused_naming_the_entry(tmp_path):
    (tmp_path / "set.yaml").write_text(yaml.safe_dump({"compare_regimes": [{"regime": "span", "label": "var"}]}))
    with pytest.raises(ConfigError, match=r"compare_regimes\.0\.label: 'var' already names another regime"):
        prepare(config(tmp_path, regime_set=str(tmp_path / "set.yaml")))


def test_realised_loss_is_the_price_move_over_the_horizon(tmp_path):
    plan = prepare(config(tmp_path, horizon_days=3))
    prices, vols = path_of(plan.config, plan.book.table)
    runs = run_days(prices.shape[0], 500, 3, 1)
    loss = realised_losses(plan.book, prices, vols, runs, 3)
    move = prices[runs + 3, 0] - prices[runs, 0]
    assert np.allclose(loss[:, 0], -2 * move, rtol=0, atol=1e-9)
    assert np.allclose(loss[:, 1], move, rtol=0, atol=1e-9)
    assert not loss[:, 2].any()
    assert runs[-1] == prices.shape[0] - 1 - 3


def test_one_call_per_run_equals_each_portfolio_alone(tmp_path):
    cfg = config(tmp_path)
    cfg["portfolios"]["random"] = {"count": 40, "seed": 3}
    plan = prepare(cfg)
    prices, vols = path_of(plan.config, plan.book.table)
    runs = np.array([600, 1500, 2900])
    regime = build_regime("span", plan.book.table)
    together = requirement_series(regime, plan.book, prices, vols, runs)
    marks = marks_along(plan.book.table, prices[runs], vols[runs])
    from sim.core.instruments import MarketState

    for k, row in enumerate(runs):
        market = MarketState(0.0, prices[row], vols[row], marks[k], vols[row][plan.book.table.underlying_index])
        for a in range(plan.book.positions.n_accounts):
            alone = regime.requirements(Positions.of(plan.book.positions.dense[a]), market).im[0]
            assert together[k, a] == pytest.approx(alone, rel=1e-12, abs=1e-12)


def test_same_config_and_seed_give_identical_results(tmp_path):
    cfg = config(tmp_path, days=800, warmup_days=300)
    cfg["regimes"] = {"var": cfg["regimes"]["var"] | {"lookback_days": 250}, "span": "span"}
    a = backtest(cfg, output=tmp_path / "a")
    b = backtest(cfg, output=tmp_path / "b")
    assert (tmp_path / "a" / "summary.json").read_bytes() == (tmp_path / "b" / "summary.json").read_bytes()
    assert a.summary == b.summary
    other = backtest(cfg | {"seed": 6}, write=False)
    assert other.summary["regimes"]["var"] != a.summary["regimes"]["var"]


def test_christoffersen_rejects_clustered_exceedances_and_keeps_scattered_ones():
    n = 2500
    scattered = np.zeros((n, 1), dtype=bool)
    scattered[50::100] = True  # 25 exceedances, never two in a row
    clustered = np.zeros((n, 1), dtype=bool)
    for start in range(100, 2500, 500):
        clustered[start:start + 5] = True  # the same 25, in five runs of five
    assert scattered.sum() == clustered.sum() == 25
    _, p_s = christoffersen_independence(scattered)
    _, p_c = christoffersen_independence(clustered)
    assert p_s[0] > 0.05 and p_c[0] < 1e-6
    # the count alone cannot tell them apart
    assert kupiec_pof(np.array([25]), np.array([n]), 0.99)[1][0] > 0.05


def test_christoffersen_statistic_on_a_hand_counted_sequence():
    hits = np.array([0, 0, 1, 1, 0, 0, 0, 1, 1, 0], dtype=bool)[:, None]
    assert [int(c[0]) for c in transition_counts(hits)] == [3, 2, 2, 2]
    p01, p11, p = 2 / 5, 2 / 4, 4 / 9
    free = 3 * math.log(1 - p01) + 2 * math.log(p01) + 2 * math.log(1 - p11) + 2 * math.log(p11)
    restricted = 5 * math.log(1 - p) + 4 * math.log(p)
    lr, _ = christoffersen_independence(hits)
    assert lr[0] == pytest.approx(-2 * (restricted - free), rel=1e-12)


def test_procyclicality_measures_on_known_series():
    m = np.array([[1.0, 5.0], [2.0, 5.0], [4.0, 5.0], [2.0, 5.0], [1.0, 5.0]])
    assert peak_to_trough(m).tolist() == [4.0, 1.0]
    absolute, relative = largest_increase(m, 2)
    assert absolute.tolist() == [3.0, 0.0] and relative.tolist() == [3.0, 0.0]
    falling = np.array([[4.0], [2.0], [1.0], [0.5], [0.0]])
    assert peak_to_trough(falling).tolist() == [1.0]  # only falls: no rise from a trough


@pytest.mark.parametrize(("change", "message"), [
    ({"regimes": {"x": "no_such_regime"}}, "regimes.x"),
    ({"regimes": {"x": {"regime": "var", "mpor_days": 5}}, "warmup_days": 3}, "warmup_days (3) above its mpor_days"),
    ({"regimes": {"x": {"regime": "span", "scale": -1}}}, "regimes.x.scale"),
    ({"paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "ETH", "s0": 1.0, "vol": 0.5}]}]}},
     "underlying 'BTC', which has no price path"),
    ({"horizon_days": 0}, "horizon_days"),
    ({"days": 100, "warmup_days": 100}, "leaves no margin run"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_input_names_the_field_before_anything_runs(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare(config(tmp_path, **change))


def test_cli_writes_the_results_folder_and_refuses_bad_files(tmp_path, capsys):
    cfg = config(tmp_path, days=700, warmup_days=300, report=True, report_portfolios=2)
    cfg["regimes"] = {"var": cfg["regimes"]["var"] | {"lookback_days": 250}, "span": "span"}
    path = tmp_path / "bt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["backtest", str(path), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {".clearsim-output", "summary.json", "config.yaml", "portfolios.parquet",
                                                "runs.parquet", "report.html"}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["regimes"]) == {"var", "span"}
    import pyarrow.parquet as pq

    assert pq.read_table(out / "portfolios.parquet").num_rows == 2 * 3
    assert "<img" in (out / "report.html").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg | {"coverage": 1.5}))
    capsys.readouterr()
    assert main(["backtest", str(bad), "--out", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "coverage" in err and err.startswith("clearsim: error: ")
    assert not (tmp_path / "nothing").exists()


def test_cli_json_quiet_and_validate(tmp_path, capsys):
    """The CLI conventions: --json prints the summary on stdout, --quiet prints nothing, validate knows
    a backtest file."""
    cfg = config(tmp_path, days=500, warmup_days=300, report=False)
    cfg["regimes"] = {"span": "span"}
    path = tmp_path / "bt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["backtest", str(path), "--out", str(tmp_path / "a"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == json.loads((tmp_path / "a" / "summary.json").read_text())
    assert Path(data["directory"]).resolve() == (tmp_path / "a").resolve()
    assert main(["backtest", str(path), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["validate", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "backtest" and info["regimes"] == 1


def test_an_episodes_accounts_at_a_time_are_the_portfolios(tmp_path):
    episode = Path(__file__).parents[2] / "configs" / "reverse_stress" / "gap_episode.yaml"
    cfg = config(tmp_path, days=400, warmup_days=300, horizon_days=2)
    cfg["portfolios"] = {"episode": str(episode), "at": 60.0}
    cfg["regimes"] = {"span": "span"}
    plan = prepare(cfg)
    lots = plan.book.positions.dense
    # the 5x long (10,000 of capital at ~100: ~499 lots) and the market maker it bought from
    assert lots.shape == (2, 1) and lots.sum() == 0 and 450 < lots.max() < 500
    assert all(name.startswith("account_") for name in plan.book.names)
    out = backtest(cfg, write=False)
    assert out.summary["runs"] == 50  # (400 - 300 - 2 + 1) runs every 2 days (step = horizon)
    assert plan.config.step_days == 2
    with pytest.raises(ConfigError, match="holds a position"):
        prepare(cfg | {"portfolios": {"episode": str(episode), "at": 1.0}})
    with pytest.raises(ConfigError, match="exactly one of file"):
        prepare(cfg | {"portfolios": {"episode": str(episode), "at": 60.0, "file": "x.yaml"}})


@pytest.mark.parametrize("name", ["var_normal", "strangles_ccp", "default_episode_accounts"])
def test_shipped_backtest_examples_are_valid(name):
    path = Path(__file__).parents[2] / "configs" / "backtest" / f"{name}.yaml"
    if name == "default_episode_accounts":  # building its book runs the episode: validate the file only
        from sim.experiment.backtest.run import _regime_entries, load_backtest

        cfg, root = load_backtest(path)
        assert _regime_entries(cfg, root)
        return
    plan = prepare(path)
    assert plan.regimes and plan.book.positions.n_accounts > 0


def test_blocks_and_workers_do_not_change_the_figures(tmp_path, monkeypatch):
    import sim.experiment.backtest.run as run_module

    cfg = config(tmp_path, days=700, warmup_days=300, report_portfolios=3)
    cfg["portfolios"]["random"] = {"count": 7, "seed": 1}
    cfg["regimes"] = {"var": cfg["regimes"]["var"] | {"lookback_days": 250}, "span": "span"}
    whole = backtest(cfg, write=False)
    monkeypatch.setattr(run_module, "CHUNK", 3)  # 10 portfolios -> blocks of 2, 3, 3, 2
    split = backtest(cfg, write=False, workers=2)
    assert split.summary == whole.summary
    for label in whole.results:
        a, b = whole.results[label], split.results[label]
        for key in a.per_portfolio:
            assert np.array_equal(a.per_portfolio[key], b.per_portfolio[key], equal_nan=True), (label, key)
        assert np.array_equal(a.shown_margin, b.shown_margin) and np.array_equal(a.exceeding, b.exceeding)
        assert np.allclose(a.margin_total, b.margin_total, rtol=1e-12)


def test_a_csv_replay_is_a_backtest_path(tmp_path):
    prices = 100.0 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 0.02, 400)))
    rows = "\n".join(f"{k * 86400},{float(p)!r}" for k, p in enumerate(prices))
    (tmp_path / "btc.csv").write_text("timestamp,BTC\n" + rows + "\n")
    cfg = config(tmp_path, days=399, warmup_days=300, horizon_days=1,
                 paths={"models": [{"kind": "replay", "path": str(tmp_path / "btc.csv"),
                                    "allow_outside_config_folder": True}]})  # a file outside the working tree
    cfg["regimes"] = {"span": "span"}
    plan = prepare(cfg)
    got, _ = path_of(plan.config, plan.book.table)
    assert np.array_equal(got[:, 0], prices)  # the file's numbers, bit for bit
    out = backtest(cfg, write=False)
    span = build_regime("span", plan.book.table)
    runs = run_days(400, 300, 1, 1)
    loss = realised_losses(plan.book, got, np.full_like(got, 0.5), runs, 1)
    req = requirement_series(span, plan.book, got, np.full_like(got, 0.5), runs)
    assert out.results["span"].per_portfolio["exceedances"].tolist() == (loss > req).sum(axis=0).tolist()


def test_backtest_tasks_are_dealt_dearest_first():
    """The pool gets var_apc's blocks first (the long pole) and the cheap regimes last; a regime it does
    not know counts as the dearest; the cost grows with the block's portfolios and runs."""
    from sim.experiment.costs import backtest_task_cost

    ranked = sorted(["standard", "span", "var", "portfolio_joint", "var_apc"],
                    key=lambda r: -backtest_task_cost(r, 5000, 2519))
    assert ranked == ["var_apc", "var", "portfolio_joint", "span", "standard"]
    assert backtest_task_cost("new_regime", 10, 10) == backtest_task_cost("var_apc", 10, 10)
    assert backtest_task_cost("var", 2000, 100) == 2 * backtest_task_cost("var", 1000, 100)


def test_a_unit_of_var_regimes_costs_less_than_its_regimes_apart():
    """var run after var_apc takes var_apc's lookback measure: the unit is dearer than var_apc
    alone (it is dealt first) and cheaper than the two apart."""
    from sim.experiment.costs import backtest_task_cost

    unit = backtest_task_cost(["var", "var_apc"], 5000, 2519)
    assert backtest_task_cost("var_apc", 5000, 2519) < unit
    assert unit < backtest_task_cost("var_apc", 5000, 2519) + backtest_task_cost("var", 5000, 2519)
    assert backtest_task_cost(["span"], 10, 10) == backtest_task_cost("span", 10, 10)


def _files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _small_span_file(tmp_path):
    """A short SPAN backtest written to a file (the CLI reads files)."""
    cfg = config(tmp_path, days=500, warmup_days=300, report=False)
    cfg["regimes"] = {"span": "span"}
    path = tmp_path / "bt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("earlier", ["backtest", "run"])
def test_an_earlier_results_folder_is_replaced_only_with_force(tmp_path, capsys, monkeypatch, earlier):
    """Regression: a re-run replaced its own earlier folder unasked, and the refusal of another
    command's folder told the user to pass a --force that backtest did not have. Now any earlier
    clearsim folder is refused (before anything runs, nothing in it changed) and --force replaces it."""
    import sim.experiment.backtest.run as bt_run
    from sim.experiment.outdir import OutputFolderError, write_marker

    path = _small_span_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    write_marker(out, earlier)
    (out / "summary.json").write_text("the earlier results")
    before = _files(out)
    with monkeypatch.context() as m:  # a refusal comes before the path is generated
        m.setattr(bt_run, "path_of", lambda *a: pytest.fail("the backtest ran before the refusal"))
        assert main(["backtest", str(path), "--out", str(out)]) == 2
        assert "holds earlier clearsim results; pass --force (force=True)" in capsys.readouterr().err
        with pytest.raises(OutputFolderError, match="holds earlier clearsim results"):
            backtest(str(path), output=out)
    assert _files(out) == before
    assert main(["backtest", str(path), "--out", str(out), "--force", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["name"] == "normal"
    again = backtest(str(path), output=out, force=True)  # the API's force does the same
    assert again.directory == out


def test_a_folder_clearsim_did_not_write_is_refused_even_with_force(tmp_path, capsys):
    from sim.experiment.outdir import OutputFolderError

    path = _small_span_file(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["backtest", str(path), "--out", str(out), "--force"]) == 2
    assert "was not written by clearsim" in capsys.readouterr().err
    with pytest.raises(OutputFolderError, match="was not written by clearsim"):
        backtest(str(path), output=out, force=True)
    assert _files(out) == {Path("notes.txt"): b"keep me"}


@pytest.mark.parametrize(("content", "reason"), [
    (None, "no such portfolio file"),
    ("accounts: 3\n", "is not a valid portfolio file"),
    ("accounts: [a\n", ""),
])
def test_a_bad_portfolio_file_is_named_by_its_field(tmp_path, content, reason):
    """A missing, invalid or unreadable portfolio file is reported under ``portfolios.file`` (the
    field pointing at it), with the file's own reason, before anything runs."""
    cfg = config(tmp_path, days=500, warmup_days=300)
    book = tmp_path / "other.yaml"
    if content is not None:
        book.write_text(content)
    cfg["portfolios"] = {"file": str(book)}
    with pytest.raises(ConfigError, match=r"^portfolios\.file: .*" + reason):
        backtest(cfg, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()
