"""Sweeps as users meet them: from a plain script with no __main__ guard, from the CLI (where the
table went, how many runs failed, a non-zero exit), a missing Ray/Dask extra, and the HTML report."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import sim.experiment.api
import sim.experiment.sweep
from sim.experiment.cli import EXIT_BAD_INPUT, EXIT_RUNS_FAILED, main
from sim.experiment.sweep import SweepError, parts_dir
from sim.experiment.sweep_report import sweep_report, write_sweep_report
from test_sweep import GRID, RUNNER, write_sweep

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parents[1]


def test_a_plain_script_without_a_main_guard_sweeps_once(tmp_path):
    """Spawned workers must not re-run the caller's script (which would start the sweep again in
    every worker and break the pool)."""
    script = tmp_path / "plain.py"
    out = tmp_path / "plain.parquet"
    script.write_text(textwrap.dedent(f"""
        from sim.experiment.sweep import sweep
        print("script body ran")
        table = sweep({{"name": "plain", "base": {str(tmp_path / 'base.yaml')!r},
                        "grid": {{"clearing.loss_absorption.insurance_fund": [1000.0, 2000.0]}}, "seeds": 2}},
                      workers=2, progress=False, out={str(out)!r}, runner={RUNNER!r})
        print("statuses", sorted(set(table.column("status").to_pylist())), table.num_rows)
    """))
    write_sweep(tmp_path, GRID)  # writes base.yaml
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script body ran") == 1, done.stdout
    assert "statuses ['ok'] 4" in done.stdout, done.stdout + done.stderr


def test_cli_says_where_the_table_went_and_fails_when_runs_failed(tmp_path, capsys, monkeypatch):
    path = write_sweep(tmp_path, GRID)  # the fake runner fails one point for seed 1: 2 of 8 runs

    def with_fake_runner(grid, **kwargs):
        return sim.experiment.sweep.sweep(grid, backend=kwargs["backend"], workers=kwargs["workers"], out=kwargs["output"],
                               progress=False, runner=RUNNER, force=kwargs.get("force", False))

    monkeypatch.setattr(sim.experiment.api, "sweep", with_fake_runner)
    code = main(["sweep", str(path), "--workers", "2", "--report"])
    captured = capsys.readouterr()
    assert code == EXIT_RUNS_FAILED
    assert f"8 runs -> {tmp_path / 'out.parquet'}" in captured.out
    assert "clearsim: error: 2 of 8 runs failed" in captured.err  # errors go to stderr
    assert (tmp_path / "out.html").is_file()
    # the table it wrote is replaced only on request
    assert main(["sweep", str(path), "--workers", "2", "--json", "--force"]) == EXIT_RUNS_FAILED
    doc = __import__("json").loads(capsys.readouterr().out)
    assert doc == {"table": str((tmp_path / "out.parquet").absolute()), "runs": 8, "failed": 2, "report": None}


def test_cli_exits_zero_when_every_run_succeeded(tmp_path, capsys, monkeypatch):
    path = write_sweep(tmp_path, {"clearing.loss_absorption.insurance_fund": [1000.0]}, seeds=2)
    monkeypatch.setattr(sim.experiment.api, "sweep", lambda grid, **kw: sim.experiment.sweep.sweep(
        grid, workers=1, out=kw["output"], progress=False, runner=RUNNER))
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("backend, extra, module", [("ray", "ray", "ray"), ("dask", "dask", "distributed")])
def test_a_missing_extra_is_named_and_leaves_no_parts(tmp_path, capsys, monkeypatch, backend, extra, module):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    path = write_sweep(tmp_path, GRID)
    with pytest.raises(SweepError, match=rf"--backend {backend} needs the '{extra}' extra: "
                                         rf"pip install 'clearsim\[{extra}\]'"):
        sim.experiment.sweep.sweep(path, backend=backend, progress=False)
    assert main(["sweep", str(path), "--backend", backend]) == EXIT_BAD_INPUT
    assert f"clearsim[{extra}]" in capsys.readouterr().err
    assert not parts_dir(tmp_path / "out.parquet").exists() and not (tmp_path / "out.parquet").exists()


def _table(metric_values: list[float | None], status: list[str] | None = None) -> pa.Table:
    margins = ["standard", "standard", "span", "span"] * 2
    funds = [0.0, 0.0, 0.0, 0.0, 1e6, 1e6, 1e6, 1e6]
    seeds = [0, 1] * 4
    return pa.table({"run_id": [str(i) for i in range(8)], "clearing.loss_absorption.insurance_fund": funds,
                     "margin": margins, "seed": seeds, "status": status or ["ok"] * 8, "error": [None] * 8,
                     "bad_debt.total": metric_values, "cascades.count": [None] * 8})


def test_sweep_report_plots_each_metric_with_seed_bands(tmp_path):
    table = _table([1.0, 3.0, 2.0, 2.0, 0.0, 0.0, 5.0, None])
    html = sweep_report(table, ["clearing.loss_absorption.insurance_fund", "margin"], title="t")
    # bad_debt.total: its line plot and, two parameters being swept, its heatmap; cascades.count is
    # undefined everywhere
    assert html.count("<img") == 2
    assert html.count('<div class=heatmap data-metric="bad_debt.total"><img') == 1
    assert "<h2>cascades.count</h2><p class=muted>— (undefined in every run)" in html
    assert "mean over seeds; bands: min..max over seeds" in html
    path = write_sweep_report(_table([1.0] * 8, ["ok"] * 7 + ["error"]), ["margin"], tmp_path / "r.html")
    text = path.read_text()
    assert "1 failed runs left out" in text and text.count("<img") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp file left


def test_sweep_heatmap_cells_are_the_means_over_seeds():
    """fund across, margin down: (0, standard) seeds 1 and 3 -> 2; (0, span) 2, 2 -> 2; (1M, standard)
    0, 0 -> 0 (the zero control); (1M, span) 5 and an undefined seed -> 5; a cell whose runs all
    failed is NaN (drawn as "—")."""
    from sim.experiment.sweep_report import _cell_means

    rows = _table([1.0, 3.0, 2.0, 2.0, 0.0, 0.0, 5.0, None]).to_pylist()
    means = _cell_means(rows, "bad_debt.total", "clearing.loss_absorption.insurance_fund", "margin",
                        [0.0, 1e6], ["standard", "span"])
    assert means.tolist() == [[2.0, 0.0], [2.0, 5.0]]
    ok = [r for r in rows if not (r["margin"] == "span" and r["clearing.loss_absorption.insurance_fund"] == 1e6)]
    gap = _cell_means(ok, "bad_debt.total", "clearing.loss_absorption.insurance_fund", "margin",
                      [0.0, 1e6], ["standard", "span"])
    assert np.isnan(gap[1, 1]) and gap[0, 1] == 0.0
    one = sweep_report(_table([1.0] * 8), ["margin"], title="t")
    assert "class=heatmap" not in one  # one swept parameter: lines only


def _brute_cell(rows, metric, x_key, y_key, x, y):
    """The figures as the report first computed them: a scan of every row for each cell."""
    return [r[metric] for r in rows if r[x_key] == x and (y_key is None or r[y_key] == y)
            and r.get(metric) is not None and np.isfinite(r[metric])]


class _CountingRow(dict):
    """A row that counts reads of the grid's keys."""

    reads = 0

    def __getitem__(self, key):
        if key in ("fund", "margin"):
            _CountingRow.reads += 1
        return super().__getitem__(key)


