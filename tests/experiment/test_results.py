"""Results folders: the files, stable summary bytes, Parquet round trips, atomic replacement, reports."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

import sim.experiment.report
from sim.experiment.metrics import summarise
from sim.experiment.outdir import OutputFolderError
from sim.experiment.report import episode_report
from sim.experiment.io import dump_json, table_to_arrow
from sim.experiment.results import read_results, write_comparison, write_results
from sim.experiment.tables import CODES, MONEY, TABLES, TICKS, file_name
from test_metrics import make_config, make_tables


@pytest.fixture(scope="module")
def run():
    config, tables = make_config(), make_tables()
    return config, tables, summarise(config, tables, {"events": 10})


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_writes_every_file(tmp_path, run):
    config, tables, summary = run
    out = write_results(tmp_path / "res", config, tables, summary, timing={"wall_seconds": np.float64(1.5)})
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([".clearsim-output", "summary.json", "config.yaml", "timing.json", "report.html"]
                           + [f"{file_name(t)}.parquet" for t in tables])
    assert (out / "summary.json").read_text() == dump_json(summary)
    assert json.loads((out / "timing.json").read_text()) == {"wall_seconds": 1.5}
    assert yaml.safe_load((out / "config.yaml").read_text()) == config.model_dump(mode="json")
    assert _siblings(out) == ["res"]  # no temp folder left behind


def test_summary_bytes_are_stable(tmp_path, run):
    config, tables, summary = run
    a = write_results(tmp_path / "a", config, tables, summary, report=False, parquet=False)
    b = write_results(tmp_path / "b", config, tables, summarise(config, tables, {"events": 10}), report=False,
                      parquet=False)
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    text = (a / "summary.json").read_text()
    assert text.endswith("\n") and "NaN" not in text
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_parquet_round_trip(tmp_path, run):
    config, tables, summary = run
    out = write_results(tmp_path / "res", config, tables, summary, report=False)
    t = pq.read_table(out / "liquidations.parquet")
    assert str(t.schema.field("cause").type.value_type) == "string"
    assert t.column("notional_minor").to_pylist() == tables["liquidations"]["notional"].tolist()
    summary_back, back = read_results(out)
    assert summary_back == summary
    for name, table in tables.items():  # the exact internal values survive the trip (money, ticks, strings)
        spec = TABLES[name].columns
        for col, values in table.items():
            unit = spec[col].unit
            kept = f"{col}_minor" if unit == MONEY else f"{col}_ticks" if unit == TICKS else col
            got = back[file_name(name)][kept]
            if values.dtype == object:
                assert got.tolist() == values.tolist()
            elif unit not in CODES:  # codes come back as their names (tests/test_tables.py)
                np.testing.assert_array_equal(got, values)


def test_unequal_columns_are_refused():
    with pytest.raises(ValueError, match="unequal"):
        table_to_arrow({"a": np.zeros(2), "b": np.zeros(3)})


def test_replaces_an_earlier_results_folder_only_with_force(tmp_path, run):
    config, tables, summary = run
    target = write_results(tmp_path / "res", config, tables, summary, report=False, parquet=False)
    (target / "stale.txt").write_text("old")
    with pytest.raises(OutputFolderError, match="holds earlier clearsim results; pass --force"):
        write_results(target, config, tables, summary, report=False, parquet=False)
    assert (target / "stale.txt").exists()
    write_results(target, config, tables, summary, report=False, parquet=False, force=True)
    assert not (target / "stale.txt").exists()
    assert (target / "summary.json").exists()
    assert _siblings(target) == ["res"]


def test_a_failed_write_leaves_the_old_results(tmp_path, run, monkeypatch):
    config, tables, summary = run
    target = write_results(tmp_path / "res", config, tables, summary, report=False, parquet=False)
    before = (target / "summary.json").read_bytes()

    def boom(*_a, **_k):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(sim.experiment.report, "episode_report", boom)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_results(target, config, tables, dict(summary, extra=1), report=True, force=True)
    assert (target / "summary.json").read_bytes() == before
    assert _siblings(target) == ["res"]


def test_report_is_self_contained(run):
    config, tables, summary = run
    page = episode_report(config, tables, summary)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("data:image/png;base64,") == 6
    for attr in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert attr.startswith("data:"), attr
    assert "liquidation amplification" in page and "2.3" in page
    # the who-paid ledger: every layer, and what others bore (synthetic tables: 11.5)
    assert "<h2>Who paid</h2>" in page and "borne by others" in page and "<b>11.50</b>" in page
    assert "survivors default fund" in page and "backstop vault" in page
    # the twin's rows are dashes here, and the page says why (its config runs no twin)
    assert not config.outputs.counterfactual and "against the no-feedback twin: not run" in page


def test_write_comparison(tmp_path, run):
    config, tables, summary = run
    runs = {"standard": (summary, tables), "span": (summary, tables)}
    out = write_comparison(tmp_path / "cmp", config, runs)
    assert sorted(p.name for p in out.iterdir()) == [".clearsim-output", "comparison.json", "comparison.parquet",
                                                     "config.yaml", "intervals.json", "intervals.parquet", "report.html",
                                                     "span", "standard"]
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["regime"] for r in rows] == ["standard", "span"]
    assert rows[0]["bad_debt.total"] == 4.0
    assert pq.read_table(out / "comparison.parquet").num_rows == 2
    assert (out / "span" / "summary.json").read_text() == dump_json(summary)
    assert (out / "span" / "trades.parquet").exists() and (out / "span" / "report.html").exists()
    page = (out / "report.html").read_text()
    assert 'href="span/report.html"' in page and "<th>span</th>" in page
    assert _siblings(out) == ["cmp"]


def test_headline(run):
    from sim.experiment.metrics import HEADLINE, headline

    h = headline(run[2])
    assert list(h) == [label for _, label in HEADLINE]
    assert h["bad debt"] == 4.0 and h["liquidation amplification"] == 2.3
