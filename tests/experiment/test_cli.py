"""The command line and the Python API: bad inputs fail before anything runs and write nothing;
good ones write a complete results folder; the same config and seed give the same bytes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sim.experiment.api import compare
from sim.experiment.runs import resolve, run
from sim.experiment.cli import EXIT_BAD_INPUT, main
from sim.experiment.errors import ConfigError
from sim.experiment.config import load_episode

SMALL = {
    "name": "small",
    "seed": 3,
    "duration": 240.0,
    "market": {"instruments": [
        {"symbol": "BTC-PERP", "kind": "perpetual", "underlying": "BTC", "tick_size": 1.0, "lot_size": 0.001},
    ]},
    "paths": {"dt": 1.0, "models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50000.0, "vol": 0.8}]}],
              "shocks": [{"kind": "crash", "start": 60.0, "drop": 0.08, "duration": 60.0}]},
    "population": {"groups": [
        {"type": "market_maker", "count": 2, "capital": 5_000_000.0, "instruments": ["BTC-PERP"],
         "size": 500, "levels": 3, "max_inventory": 20000},
        {"type": "noise", "count": 20, "capital": 20000.0, "instruments": ["BTC-PERP"], "rate": 0.05},
        {"type": "leveraged", "count": 20, "capital": 10000.0, "instruments": ["BTC-PERP"], "leverage": 15.0,
         "long_prob": 1.0, "entry_delay": {"dist": "uniform", "low": 0.0, "high": 30.0}},
    ]},
    "compare_regimes": [{"regime": "standard"}, {"regime": "portfolio"}],
    "outputs": {"sample_interval": 20.0},
}


def write(tmp_path: Path, data: dict, name: str = "episode.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def with_(data: dict, **changes) -> dict:
    out = json.loads(json.dumps(data))
    for dotted, value in changes.items():
        node = out
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return out


BAD = {
    "wrong type": (with_(SMALL, duration="a day"), "duration"),
    "unknown key": (with_(SMALL, colour="blue"), "colour"),
    "negative size": (with_(SMALL, population__groups__1__count=-5), "population.groups.1.count:"),
    "non-PSD correlation": (with_(SMALL, paths__models__0={"kind": "gbm", "underlyings": [
        {"name": "BTC", "s0": 1.0, "vol": 0.5}, {"name": "ETH", "s0": 1.0, "vol": 0.5}, {"name": "SOL", "s0": 1.0, "vol": 0.5}],
        "correlation": [[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]]}), "positive semidefinite"),
    "missing replay file": (with_(SMALL, paths__models__0={"kind": "replay", "path": "/nonexistent/prices.csv"}),
                            "paths.models.0.path:"),
    "unknown instrument in population": (with_(SMALL, population__groups__1__instruments=["DOGE-PERP"]),
                                         "unknown instrument 'DOGE-PERP'"),
    "tick value not exact": (with_(SMALL, market__instruments__0__lot_size=0.0000001), "instruments.0 (BTC-PERP)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configs_exit_non_zero_with_the_field_and_write_nothing(tmp_path, capsys, case):
    data, needle = BAD[case]
    path = write(tmp_path, data)
    out = tmp_path / "results"
    assert main(["run", str(path), "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert needle in err, err
    assert not out.exists()
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT


def test_missing_episode_file_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == EXIT_BAD_INPUT
    assert "no such file" in capsys.readouterr().err


def test_extends_merges_and_reports_cycles(tmp_path):
    base = write(tmp_path, SMALL, "base.yaml")
    child = write(tmp_path, {"extends": base.name, "name": "child", "seed": 9}, "child.yaml")
    cfg = load_episode(child)
    assert (cfg.name, cfg.seed, cfg.duration) == ("child", 9, 240.0)
    write(tmp_path, {"extends": "b.yaml"}, "a.yaml")
    write(tmp_path, {"extends": "a.yaml"}, "b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_episode(tmp_path / "a.yaml")


def test_validate_accepts_every_packaged_example(capsys):
    assert main(["validate", str(Path(__file__).parents[2] / "sim" / "episodes" / "default.yaml")]) == 0
    assert "ok" in capsys.readouterr().out


def test_compare_honours_the_outputs_switches(tmp_path):
    """``outputs.report`` and ``outputs.parquet`` switch those files off in a comparison as in a run."""
    data = dict(SMALL, duration=80.0, outputs={"sample_interval": 20.0, "report": False, "parquet": False,
                                               "counterfactual": False})
    out = compare(resolve(write(tmp_path, data)), output=tmp_path / "cmp")
    files = {p.relative_to(out.directory).as_posix() for p in out.directory.rglob("*") if p.is_file()}
    assert {"comparison.json", "comparison.parquet", "standard/summary.json"} <= files
    assert "report.html" not in files and not any("/" in f and f.endswith(".parquet") for f in files), files


def test_unknown_regime_in_compare_fails_before_running(tmp_path, capsys):
    path = write(tmp_path, SMALL)
    out = tmp_path / "cmp"
    assert main(["compare", str(path), "--regimes", "standard,astrology", "--out", str(out)]) == EXIT_BAD_INPUT
    assert "astrology" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_run_writes_a_complete_results_folder_and_is_deterministic(tmp_path):
    path = write(tmp_path, SMALL)
    first = run(path, output=tmp_path / "a")
    second = run(path, output=tmp_path / "b")
    names = {p.name for p in first.directory.iterdir()}
    assert {"summary.json", "config.yaml", "report.html", "trades.parquet", "liquidations.parquet",
            "accounts.parquet", "fund.parquet"} <= names
    assert (first.directory / "summary.json").read_bytes() == (second.directory / "summary.json").read_bytes()
    assert first.summary["liquidations"]["count"] > 0  # the crash liquidates the 15x longs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


@pytest.mark.slow
def test_compare_runs_the_same_path_and_traders_under_each_regime(tmp_path):
    cfg = resolve(write(tmp_path, SMALL))
    out = compare(cfg, output=tmp_path / "cmp")
    assert set(out.summaries) == {"standard", "portfolio"}
    assert (out.directory / "report.html").is_file() and (out.directory / "comparison.json").is_file()
    # same exogenous path in every variant: the true drawdown is identical
    true = {k: s["price"].get("true_drawdown") for k, s in out.summaries.items()}
    assert len(set(true.values())) == 1 and None not in true.values()


def test_runs_hold_blas_to_one_thread_whatever_the_caller_set(monkeypatch):
    """A multithreaded matrix product may sum in another order; a last-bit difference can flip a
    margin comparison, so every run must see exactly one BLAS thread, in any worker."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import sim.experiment.episode

    seen: list[list[int]] = []
    monkeypatch.setattr(sim.experiment.episode, "_run", lambda *a, **k: seen.append(
        [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]))
    with threadpool_limits(limits=2, user_api="blas"):
        sim.experiment.episode.run(None)  # type: ignore[arg-type]
    assert seen and seen[0] and set(seen[0]) == {1}


