"""Reverse stress tests: a small episode whose insurance fund is exhausted at a shock known from
the episode's own linear loss, the search finding it within tolerance, resumption, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sim.experiment.cli import main
from sim.experiment.errors import ConfigError
from sim.experiment.config import load_episode
from sim.experiment.metrics import flatten
from sim.experiment.parts import PartWriter, Rows
from sim.experiment.reverse_stress import check_summary_key, prepare, reverse_stress, stressed_episode
from sim.experiment.sweep import parts_dir, run_and_summarise

EPISODE = Path(__file__).parents[2] / "configs" / "reverse_stress" / "gap_episode.yaml"
FUND = 5000.0


def spec(**extra) -> dict:
    """A 1-second-grid, zero-vol BTC perp; one 5x long; a gap of -s at t = 120 s; backstop
    liquidation at mark without fee; fund 5,000. Past bankruptcy the fund pays q x (gap loss)
    minus the trader's equity -- linear in s -- until it is empty."""
    out = {"name": "gap", "episode": str(EPISODE), "stress": {"paths.shocks.0.size": [0.0, -1.0]},
           "scale": {"low": 0.2, "high": 0.4}, "criterion": "insurance_fund.min <= 0", "seeds": 1,
           "tolerance": 0.01, "scan_points": 6, "points_per_round": 4, "report": False}
    out.update(extra)
    return out


def fund_paid(s: float) -> float:
    cfg = load_episode(EPISODE, {"paths": {"shocks": [{"kind": "gap", "start": 120.0, "size": -s}]}})
    return flatten(run_and_summarise(cfg))["losses.insurance_fund_paid"]


@pytest.fixture(scope="module")
def known_shock() -> float:
    """The gap that empties the fund, from two probes inside the linear region (the fund paid
    something but not everything) and checked on a third."""
    a, b, c = 0.26, 0.28, 0.27
    pa, pb, pc = fund_paid(a), fund_paid(b), fund_paid(c)
    assert 0 < pa < pb < FUND
    slope = (pb - pa) / (b - a)
    # linear, as the model says, to within one price tick on the position (0.01 x ~500 lots): the
    # liquidation fills at a whole tick -- about 1e-4 of the scale, far inside the tolerance
    assert pc == pytest.approx(pa + slope * (c - a), abs=5.0)
    return a + (FUND - pa) / slope


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("rs") / "out"
    return reverse_stress(spec(seeds=2, report=True), workers=2, output=out), out


def test_the_search_finds_the_known_fund_exhausting_shock_within_tolerance(searched, known_shock):
    result, _ = searched
    r = result.summary["regimes"]["standard"]
    for seed in ("0", "1"):
        line = r["by_seed"][seed]
        assert line["status"] == "bracketed"
        lo, hi = line["last_holding_scale"], line["breaking_scale"]
        assert hi - lo <= 0.01
        assert lo - 1e-3 < known_shock <= hi + 1e-3  # the bracket holds the crossing (to a tick)
        assert abs(hi - known_shock) <= 0.01
    band = r["breaking_scale"]
    assert band["seeds"] == 2 and band["min"] <= band["median"] <= band["max"]
    assert r["stress_at_breaking_point"]["paths.shocks.0.size"] == pytest.approx(-band["median"])


def test_the_measures_grow_along_the_scale_and_the_breaking_episode_is_written(searched):
    result, out = searched
    profile = result.summary["regimes"]["standard"]["profile"]
    fund = [p["insurance_fund.min"] for p in profile]
    assert fund == sorted(fund, reverse=True) and fund[0] == FUND and fund[-1] <= 0
    assert [p["broken"] for p in profile][-1] == 2
    table = pq.read_table(out / "evaluations.parquet")
    assert table.num_rows == len(result.rows) == result.summary["episodes"]
    assert {"regime", "scale", "seed", "insurance_fund.min"} <= set(table.column_names)
    folder = out / "standard" / "breaking_episode"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["insurance_fund"]["min"] <= 0  # the episode at the breaking point does break
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()


def test_a_resumed_search_reruns_only_the_missing_episodes(searched, tmp_path):
    first, out = searched
    parts = parts_dir(out)
    rows = sorted(Rows(parts).items())
    assert len(rows) == first.summary["episodes"]
    copy = tmp_path / "again"
    (tmp_path / "again.parts").mkdir()
    from sim.experiment.outdir import MARKER

    # as if interrupted: the search's marker and all but two episodes
    (tmp_path / "again.parts" / MARKER).write_bytes((parts / MARKER).read_bytes())
    with PartWriter(tmp_path / "again.parts") as writer:
        for _, row in rows[2:]:
            writer.write(row)
    ran: list[str] = []
    again = reverse_stress(spec(seeds=2), workers=2, output=copy, resume=True, progress=ran.append)

    def strip(summary):
        return {k: {kk: vv for kk, vv in v.items() if kk != "breaking_episode"} for k, v in summary["regimes"].items()}

    assert strip(again.summary) == strip(first.summary)
    # only the two missing episodes ran again (in whichever round needs them)
    assert len(ran) == 1 and ran[0].startswith("2 episodes (")
    assert len(Rows(parts_dir(copy))) == len(rows)