def test_sweep_report_groups_the_rows_once_with_the_same_figures():
    """On a 12 x 10 grid with uneven cells -- 0 to 4 runs each, some failed, some undefined or NaN,
    some cells with no run at all -- the heatmap's means and each line's mean/min/max equal a scan
    of every row per cell, and the rows are read once per metric (a scan per cell read them
    rows x cells times)."""
    from sim.experiment.sweep_report import _cell_means, _cells, _line, _ordered

    rng = np.random.default_rng(7)
    funds = [float(f) for f in range(12)]
    margins = [f"m{k}" for k in range(10)]
    rows = []
    for f in funds:
        for m in margins:
            for seed in range(int(rng.integers(0, 5))):
                v = [None, float("nan"), 0.0][int(rng.integers(0, 3))] if rng.random() < 0.2 else float(
                    rng.normal())
                rows.append(_CountingRow(fund=f, margin=m, seed=seed, x=v))
    assert any(not _brute_cell(rows, "x", "fund", "margin", f, m) for f in funds for m in margins)  # gaps
    x_values, y_values = _ordered(r["fund"] for r in rows), _ordered(r["margin"] for r in rows)
    _CountingRow.reads = 0
    means = _cell_means(rows, "x", "fund", "margin", x_values, y_values)
    assert _CountingRow.reads <= 2 * len(rows)
    for i, m in enumerate(y_values):
        for j, f in enumerate(x_values):
            vals = _brute_cell(rows, "x", "fund", "margin", f, m)
            assert (np.isnan(means[i, j]) and not vals) or means[i, j] == float(np.mean(vals))
    cells = _cells(rows, "x", "fund", "margin")
    for m in y_values:
        mean, low, high = _line(cells, x_values, m)
        for j, f in enumerate(x_values):
            vals = _brute_cell(rows, "x", "fund", "margin", f, m)
            want = (np.mean(vals), np.min(vals), np.max(vals)) if vals else (np.nan,) * 3
            np.testing.assert_array_equal([mean[j], low[j], high[j]], want)
    # one swept parameter: every margin pooled into the fund's line
    mean, low, high = _line(_cells(rows, "x", "fund", None), x_values, None)
    for j, f in enumerate(x_values):
        vals = _brute_cell(rows, "x", "fund", None, f, None)
        np.testing.assert_array_equal([mean[j], low[j], high[j]],
                                      (np.mean(vals), np.min(vals), np.max(vals)) if vals else (np.nan,) * 3)
    # the zero control: no rows, every cell undefined
    assert np.isnan(_cell_means([], "x", "fund", "margin", x_values, y_values)).all()
