"""The regime comparison: paired seeds, the interval arithmetic, labels, the per-group block, the
files and the report (rendered and read back: every figure, human numbers, units in headers)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

import sim.experiment.api
import sim.experiment.compare
from sim.experiment.api import compare
from sim.experiment.variants import regime_variants
from sim.experiment.runs import resolve
from sim.experiment.cli import EXIT_BAD_INPUT, main
from sim.experiment.compare import Metric, metrics_for, paired_stats, parse_regimes_option
from sim.experiment.variants import slug
from sim.experiment.compare_report import FIGURES
from sim.experiment.errors import ConfigError
from sim.experiment.config import parse_episode
from sim.experiment.fmt import quantity, significant
from sim.experiment.metrics.groups import group_margin

SMALL = {
    "name": "small",
    "seed": 3,
    "duration": 150.0,
    "market": {"instruments": [
        {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.001},
    ]},
    "paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50000.0, "vol": 0.8}]}],
              "shocks": [{"kind": "crash", "start": 60.0, "drop": 0.08, "duration": 60.0}]},
    "population": {"groups": [
        {"type": "market_maker", "count": 2, "capital": 5_000_000.0, "instruments": ["BTC-PERP"],
         "size": 500, "levels": 3, "max_inventory": 20000},
        {"type": "noise", "count": 10, "capital": 20000.0, "instruments": ["BTC-PERP"], "rate": 0.05},
        {"type": "leveraged", "name": "longs", "count": 15, "capital": 10000.0, "instruments": ["BTC-PERP"],
         "leverage": 15.0, "long_prob": 1.0, "entry_delay": {"dist": "uniform", "low": 0.0, "high": 30.0}},
    ]},
    "compare_regimes": [{"regime": "standard", "label": "standard 5%/2.5%"}, {"regime": "portfolio"}],
    "outputs": {"sample_interval": 20.0, "counterfactual": True},  # each run with its no-feedback twin, as the default
}


# ----------------------------------------------------------------------------------- interval arithmetic
M = [Metric("x", "x", "money")]


def _rows(base: list[float], other: list[float]) -> list[dict]:
    return ([{"regime": "a", "seed": k, "x": v} for k, v in enumerate(base)]
            + [{"regime": "b", "seed": k, "x": v} for k, v in enumerate(other)])


def test_paired_interval_known_answer():
    """d = (1, 2, 3): mean 2, sd 1, n 3, t(0.975, 2) = 4.302652729911275 -> 2 +/- 2.484138 (contains 0)."""
    (a, b) = paired_stats(_rows([10.0, 20.0, 30.0], [11.0, 22.0, 33.0]), ["a", "b"], M)
    assert a["verdict"] == "baseline" and a["mean"] == 20.0 and a["std"] == 10.0
    half = 4.302652729911275 / math.sqrt(3)
    assert b["diff_mean"] == pytest.approx(2.0)
    assert b["diff_low"] == pytest.approx(2.0 - half) and b["diff_high"] == pytest.approx(2.0 + half)
    assert b["verdict"] == "within seed noise" and b["pairs"] == 3


def test_paired_differences_cancel_the_path_noise():
    """Large seed-to-seed spread, constant paired difference: the interval is exactly that difference."""
    (_a, b) = paired_stats(_rows([1.0, 500.0, 90.0], [1.5, 500.5, 90.5]), ["a", "b"], M)
    assert b["diff_low"] == pytest.approx(0.5) and b["diff_high"] == pytest.approx(0.5)
    assert b["verdict"] == "distinguishable from seed noise"


def test_identical_regimes_and_single_seeds():
    (_a, b) = paired_stats(_rows([1.0, 2.0], [1.0, 2.0]), ["a", "b"], M)
    assert b["verdict"] == "identical on every seed" and b["diff_mean"] == 0.0
    (_a, b) = paired_stats(_rows([1.0], [3.0]), ["a", "b"], M)
    assert b["verdict"] == "one seed: no interval" and b["diff_mean"] == 2.0 and b["diff_low"] is None
    rows = _rows([1.0, 2.0], [None, None])  # type: ignore[list-item]
    (_a, b) = paired_stats(rows, ["a", "b"], M)
    assert b["verdict"] == "not measured" and b["mean"] is None


def test_metric_list_picks_up_other_parts_keys_and_groups():
    summary = {"losses": {"who_paid": {"vault": 3.0, "insurance_fund": 1.0}, "borne_by_others": 4.0},
               "counterfactual": {"venue_drawdown_amplification": 1.2}, "groups": {"basis": {"leverage": 9.0}}}
    metrics = metrics_for([summary])
    keys = [m.key for m in metrics]
    assert "losses.borne_by_others" in keys and "losses.who_paid.vault" in keys
    assert "counterfactual.venue_drawdown_amplification" in keys and "groups.basis.leverage" in keys
    units = {m.key: m.unit for m in metrics}  # a ratio against the twin in ×, a difference in money
    assert units["counterfactual.venue_drawdown_amplification"] == "x"
    assert units["counterfactual.liquidated_notional_difference"] == "money"
    assert keys.count("losses.borne_by_others") == 1


def test_every_headline_figure_has_a_label_and_a_unit():
    """``metric_of`` is the one lookup from a summary key to (label, unit): every headline figure
    has a human label and a unit there (none falls back to its own words), and the table's own
    metrics, dynamic families and group fields read the same as ``metrics_for`` lists them."""
    from sim.experiment.compare import metric_of
    from sim.experiment.metrics import HEADLINE

    for key, _label in HEADLINE:
        m = metric_of(key)
        assert m.unit and "." not in m.label and "›" not in m.label, key
    summary = {"losses": {"who_paid": {"vault": 3.0}}, "groups": {"basis": {"leverage": 9.0}}}
    assert all(metric_of(m.key) == m for m in metrics_for([summary]))
    assert metric_of("liquidations.by_policy.book.notional").label == "liquidations › by policy › book › notional"


def test_every_reference_rate_figure_is_compared_in_its_own_unit():
    """The procyclicality block of a summary (``metrics.margin._procyclicality`` plus the window's
    first and last rate): each figure but the sample count and the times of the rises is a row,
    rates as ratios, the relative rise in %. (A prefix rule once showed times and counts as "ratio".)"""
    from sim.experiment.metrics.margin import _procyclicality

    block = _procyclicality(np.array([0.0, 10.0]), np.array([0.05, 0.06]), 0.0, 5.0)
    keys = set(block) | {"at_measure_from", "final"}
    units = {m.key.removeprefix("margin.reference_rate."): m.unit for m in metrics_for([{}])
             if m.key.startswith("margin.reference_rate.")}
    assert set(units) == {k for k in keys if k != "samples" and not k.endswith("_time")}
    assert units["max_increase_relative"] == "fraction" and units["peak_to_trough_ratio"] == "x"
    assert units["peak"] == units["trough"] == units["max_increase"] == "ratio"


# ----------------------------------------------------------------------------------- numbers for people
@pytest.mark.parametrize("value, unit, text", [
    (1_234_567.0, "money", "1.23 M"), (2.5e9, "money", "2.50 B"), (950.0, "money", "950"),
    (-12_500.0, "money", "−12.5 K"), (-309_000.0, "money", "−309 K"), (0.99996, "x", "1.00×"), (0.5526, "fraction", "55.3 %"), (2.004981776e-05, "ratio", "0.0000200"),
    (1510.0, "count", "1,510"), (20.666, "count", "20.7"), (1.0644, "x", "1.06×"), (None, "money", "—"),
    (0.0, "ratio", "0"),
])
def test_formatting(value, unit, text):
    assert quantity(value, unit) == text


def test_significant_never_uses_scientific_notation():
    for v in (1e-7, 3.3e-5, 1e12, 123456789.123, 7e20):
        assert "e" not in significant(v).lower()


# ----------------------------------------------------------------------------------- labels
def test_labels_name_variants_and_must_be_unique():
    cfg = parse_episode(SMALL)
    variants = regime_variants(cfg, None)
    assert list(variants) == ["standard 5%/2.5%", "portfolio"]
    assert variants["standard 5%/2.5%"].name == "small.standard_5pct_2.5pct"
    two = [{"regime": "standard", "label": "std tiers"}, {"regime": "standard"}, {"regime": "standard"}]
    assert list(regime_variants(cfg, two)) == ["std tiers", "standard", "standard_2"]
    # a labelled bare name of the episode's own regime keeps the episode's settings, as a bare name does
    own = regime_variants(cfg, parse_regimes_option("tiers=standard"))["tiers"].margin
    assert own.label == "tiers" and own.model_dump(exclude={"label"}) == cfg.margin.model_dump(exclude={"label"})
    with pytest.raises(ConfigError, match=r"regimes\.1\.label: 'x' already names another regime"):
        regime_variants(cfg, [{"regime": "standard", "label": "x"}, {"regime": "span", "label": "x"}])
    # an episode's own list is named as the episode's field
    clash = parse_episode(dict(SMALL, compare_regimes=[{"regime": "standard", "label": "x"},
                                                       {"regime": "span", "label": "x"}]))
    with pytest.raises(ConfigError, match=r"compare_regimes\.1\.label: 'x' already names another regime"):
        regime_variants(clash, None)


# The CCP set's VaR entries: the ES one read `var_2` in `clearsim compare`, `var_filtered_es_97.5` in
# `clearsim backtest`; one rule now names both.
VAR_REPEATS = ["var", {"regime": "var", "method": "filtered", "measure": "es", "confidence": 0.975}]


def _backtest_labels(tmp_path: Path, entries: list) -> list[str]:
    """The labels ``clearsim backtest`` gives ``entries`` read as a regime_set."""
    from sim.experiment.backtest.run import _regime_entries, load_backtest

    (tmp_path / "set.yaml").write_text(yaml.safe_dump({"compare_regimes": entries}))
    (tmp_path / "book.yaml").write_text(yaml.safe_dump({
        "name": "book", "underlyings": {"BTC": {"price": 100.0, "vol": 0.5}},
        "instruments": [{"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC"}],
        "accounts": [{"name": "long", "positions": {"BTC-PERP": 1}}]}))
    cfg, root = load_backtest({
        "name": "labels", "days": 50, "warmup_days": 10,
        "paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 100.0, "vol": 0.5}]}]},
        "portfolios": {"file": str(tmp_path / "book.yaml")}, "regimes": {},
        "regime_set": str(tmp_path / "set.yaml"), "report": False})
    return list(_regime_entries(cfg, root))


def test_unlabelled_repeats_are_named_as_the_backtest_names_them(tmp_path):
    """An unlabelled repeat of a regime is labelled by what differs from the entry holding the
    name, in a comparison as in a backtest of the same entries -- the CCP set's whole list too."""
    cfg = parse_episode(SMALL)
    assert list(regime_variants(cfg, VAR_REPEATS)) == _backtest_labels(tmp_path, VAR_REPEATS) == [
        "var", "var_filtered_es_97.5"]
    ccp_file = Path(__file__).parents[2] / "configs" / "regimes" / "ccp.yaml"
    ccp = yaml.safe_load(ccp_file.read_text())["compare_regimes"]
    assert list(regime_variants(cfg, ccp)) == _backtest_labels(tmp_path, ccp) == [
        "span", "tims", "var", "var_apc", "var_filtered_es_97.5"]
    # the control: nothing differs, so the repeat is numbered, in both
    same = ["standard", {"regime": "standard"}]
    assert list(regime_variants(cfg, same)) == _backtest_labels(tmp_path, same) == ["standard", "standard_2"]
    # an explicit label still wins, and a repeat of it is told apart from it by its settings
    own = [{"regime": "var", "label": "my var"}, "var", {"regime": "var", "mpor_days": 5}]
    assert list(regime_variants(cfg, own)) == _backtest_labels(tmp_path, own) == ["my var", "var", "var_mpor_days=5"]