def test_a_criterion_that_never_holds_reports_every_seed_held(tmp_path):
    result = reverse_stress(spec(criterion="insurance_fund.min < -1", scale={"low": 0.2, "high": 0.3}, scan_points=2),
                            workers=1, write=False, output=tmp_path / "x")
    r = result.summary["regimes"]["standard"]
    assert r["held"] == 1 and r["breaking_scale"]["median"] is None and r["by_seed"]["0"]["status"] == "held"


def test_stress_paths_move_linearly_and_integer_ends_stay_integers():
    data = {"a": {"b": 1.0}, "n": [{"count": 6}]}
    out = stressed_episode(data, {"a.b": (2.0, 4.0), "n.0.count": (6, 0)}, 0.25)
    assert out == {"a": {"b": 2.5}, "n": [{"count": 4}]} and data["a"]["b"] == 1.0


@pytest.mark.parametrize(("change", "message"), [
    ({"criterion": "insurance_fund.minimum <= 0"}, "did you mean insurance_fund.min"),
    ({"criterion": "insurance_fund <= 0"}, "is a section of the summary"),
    ({"criterion": "cascades.by_generation > 1"}, "is not a number"),
    ({"criterion": "fund gone"}, "is not 'summary.key OP number'"),
    ({"stress": {"paths.shocks.5.size": [0.0, -1.0]}}, "index 5 is out of range"),
    ({"stress": {"paths.shocks.0.size": [0.0, -1.0]}, "scale": {"low": 0.0, "high": 1.0}}, "at scale 1"),
    ({"regimes": ["no_such_regime"]}, "no_such_regime"),
    ({"tolerance": 0}, "tolerance"),
    ({"seeds": [2, 2]}, "seeds: .*a seed twice"),
    ({"seeds": 0}, "seeds: .*a seed count must be at least 1"),
    ({"name": "two words"}, "name: .*should match pattern"),
])
def test_bad_input_names_the_field_before_anything_runs(change, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        reverse_stress(spec(**change), output=tmp_path / "never")
    assert not (tmp_path / "never").exists() and not parts_dir(tmp_path / "never").exists()


def test_keys_of_data_dependent_sections_are_accepted():
    empty = {"losses": {"by_layer": {}, "socialised": 0.0}, "bad_debt": {"total": 0.0}}
    check_summary_key("losses.by_layer.insurance_fund", empty)
    check_summary_key("bad_debt.total", empty)
    with pytest.raises(ConfigError, match="not a key"):
        check_summary_key("bad_debt.totals", empty)


def test_cli_runs_and_refuses_bad_files(tmp_path, capsys):
    path = tmp_path / "rs.yaml"
    path.write_text(yaml.safe_dump(spec(scale={"low": 0.2, "high": 0.4}, scan_points=2, tolerance=0.5)))
    assert main(["reverse-stress", str(path), "--workers", "1", "--out", str(tmp_path / "out"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)  # --json: nothing but the JSON on stdout (no progress)
    assert data["summary"] == json.loads((tmp_path / "out" / "summary.json").read_text())
    assert data["failed_lines"] == 0
    assert main(["reverse-stress", str(path), "--workers", "1", "--out", str(tmp_path / "out"), "--resume",
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["validate", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "reverse-stress"
    path.write_text(yaml.safe_dump(spec(criterion="nope.nothing > 1")))
    assert main(["reverse-stress", str(path), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "criterion" in err and err.startswith("clearsim: error: ")
    assert not (tmp_path / "bad").exists()


def test_prepare_validates_every_regime_at_both_ends():
    plan = prepare(spec(regimes=["standard", "span"]))
    assert list(plan.variants) == ["standard", "span"]


@pytest.mark.parametrize("name", ["gap_fund", "default_crash"])
def test_shipped_reverse_stress_examples_are_valid(name):
    plan = prepare(Path(__file__).parents[2] / "configs" / "reverse_stress" / f"{name}.yaml")
    assert plan.variants


@pytest.mark.distributed
def test_dask_finds_the_same_breaking_points_as_the_local_pool(searched, tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'clearsim[dask]')")
    first, _ = searched
    on_dask = reverse_stress(spec(seeds=2), backend="dask", workers=2, write=False, output=tmp_path / "dask")

    def strip(summary):
        return {k: {kk: vv for kk, vv in v.items() if kk != "breaking_episode"} for k, v in summary["regimes"].items()}

    assert strip(on_dask.summary) == strip(first.summary)
    assert [r["metrics"] for r in on_dask.rows] == [r["metrics"] for r in first.rows]


def test_cli_exits_1_when_a_line_failed(tmp_path, capsys, monkeypatch):
    """As a sweep with failed runs: the results are reported (and written) and the status is 1."""
    import types

    import sim.experiment.api

    summary = {"name": "x", "criterion": "insurance_fund.min <= 0",
               "regimes": {"standard": {"errors": 1, "held": 0, "broken_at_low": 0,
                                        "breaking_scale": {"median": None, "band": None}}}}
    monkeypatch.setattr(sim.experiment.api, "reverse_stress",
                        lambda *a, **k: types.SimpleNamespace(summary=summary, directory=tmp_path))
    path = tmp_path / "rs.yaml"
    path.write_text(yaml.safe_dump(spec()))
    assert main(["reverse-stress", str(path)]) == 1
    assert "1 regime x seed lines failed" in capsys.readouterr().out
    assert main(["reverse-stress", str(path), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("clearsim: error: 1 regime x seed lines failed")


def test_a_users_folder_where_the_episodes_go_is_refused_and_left(tmp_path):
    """Without --resume an earlier search's episodes folder is replaced only with --force; a folder
    of the user's at that name (no clearsim marker) is refused before anything runs, and keeps its files."""
    from sim.experiment.outdir import OutputFolderError

    mine = parts_dir(tmp_path / "out")
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputFolderError, match="reverse-stress episodes folder .*not written by clearsim"):
        reverse_stress(spec(), output=tmp_path / "out")
    assert (mine / "notes.txt").read_text() == "keep me" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("marker", [None, "sweep-parts"])
def test_resume_into_a_folder_not_this_searchs_is_refused_before_anything_runs(tmp_path, monkeypatch, marker):
    """--resume reads and adds to an earlier search's episodes folder; a user's folder (no marker) or
    another command's results at that name are refused, naming the folder and why, and left as they were."""
    import sim.experiment.reverse_stress as rs
    from sim.experiment.outdir import OutputFolderError, write_marker

    mine = parts_dir(tmp_path / "out")
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    if marker is not None:
        write_marker(mine, marker)
    before = sorted(p.name for p in mine.iterdir())
    monkeypatch.setattr(rs._Search, "run", lambda self: pytest.fail("the search ran"))
    why = "not written by clearsim" if marker is None else "another clearsim command's results"
    with pytest.raises(OutputFolderError, match=f"reverse-stress episodes folder {mine}: .*{why}"):
        reverse_stress(spec(), output=tmp_path / "out", resume=True)
    assert sorted(p.name for p in mine.iterdir()) == before and (mine / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "out").exists()


def test_resume_into_an_empty_or_missing_folder_claims_it(tmp_path):
    """Nothing to resume: the folder is (made and) marked as this search's."""
    from sim.experiment.outdir import marker_kind
    from sim.experiment.reverse_stress import PARTS_KIND, _claim_parts

    for parts in (tmp_path / "missing.parts", tmp_path / "empty.parts"):
        if parts.name.startswith("empty"):
            parts.mkdir()
        _claim_parts(parts, resume=True)
        assert marker_kind(parts) == PARTS_KIND
        _claim_parts(parts, resume=True)  # and an earlier search's folder is accepted


def _files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("earlier", ["reverse-stress", "run"])
def test_an_earlier_results_folder_is_replaced_only_with_force(tmp_path, capsys, monkeypatch, earlier):
    """Regression: a re-run replaced its own earlier folder unasked, and the refusal of another
    command's folder told the user to pass a --force that reverse-stress did not have. Now any
    earlier clearsim folder is refused (before anything runs, nothing in it or its episodes folder
    changed) and --force replaces both."""
    import sim.experiment.reverse_stress as rs
    from sim.experiment.outdir import OutputFolderError, write_marker

    path = tmp_path / "rs.yaml"
    path.write_text(yaml.safe_dump(spec(scan_points=2, tolerance=0.5)))
    out = tmp_path / "out"
    out.mkdir()
    write_marker(out, earlier)
    (out / "summary.json").write_text("the earlier results")
    parts = parts_dir(out)
    parts.mkdir()
    write_marker(parts, rs.PARTS_KIND)
    before, before_parts = _files(out), _files(parts)
    with monkeypatch.context() as m:  # a refusal comes before the search
        m.setattr(rs._Search, "run", lambda self: pytest.fail("the search ran before the refusal"))
        assert main(["reverse-stress", str(path), "--workers", "1", "--out", str(out)]) == 2
        assert "holds earlier clearsim results; pass --force (force=True)" in capsys.readouterr().err
        with pytest.raises(OutputFolderError, match="holds earlier clearsim results"):
            reverse_stress(str(path), workers=1, output=out)
    assert _files(out) == before and _files(parts) == before_parts
    assert main(["reverse-stress", str(path), "--workers", "1", "--out", str(out), "--force", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["name"] == "gap"
    again = reverse_stress(str(path), workers=1, output=out, force=True)  # the API's force does the same
    assert again.directory == out


def test_resuming_replaces_only_an_earlier_searchs_results(tmp_path, monkeypatch):
    """--resume continues an earlier search, so its results folder is rewritten without --force (as
    a sweep's --resume rewrites its table); another command's results still need --force."""
    import sim.experiment.reverse_stress as rs
    from sim.experiment.outdir import OutputFolderError, write_marker

    out = tmp_path / "out"
    out.mkdir()
    write_marker(out, "run")
    monkeypatch.setattr(rs._Search, "run", lambda self: pytest.fail("the search ran before the refusal"))
    with pytest.raises(OutputFolderError, match="holds earlier clearsim results"):
        reverse_stress(spec(), workers=1, output=out, resume=True)
    assert not parts_dir(out).exists()


def test_a_folder_clearsim_did_not_write_is_refused_even_with_force(tmp_path, capsys, monkeypatch):
    import sim.experiment.reverse_stress as rs
    from sim.experiment.outdir import OutputFolderError

    path = tmp_path / "rs.yaml"
    path.write_text(yaml.safe_dump(spec()))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    monkeypatch.setattr(rs._Search, "run", lambda self: pytest.fail("the search ran before the refusal"))
    assert main(["reverse-stress", str(path), "--workers", "1", "--out", str(out), "--force"]) == 2
    assert "was not written by clearsim" in capsys.readouterr().err
    with pytest.raises(OutputFolderError, match="was not written by clearsim"):
        reverse_stress(str(path), workers=1, output=out, force=True)
    assert _files(out) == {Path("notes.txt"): b"keep me"} and not parts_dir(out).exists()


def test_an_interrupted_searchs_episodes_are_kept_without_resume_or_force(tmp_path, monkeypatch):
    """An interrupted search leaves its episodes and no results folder: running it again without
    --resume must not throw them away unasked -- it says how to continue or start over."""
    import sim.experiment.reverse_stress as rs
    from sim.experiment.outdir import OutputFolderError, write_marker

    parts = parts_dir(tmp_path / "out")
    parts.mkdir()
    write_marker(parts, rs.PARTS_KIND)
    (parts / "seg-0001.jsonl").write_text("")
    before = _files(parts)
    monkeypatch.setattr(rs._Search, "run", lambda self: pytest.fail("the search ran before the refusal"))
    with pytest.raises(OutputFolderError, match="pass --resume .* or --force"):
        reverse_stress(spec(), workers=1, output=tmp_path / "out")
    assert _files(parts) == before


def test_a_metric_the_episodes_never_compute_is_null_in_the_profile_not_zero(searched):
    """Regression: the profile read every absent key as 0.0, so figures measured only against a
    no-feedback twin (which the search never runs) read as a measured 0."""
    result, out = searched
    for entry in result.summary["regimes"]["standard"]["profile"]:
        assert entry["price.amplification_vs_counterfactual"] is None
        assert entry["counterfactual.mark_drawdown_amplification"] is None
        assert entry["insurance_fund.min"] is not None  # a computed one keeps its number
    written = json.loads((out / "summary.json").read_text())["regimes"]["standard"]["profile"]
    assert all(p["counterfactual.mark_drawdown_amplification"] is None for p in written)


def test_a_criterion_only_a_twin_measures_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """The search's episodes run without a no-feedback twin: a criterion on a twin's figure would
    never have a value, so it is a config error naming the field, not a search on a silent 0."""
    import sim.experiment.reverse_stress as rs

    monkeypatch.setattr(rs._Search, "run", lambda self: pytest.fail("the search ran"))
    for key in ("counterfactual.mark_drawdown_amplification", "price.amplification_vs_counterfactual"):
        with pytest.raises(ConfigError, match=f"criterion: '{key}' is measured against the episode's no-feedback twin"):
            reverse_stress(spec(criterion=f"{key} > 1.5"), output=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_criterion_key_a_run_leaves_absent_is_an_error_not_a_zero(tmp_path):
    """A key inside a section the empty summary cannot list (groups) passes the up-front check when
    it names a configured group; a run where that group has no accounts (here: count 0) has no
    number to compare, so its line is an error naming the criterion -- it neither holds nor breaks
    on an invented 0."""
    episode = yaml.safe_load(EPISODE.read_text())
    episode["population"]["groups"].append({"type": "noise", "name": "nobody", "count": 0, "capital": 1000.0,
                                            "instruments": ["BTC-PERP"]})
    (tmp_path / "episode.yaml").write_text(yaml.safe_dump(episode))
    result = reverse_stress(spec(episode=str(tmp_path / "episode.yaml"), criterion="groups.nobody.liquidations < 1",
                                 scan_points=2), workers=1, write=False, output=tmp_path / "x")
    r = result.summary["regimes"]["standard"]
    assert r["errors"] == 1 and r["held"] == 0 and r["broken_at_low"] == 0
    assert "'groups.nobody.liquidations' is not in this episode's summary" in r["by_seed"]["0"]["error"]


def test_a_criterion_on_a_group_the_episode_lacks_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """The empty summary has no groups, so a misspelt group passed the up-front check and every line
    came back an error (exit 1) after its episodes ran. It is now a config error naming the
    criterion and the episode's groups, and no episode runs; a group it has is accepted."""
    import sim.experiment.episode
    import sim.experiment.reverse_stress as rs
    import sim.experiment.sweep

    def no_episode(*args, **kwargs):
        pytest.fail("an episode ran")

    # the search hands its episodes to the executors; the breaking episode runs in this process
    monkeypatch.setattr(sim.experiment.sweep, "execute", no_episode)
    monkeypatch.setattr(sim.experiment.episode, "run", no_episode)
    with pytest.raises(ConfigError) as e:
        reverse_stress(spec(criterion="groups.levered.liquidations >= 1"), output=tmp_path / "never")
    assert str(e.value) == ("criterion: 'groups.levered.liquidations' names no population group of the episode "
                            "(its groups: backstop_provider, market_maker, leveraged); did you mean leveraged?")
    assert not (tmp_path / "never").exists() and not parts_dir(tmp_path / "never").exists()
    with pytest.raises(ConfigError, match=r"criterion: 'groups.leveraged.liquidation': 'liquidation' is not a "
                                          r"number of a group's summary; choose one of accounts, capital"):
        prepare(spec(criterion="groups.leveraged.liquidation >= 1"))
    with pytest.raises(ConfigError, match=r"criterion: 'groups.leveraged' is a group's section"):
        prepare(spec(criterion="groups.leveraged >= 1"))
    plan = prepare(spec(criterion="groups.leveraged.liquidations >= 1"))  # the control: a group it has
    assert plan.key == "groups.leveraged.liquidations"
    assert rs.check_group_key("insurance_fund.min", []) is None  # other keys are not group keys


def test_the_report_labels_its_measures_with_units_not_summary_keys(searched):
    """Regression: the report's headers and axis were raw summary keys without units
    (``insurance_fund.min | liquidations.count ...``), counts read 1.00 and money 39,920.00 beside 0.
    Headers now carry the label and unit of ``sim.experiment.compare.metric_of``, values the
    comparison table's ``quantity`` formatting, and an undefined value a dash."""
    import re

    from sim.experiment.reverse_stress_report import _profiles

    _, out = searched
    page = (out / "report.html").read_text()
    headers = re.findall(r"<th>([^<]*)</th>", page)
    assert "insurance fund minimum (USD)" in headers and "liquidations (count)" in headers
    dotted = [h for h in headers if re.search(r"[a-z]\.[a-z]", h)]
    assert not dotted, dotted
    assert "insurance fund minimum (USD) &lt;= 0" in page  # the criterion in words, the key beside it
    summary = {"regimes": {"standard": {"profile": [
        {"scale": 0.1, "broken": 0, "insurance_fund.min": 39920.0, "liquidations.count": 1.0,
         "cascades.amplification": None},
        {"scale": 0.2, "broken": 1, "insurance_fund.min": 0.0, "liquidations.count": 2.0,
         "cascades.amplification": 2.5}]}}}
    rows = _profiles(summary, "USD").split("<tr>")
    assert rows[2].endswith("<td class=n>39.9 K</td><td class=n>1</td><td class=n>—</td></tr>")
    assert rows[3].endswith("<td class=n>0</td><td class=n>2</td><td class=n>2.50×</td></tr></table>")
