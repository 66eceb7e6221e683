"""Result tables in user units: every written column matches the data dictionary (docs/RESULTS.md)
by name, type and unit; conversions give known answers and keep the exact integers; an
unregistered column is refused by name; the accounts directory joins every account column."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from sim.experiment.api import load
from sim.experiment.runs import resolve, run
from sim.experiment.tables import TABLES, UnregisteredColumn, data_dictionary, file_name, render_markdown, to_arrow, type_name
from test_cli import SMALL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The small crash episode (leveraged longs are liquidated), written and read back."""
    out = run(_small(), output=tmp_path_factory.mktemp("tables") / "res")
    return out, load(out.directory)


def _small():
    from sim.experiment.config import parse_episode

    return parse_episode(SMALL, "small")


def test_results_md_is_the_registry():
    text = (ROOT / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    section = re.search(r"<!-- tables:begin -->\n(.*)<!-- tables:end -->", text, re.S)
    assert section, "docs/RESULTS.md lost its tables markers"
    assert section.group(1).strip() == render_markdown(resolve(None)).strip(), (
        "docs/RESULTS.md is out of date: regenerate it from sim.experiment.tables.render_markdown")


def test_every_written_table_matches_the_dictionary(written):
    out, res = written
    dictionary = data_dictionary(out.result.config)
    assert set(res.tables) == set(dictionary), "a table is written that the dictionary does not list (or not written)"
    assert res.tables["liquidations"].num_rows > 0 and res.tables["losses"].num_rows >= 0
    for stem, table in res.tables.items():
        documented = {c: (t, u) for c, t, u, _ in dictionary[stem]}
        order = [c for c, *_ in dictionary[stem]]
        for f in table.schema:
            assert f.name in documented, f"{stem}.{f.name} is written but not in the dictionary"
            assert (type_name(f.type), f.metadata[b"unit"].decode()) == documented[f.name], f"{stem}.{f.name}"
            assert f.metadata[b"description"]
        names = table.column_names
        assert names == [c for c in order if c in names], f"{stem}: columns out of dictionary order"
        assert table.schema.metadata[b"quote_currency"] == b"USD"


def test_money_and_prices_in_quote_with_exact_integers_kept(written):
    out, res = written
    mem = out.result.tables
    liq = res.tables["liquidations"]
    assert liq.column("notional_minor").to_pylist() == mem["liquidations"]["notional"].tolist()
    np.testing.assert_array_equal(liq.column("notional").to_numpy(), mem["liquidations"]["notional"] / 1e6)
    trades = res.tables["trades"]
    assert trades.column("price_ticks").to_pylist() == mem["trades"]["price"].tolist()
    # tick size 1.0: the price is the tick count; the symbol replaces the code
    np.testing.assert_array_equal(trades.column("price").to_numpy(), mem["trades"]["price"].astype(float))
    assert set(trades.column("instrument").to_pylist()) == {"BTC-PERP"}
    assert set(trades.column("aggressor").to_pylist()) <= {"buy", "sell"}
    flags = trades.column("flags").to_pylist()
    assert "liquidation" in flags and "none" in flags
    health = set(res.tables["account_states"].column("health").to_pylist())
    assert health <= {"healthy", "below_im", "below_cancel", "below_mm", "bankrupt"} and "healthy" in health


def test_known_answers_for_the_conversions():
    cfg = _small().model_copy(deep=True)
    data = cfg.model_dump(mode="json")
    data["market"]["instruments"][0]["tick_size"] = 0.1
    data["market"]["instruments"][0]["lot_size"] = 0.01
    from sim.experiment.config import parse_episode

    cfg = parse_episode(data)
    t = to_arrow("trades", {"time": [1.0, 2.0], "instrument": [0, 0], "price": [1407, 40000], "size": [1, 2],
                            "aggressor": [1, -1], "maker": [5, 6], "taker": [6, 5], "flags": [0, 3]}, cfg)
    assert t.column("price").to_pylist() == [140.7, 4000.0]  # exactly, not 140.70000000000002
    assert t.column("flags").to_pylist() == ["none", "liquidation+adl"]
    f = to_arrow("fund", {"time": [0.0], "insurance_fund": [4_716_814_000], "bad_debt": [0], "fee_pool": [1]}, cfg)
    assert f.column("insurance_fund").to_pylist() == [4716.814]
    assert f.column("insurance_fund_minor").to_pylist() == [4_716_814_000]
    assert f.column("fee_pool").to_pylist() == [0.000001]


def test_an_unregistered_column_or_table_is_refused_by_name():
    cfg = _small()
    cols = {"time": [0.0], "insurance_fund": [0], "bad_debt": [0], "fee_pool": [0], "brand_new": [1]}
    with pytest.raises(UnregisteredColumn, match=r"fund\.brand_new .*add each to sim\.experiment\.tables\.TABLES"):
        to_arrow("fund", cols, cfg)
    with pytest.raises(UnregisteredColumn, match="'loss_book' is not in the results registry: add it"):
        to_arrow("loss_book", {"x": [1]}, cfg)


def test_every_table_a_real_episode_records_is_registered(written):
    out, _ = written
    for name, table in out.result.tables.items():
        assert name in TABLES, f"result table {name!r}: add it to sim.experiment.tables.TABLES and docs/RESULTS.md"
        missing = set(table) - set(TABLES[name].columns)
        assert not missing, f"{name}: add {sorted(missing)} to the registry in sim/experiment/tables.py"


def test_accounts_directory_names_every_account(written):
    out, res = written
    acc = res.tables["accounts"]
    assert acc.column("account").to_pylist() == list(range(acc.num_rows))
    assert acc.column("name").to_pylist()[:5] == ["insurance_fund", "fee_pool", "bad_debt", "ccp_capital",
                                                   "default_fund"]
    types = acc.column("type").to_pylist()
    for group in SMALL["population"]["groups"]:
        assert types.count(group["type"]) == group["count"]
    lev = pc.equal(acc.column("type"), "leveraged")
    assert set(acc.filter(lev).column("initial_capital").to_pylist()) == {10000.0}
    assert set(acc.filter(lev).column("initial_quote_minor").to_pylist()) == {10_000_000_000}
    fund = out.result.config.clearing.loss_absorption.insurance_fund
    assert acc.column("initial_quote").to_pylist()[0] == fund
    known = set(acc.column("account").to_pylist())
    for stem, column in (("liquidations", "account"), ("account_states", "account"), ("trades", "maker"),
                         ("trades", "taker"), ("losses", "account")):
        assert set(res.tables[stem].column(column).to_pylist()) <= known, stem


def test_file_names():
    assert file_name("accounts") == "account_states" and file_name("directory") == "accounts"
    assert file_name("trades") == "trades"


def test_load_explains_a_comparison_folder(tmp_path):
    (tmp_path / "cmp" / "span").mkdir(parents=True)
    (tmp_path / "cmp" / "comparison.json").write_text("[]")
    (tmp_path / "cmp" / "span" / "summary.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="is a regime comparison: load one regime's folder"):
        load(tmp_path / "cmp")
    assert load(tmp_path / "cmp" / "span").summary == {}


def test_the_html_report_shows_human_numbers(written):
    import re

    out, _ = written
    text = (out.directory / "report.html").read_text(encoding="utf-8")
    visible = re.sub(r'<img [^>]*>', "", text)  # base64 images may contain anything
    assert "None" not in visible and not re.search(r"\de[+-]\d", visible)
    assert "bad debt (USD)" in visible


def test_trades_packed_in_chunks_equal_the_rows_they_came_from(monkeypatch):
    """The recorder packs fills into float64 chunks as it goes: with chunks of 7 fills the trades
    table is the same, column for column and dtype for dtype, as with every fill in one chunk;
    and an episode without fills gives empty columns (known answer: zero rows)."""
    from sim.experiment import recorder
    from sim.experiment.episode import run as run_episode

    whole = run_episode(_small()).tables["trades"]
    monkeypatch.setattr(recorder, "_TRADE_CHUNK", 7)
    chunked = run_episode(_small()).tables["trades"]
    assert whole["time"].size > 3 * 7
    for column, values in whole.items():
        assert chunked[column].dtype == values.dtype and np.array_equal(chunked[column], values), column
    assert whole["time"].dtype == np.float64 and whole["maker"].dtype == np.int64
    quiet = _small().model_copy(update={"population": _small().population.model_copy(update={"groups": []})})
    empty = run_episode(quiet).tables["trades"]
    assert all(v.size == 0 for v in empty.values())


def test_account_samples_joined_in_place_equal_their_concatenation():
    """The recorder joins each account column's samples into one array, releasing them as it goes:
    the same values and dtype as ``np.concatenate``, the same again on a second call; none and one
    sample are known answers (zero rows; the sample itself)."""
    from sim.experiment.recorder import _joined

    rng = np.random.default_rng(3)
    for dtype in (np.float64, np.int8):
        chunks = [rng.integers(-50, 50, size).astype(dtype) for size in (5, 0, 7, 7, 3)]
        want = np.concatenate(chunks)
        got = _joined(chunks)
        assert got.dtype == want.dtype and np.array_equal(got, want)
        assert len(chunks) == 1 and np.array_equal(_joined(chunks), want)  # the list now holds the table
    assert _joined([]).size == 0
    rows = [rng.random((n, 8)) for n in (3, 0, 5)]  # the trades' (fills, columns) chunks
    want = np.concatenate(rows)
    assert np.array_equal(_joined(rows), want) and len(rows) == 1
    one = np.arange(4.0)
    assert _joined([one]) is one


def test_accounts_table_rows_are_every_sample_of_every_trader():
    """Known answer: one row per (sample, trader account), accounts FIRST_TRADER.. in each sample,
    the sample's time repeated."""
    from clearing.ledger import FIRST_TRADER
    from sim.experiment.episode import run as run_episode

    result = run_episode(_small())
    acc = result.tables["accounts"]
    traders = result.stats["accounts"]
    times = np.unique(acc["time"])
    assert acc["account"].size == times.size * traders
    assert np.array_equal(acc["account"], np.tile(np.arange(FIRST_TRADER, FIRST_TRADER + traders), times.size))
    assert np.array_equal(acc["time"], np.repeat(times, traders))
    assert all(v.size == acc["account"].size for v in acc.values())