def test_validate_counts_in_words_that_agree_and_documents_its_argument(capsys):
    """Regression: ``validate configs/mango.yaml`` printed "1 instruments", and ``validate --help``
    gave its one argument no description."""
    mango = Path(__file__).parents[2] / "configs" / "mango.yaml"
    assert main(["validate", str(mango)]) == 0
    out = capsys.readouterr().out
    assert ", 1 instrument, " in out, out
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    help_text = capsys.readouterr().out
    assert re.search(r"\n  config[ \t]+\S", help_text), help_text  # a description on its line


@pytest.mark.parametrize("n, text", [(0, "0 runs"), (1, "1 run"), (2, "2 runs"), (1500, "1,500 runs")])
def test_counted(n, text):
    from sim.experiment.fmt import counted

    assert counted(n, "run") == text


@pytest.mark.parametrize("twin", [False, True])
def test_the_run_table_says_why_the_twins_rows_are_empty(tmp_path, twin):
    """Without the no-feedback twin its rows are dashes: the table says it was not run (and says
    nothing of the kind when it was)."""
    from rich.console import Console

    from sim.experiment.cli import _print_summary

    cfg = load_episode(write(tmp_path, with_(SMALL, outputs={"counterfactual": twin})))
    console = Console(record=True, width=120)
    _print_summary(console, cfg, {}, None)
    text = console.export_text()
    assert "price amplification vs no-feedback run" in text
    assert ("not run (outputs.counterfactual: true runs it)" in text) is not twin