def test_a_comparisons_folders_are_named_by_the_descriptive_labels(tmp_path):
    """The folders of a comparison of two unlabelled VaR entries are the backtest's labels made
    file-safe (``var_filtered_es_97.5``, not ``var_2``)."""
    short = dict(SMALL, duration=80.0, outputs={"sample_interval": 20.0, "counterfactual": False, "report": False})
    out = compare(parse_episode(short), VAR_REPEATS, output=tmp_path / "cmp")
    labels = _backtest_labels(tmp_path, VAR_REPEATS)
    assert list(out.runs) == [(label, SMALL["seed"]) for label in labels]
    assert [p.name for p in sorted(out.directory.iterdir()) if p.is_dir()] == sorted(slug(x) for x in labels)
    assert (out.directory / "var_filtered_es_97.5" / "summary.json").exists()


def test_regimes_option():
    assert parse_regimes_option("standard, pm=portfolio") == ["standard", {"regime": "portfolio", "label": "pm"}]
    assert parse_regimes_option("[{regime: standard, label: std 5%}, span]") == [
        {"regime": "standard", "label": "std 5%"}, "span"]
    assert slug("standard 5%/2.5%") == "standard_5pct_2.5pct"


def test_bad_seeds_fail_before_running(tmp_path, capsys):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(SMALL), encoding="utf-8")
    assert main(["compare", str(path), "--seeds", "0", "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert "seeds: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------- per-group block
def test_group_margin_known_answer():
    """Two samples; group a (accounts 10, 11) and group b (12, flat). IM / gross = sum IM / sum gross."""
    tables = {
        "directory": {"account": np.array([0, 10, 11, 12]),
                      "group": np.array(["system", "a", "a", "b"], dtype=object),
                      "type": np.array(["system", "pair_trader", "pair_trader", "noise"], dtype=object),
                      "initial_capital": np.array([0.0, 100.0, 300.0, 50.0]) * 1e6},
        "accounts": {"time": np.array([0.0, 0.0, 0.0, 30.0, 30.0, 30.0]),
                     "account": np.array([10, 11, 12, 10, 11, 12]),
                     "im": np.array([10, 30, 0, 20, 40, 0], dtype=float) * 1e6,
                     "gross": np.array([100, 300, 0, 200, 200, 0], dtype=float) * 1e6,
                     "equity": np.array([100, 300, 50, 100, 100, 50], dtype=float) * 1e6},
        "liquidations": {"account": np.array([11, 11]), "notional": np.array([5e6, 7e6])},
    }
    g = group_margin(tables, 1e6)
    a, b = g["a"], g["b"]
    assert a["accounts"] == 2 and a["capital"] == 400.0 and a["agent_type"] == "pair_trader"
    assert a["im_over_gross"] == pytest.approx(100 / 800)
    assert a["leverage"] == pytest.approx(800 / 600) and a["leverage_peak"] == pytest.approx(2.0)
    assert a["im_mean"] == pytest.approx(50.0) and a["im_over_capital"] == pytest.approx(50.0 / 400.0)
    assert a["liquidations"] == 2 and a["liquidated_notional"] == pytest.approx(12.0)
    # the control that must be zero: a group that never holds a position
    assert b["im_over_gross"] is None and b["leverage"] == 0.0 and b["im_mean"] == 0.0 and b["liquidations"] == 0


# ----------------------------------------------------------------------------------- whole comparisons
def compare_recording_paths(*args, **kwargs):
    """``compare`` in this process, recording (regime label, seed, SHA-256 of the true path's bytes)
    of every run (not its no-feedback twin)."""
    seen: list[tuple[str, int, str]] = []
    original = sim.experiment.compare.run_compare_task

    def recording(task):
        result = original(task)
        if result["part"] == "run":
            digest = hashlib.sha256(np.ascontiguousarray(result["tables"]["oracle"]["true"]).tobytes()).hexdigest()
            seen.append((task["label"], task["seed"], digest))
        return result

    sim.experiment.compare.run_compare_task = recording
    try:
        return compare(*args, **kwargs), seen
    finally:
        sim.experiment.compare.run_compare_task = original


def assert_paired(seen, labels, seeds) -> None:
    assert sorted((r, s) for r, s, _d in seen) == sorted((r, s) for r in labels for s in seeds)
    by_seed: dict[int, set[str]] = {}
    for _r, s, d in seen:
        by_seed.setdefault(s, set()).add(d)
    assert all(len(d) == 1 for d in by_seed.values())  # same bytes across regimes
    assert len({next(iter(d)) for d in by_seed.values()}) == len(seeds)  # a different path on each seed


@pytest.fixture(scope="module")
def small_compare(tmp_path_factory):
    """SMALL under two labelled regimes on 2 paired seeds, recording each run's true path bytes."""
    return compare_recording_paths(parse_episode(SMALL), output=tmp_path_factory.mktemp("cmp") / "cmp", seeds=2)


def test_pairing_seed_k_is_the_same_true_path_under_every_regime(small_compare):
    out, seen = small_compare
    assert out.seeds == [3, 4]
    assert_paired(seen, ("standard 5%/2.5%", "portfolio"), (3, 4))


def test_comparison_files(small_compare):
    out, _seen = small_compare
    d = out.directory
    table = pq.read_table(d / "comparison.parquet").to_pylist()
    assert [(r["regime"], r["seed"]) for r in table] == [
        ("standard 5%/2.5%", 3), ("standard 5%/2.5%", 4), ("portfolio", 3), ("portfolio", 4)]
    printed = {s["metric"] for s in out.stats}
    assert printed <= set(table[0]) and "groups.longs.im_over_gross" in printed
    schema = pq.read_schema(d / "comparison.parquet")
    assert str(schema.field("losses.borne_by_others").type) == "double"  # absent here, still numeric
    assert str(schema.field("liquidations.count").type) == "double" and str(schema.field("seed").type) == "int64"
    assert json.loads((d / "comparison.json").read_text()) == out.rows
    # each task's CPU seconds and arithmetic, apart from the deterministic files
    from sim.core.arithmetic import profile

    tasks = json.loads((d / "timing.json").read_text())["tasks"]
    assert sorted((t["regime"], t["seed"], t["part"]) for t in tasks) == sorted(
        (label, seed, part) for label in ("standard 5%/2.5%", "portfolio") for seed in (3, 4) for part in ("run", "twin"))
    assert all(t["arithmetic"] == profile() and t["cpu_seconds"] > 0 for t in tasks)
    assert "arithmetic" not in (d / "comparison.json").read_text()
    intervals = pq.read_table(d / "intervals.parquet").to_pylist()
    assert len(intervals) == 2 * len(printed)
    # the exogenous path is the same under both regimes on each seed: the paired difference is 0
    true_dd = {(s["regime"], s["metric"]): s for s in out.stats}[("portfolio", "bad_debt.total")]
    assert true_dd["pairs"] == 2
    for label in ("standard_5pct_2.5pct", "portfolio"):
        assert (d / label / "report.html").is_file() and (d / label / "accounts.parquet").is_file()
        assert json.loads((d / label / "summary.json").read_text())["run"]["seed"] == 3


def test_report_renders_every_figure_and_formats_every_cell(small_compare):
    out, _seen = small_compare
    page = (out.directory / "report.html").read_text(encoding="utf-8")
    for fid in FIGURES:
        assert f'<figure id={fid}><img alt="{fid}" src="data:image/png;base64,' in page, fid
    text = re.sub(r'src="data:[^"]+"', "", page)
    assert not re.search(r"\d[eE][+-]?\d", text), "scientific notation in the report"
    assert "nan" not in re.sub(r"<[^>]+>", " ", text).lower().split()
    # units in every metric header: the first column of the headline table
    headline = text.split("<h2>Headline</h2>", 1)[1].split("</table>", 1)[0]
    row_heads = re.findall(r"<tr><th>([^<]+)</th><td", headline)
    assert row_heads and all(re.search(r"\((USD|count|ratio|%|×|s)\)$", h) for h in row_heads), row_heads
    # the reference portfolio's procyclicality rows: rates as ratios, when in seconds, nothing counted as a rate
    reference = {h for h in row_heads if h.startswith("reference portfolio")}
    assert "reference portfolio IM / gross: peak / trough (×)" in reference, reference
    assert "reference portfolio IM / gross: largest relative rise over the horizon (%)" in reference
    assert not any("samples" in h or "time" in h for h in reference), reference
    # each regime's verdicts in the headline table are exactly those of the interval statistics
    shown = sorted(re.findall(r"<span class='v [a-z]+'>([^<]+)</span>", headline))
    expected = sorted(s["verdict"] for s in out.stats if not s["metric"].startswith("groups.")
                      and s["verdict"] not in (None, "baseline", "not measured", "one seed: no interval"))
    assert shown and shown == expected
    for folder in ("standard_5pct_2.5pct", "portfolio"):
        assert f'href="{folder}/report.html"' in page
    # linked pages are the regimes' own reports
    assert "standard 5%/2.5%" in page


def test_the_accounts_table_names_every_trader_account(small_compare):
    out, _seen = small_compare
    directory = pq.read_table(out.directory / "portfolio" / "accounts.parquet").to_pydict()
    sampled = pq.read_table(out.directory / "portfolio" / "account_states.parquet").column("account").to_numpy()
    assert set(sampled.tolist()) <= set(directory["account"])
    assert directory["group"].count("longs") == 15 and set(directory["group"]) >= {"market_maker", "noise", "longs"}
    longs = [c for g, c in zip(directory["group"], directory["initial_capital"]) if g == "longs"]
    assert longs == [10000.0] * 15


def test_pool_backend_gives_the_same_rows(small_compare, tmp_path):
    """Two worker processes produce exactly the rows the in-process run did (same seeds, same bytes)."""
    out, _seen = small_compare
    pooled = compare(parse_episode(SMALL), write=False, seeds=2, workers=2)
    assert pooled.rows == out.rows


@pytest.mark.slow
def test_default_episode_hedged_groups_get_relief_under_portfolio_margin():
    """The issue's claims on the packaged default: portfolio margin gives the hedged books (basis,
    condors, delta-hedged straddles) a lower IM / gross than standard; directional books pay more;
    at least one regime leaves a loss on others, and the regimes differ in who paid. Without the
    no-feedback twins, which none of these figures reads (half the test's time)."""
    out = compare(resolve(None, {"outputs": {"counterfactual": False}}), ["standard", "portfolio"], write=False,
                  workers=2)
    std, pm = (out.summaries[r]["groups"] for r in ("standard", "portfolio"))
    for hedged in ("basis", "condors", "delta_hedger"):
        assert pm[hedged]["im_over_gross"] < std[hedged]["im_over_gross"], hedged
    assert pm["levered_longs"]["im_over_gross"] > std["levered_longs"]["im_over_gross"]
    # and the crash leaves a loss on others under at least one regime, paid by different layers
    losses = {r: out.summaries[r]["losses"] for r in ("standard", "portfolio")}
    assert max(v["insurance_fund_paid"] for v in losses.values()) > 0
    assert losses["standard"]["by_layer"] != losses["portfolio"]["by_layer"]


@pytest.mark.distributed
def test_dask_backend_gives_the_same_rows(small_compare):
    """The sweep's Dask executor runs a comparison to exactly the in-process rows."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'clearsim[dask]')")
    out, _seen = small_compare
    pooled = compare(parse_episode(SMALL), write=False, seeds=2, backend="dask", workers=2)
    assert pooled.rows == out.rows


@pytest.mark.slow
def test_default_episode_five_paired_seeds_give_an_interval_for_every_metric():
    """``compare --seeds 5`` on the packaged default (cut to its first 20 minutes and a fifth of the
    traders, so it runs in about a minute): seed k is the same true path under both regimes, and
    every metric either regime carries gets an interval (or is identical on every seed)."""
    from sim.experiment.config import PACKAGED_DEFAULT
    from sim.experiment.io import read_yaml

    data = read_yaml(PACKAGED_DEFAULT)
    data["duration"] = 1200.0
    for g in data["population"]["groups"]:
        if g.get("count", 1) > 5:
            g["count"] = max(5, g["count"] // 5)
        if "entry_delay" in g:
            g["entry_delay"] = {"dist": "uniform", "low": 0.0, "high": 300.0}
    data["paths"]["shocks"] = [{"kind": "crash", "underlyings": ["BTC", "ETH", "ALT"], "start": 600.0,
                                "drop": 0.15, "duration": 300.0}]
    data["outputs"]["counterfactual"] = False  # the pairing and the intervals are the run's own: no twins
    out, seen = compare_recording_paths(parse_episode(data), ["standard", "portfolio"], write=False, seeds=5)
    seeds = [data["seed"] + k for k in range(5)]
    assert_paired(seen, ("standard", "portfolio"), seeds)
    carried = {k for r in out.rows for k, v in r.items() if v is not None}
    verdicts = {s["metric"]: s["verdict"] for s in out.stats if s["regime"] == "portfolio" and s["metric"] in carried}
    assert verdicts and set(verdicts.values()) <= {"distinguishable from seed noise", "within seed noise",
                                                   "identical on every seed"}, verdicts
    assert all(s["n"] == 5 for s in out.stats if s["metric"] == "liquidations.count")


# ----------------------------------------------------------------------------------- split run / twin tasks
def test_split_tasks_give_the_serial_summaries(small_compare):
    """A pair's run and its no-feedback twin are two pool tasks summarised in the driver: every
    (regime, seed) summary equals the one ``run_variant`` makes running both in turn in one process."""
    out, _seen = small_compare
    variants = regime_variants(parse_episode(SMALL), None)
    for (label, seed), summary in out.runs.items():
        data = variants[label].model_dump(mode="json")
        data["seed"] = seed
        serial, _tables = sim.experiment.api.run_variant(parse_episode(data))
        assert summary == serial, (label, seed)
        assert "counterfactual" in summary  # the twin was used
    assert sorted(out.cpu_seconds) == sorted((label, seed, part) for (label, seed) in out.runs for part in ("run", "twin"))
    assert all(c > 0 for c in out.cpu_seconds.values())


def test_split_tasks_have_distinct_keys_and_run_longest_first():
    from sim.experiment.compare import plan_tasks, task_cost, task_key

    variants = regime_variants(parse_episode(SMALL), ["standard", "var_apc", "span"])
    tasks = plan_tasks(variants, [3, 4])
    keys = [task_key(t) for t in tasks]
    assert len(keys) == len(set(keys)) == 3 * 2 * 2  # regime x seed x (run, twin)
    assert {(t["label"], t["seed"]) for t in tasks if t["part"] == "twin"} == {
        (t["label"], t["seed"]) for t in tasks if t["part"] == "run"}
    costs = [task_cost(t) for t in tasks]
    assert costs == sorted(costs, reverse=True) and tasks[0]["label"] == "var_apc"
    # outputs.counterfactual off: no twin tasks at all
    off = regime_variants(parse_episode(dict(SMALL, outputs={"sample_interval": 20.0})), None)
    assert {t["part"] for t in plan_tasks(off, [3])} == {"run"}


# ----------------------------------------------------------------------------------- progress
def test_progress_fields_come_from_the_counters():
    """Finished runs' own counters, over a (fake) wall clock: 2 of 4 runs, 300 of 600 simulated
    seconds, 4,000 events in 2 s = 2K events/s; nothing done is the zero control."""
    from sim.experiment.progress import EpisodeProgress, fields

    now = [10.0]
    p = EpisodeProgress(False, runs=4, sim_seconds=600.0, clock=lambda: now[0])
    with p:
        zero = p.counters()
        assert (zero.runs_done, zero.sim_seconds, zero.events, zero.events_per_s) == (0, 0.0, 0, 0.0)
        p.run_done(1000, 150.0)
        p.run_done(3000, 150.0)
        now[0] = 12.0
        c = p.counters()
    assert (c.runs_done, c.runs, c.sim_seconds, c.sim_total, c.events, c.elapsed) == (2, 4, 300.0, 600.0, 4000, 2.0)
    assert fields(c) == {"runs": "2/4 runs", "sim": "300 / 600 sim s", "rate": "2K events/s"}


def test_progress_heartbeats_read_running_episodes(tmp_path, monkeypatch):
    """A worker's heartbeat file holds its episode's clock and events processed; the display adds
    the runs in flight to the finished ones. ``live_counts`` on a finished episode reads its last
    clock and its events (plus the one id the run's own statistic drew)."""
    import io

    from rich.console import Console

    import sim.experiment.progress
    from sim.experiment.episode import run as run_episode
    from sim.experiment.progress import EpisodeProgress, heartbeat, live_counts

    cfg = parse_episode(SMALL)
    result = run_episode(cfg, keep_episode=True)
    assert live_counts(result.episode) == (cfg.duration, result.stats["events"] + 1)

    monkeypatch.setattr(sim.experiment.progress, "BEAT_SECONDS", 0.001)
    screen = Console(file=io.StringIO(), force_terminal=True, width=150)
    with EpisodeProgress(True, runs=3, sim_seconds=450.0, console=screen) as p:
        with heartbeat(p.heartbeat_dir, "a|3|run") as observe:
            watched = run_episode(cfg, observe=observe)
        beats = [f.read_text().split() for f in Path(p.heartbeat_dir).iterdir()]
        assert len(beats) == 1
        sim_s, events = float(beats[0][0]), int(beats[0][1])
        # a beat after the run's end also sees the id its statistic drew
        assert 0.0 < sim_s <= cfg.duration and 0 < events <= watched.stats["events"] + 1
        live = p.counters()
        assert (live.runs_done, live.sim_seconds, live.events) == (0, sim_s, events)
        p.run_done(watched.stats["events"], cfg.duration, key="a|3|run")  # the exact figures replace the beat
        done = p.counters()
    assert (done.runs_done, done.sim_seconds, done.events) == (1, cfg.duration, watched.stats["events"])
    timeless = ("wall_seconds",)
    assert ({k: v for k, v in watched.stats.items() if k not in timeless}
            == {k: v for k, v in result.stats.items() if k not in timeless})  # watching changes nothing


def test_compare_progress_counts_every_run_and_twin():
    """The comparison's display ends with every task's own counters: 2 regimes x (run + twin)."""
    import io

    from rich.console import Console

    from sim.experiment.progress import EpisodeProgress

    events: list[int] = []
    original = sim.experiment.compare.run_compare_task

    def recording(task):
        result = original(task)
        events.append(result["stats"]["events"])
        return result

    p = EpisodeProgress(True, runs=0, console=Console(file=io.StringIO(), force_terminal=True, width=150))
    sim.experiment.compare.run_compare_task = recording
    try:
        compare(parse_episode(SMALL), write=False, progress=p)
    finally:
        sim.experiment.compare.run_compare_task = original
    c = p.counters()
    assert (c.runs_done, c.runs, c.events) == (4, 4, sum(events)) and c.sim_seconds == 4 * SMALL["duration"]


def test_compare_validates_each_variant_once_and_matches_a_parse_per_seed(monkeypatch):
    """The episode is validated once per regime (and once per twin), whatever the number of seeds:
    a seed's config is the variant with its seed replaced. The summaries equal the old path's, which
    re-parsed the variant's dump with each seed and ran it (and its twin) with ``run_variant``."""
    from sim.experiment.schema.episode import EpisodeConfig
    from sim.experiment.variants import run_variant

    cfg = parse_episode(SMALL)
    validate = EpisodeConfig.model_validate.__func__
    calls: list[int] = []

    def counting(cls, *args, **kwargs):
        calls.append(1)
        return validate(cls, *args, **kwargs)

    monkeypatch.setattr(EpisodeConfig, "model_validate", classmethod(counting))
    one = compare(cfg, write=False, seeds=1)
    parses_one = len(calls)
    calls.clear()
    out = compare(cfg, write=False, seeds=3)
    assert parses_one == len(calls) == 2 * 2  # (standard, portfolio) x (run, its twin); none per seed
    monkeypatch.undo()

    assert one.runs == {key: s for key, s in out.runs.items() if key[1] == cfg.seed}
    variants = regime_variants(cfg, None)
    for (label, seed), summary in out.runs.items():
        data = variants[label].model_dump(mode="json")
        data["seed"] = seed
        old, _tables = run_variant(parse_episode(data))
        assert summary == old, (label, seed)
    assert len({json.dumps(s["losses"], sort_keys=True, default=str) for s in out.runs.values()}) > 1  # seeds differ
