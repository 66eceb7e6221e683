"""Result tables in the user's units: the registry of every column, and the conversion applied where
Parquet is written (``sim.experiment.results``).

Inside the engine money is integer (or float) minor units, prices integer ticks, and instruments,
underlyings, health states and sides small integer codes. A results folder is read by people with
pandas or polars, so each column is converted once, on the way out:

* money (``MONEY``): quote currency as float64, the exact minor-unit value kept beside it as
  ``<name>_minor``;
* prices on a book (``TICKS``): quote currency per contract unit as float64 (ticks x the
  instrument's tick size), the ticks kept as ``<name>_ticks``;
* codes (instrument, underlying, health, side, solvency kind) and free strings: dictionary-encoded
  strings;
* everything else as it is, cast to its registered type.

Every column's unit and description is written into the Parquet schema (field metadata ``unit``
and ``description``; table metadata ``table``, ``description``, ``quote_currency``), and
docs/RESULTS.md is the data dictionary. A column that is not registered is refused by name, so a
new recorder column cannot reach users in unlabelled internal units: add it to ``TABLES`` below
(and to docs/RESULTS.md, which a test compares with what is written).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from clearing.health import Health
from sim.core.orders import FillFlag

if TYPE_CHECKING:
    from sim.experiment.schema.episode import EpisodeConfig

__all__ = ["Col", "TableSpec", "TABLES", "FILE_NAMES", "UnregisteredColumn", "to_arrow", "file_name",
           "data_dictionary", "render_markdown", "MONEY", "TICKS", "ASSET_AMOUNT"]

# unit kinds that are converted (everything else is a plain unit label)
MONEY = "money"  # minor units of the quote currency -> quote currency
TICKS = "ticks"  # integer (or fractional) ticks of the row's instrument -> quote currency
QUOTE_PRICE = "quote price"  # already quote currency per unit of an underlying (labelled only)
ASSET_AMOUNT = "asset amount"  # minor units of the asset named in ``collateral_asset`` -> units of it
INSTRUMENT = "instrument"  # index into market.instruments -> symbol
UNDERLYING = "underlying"  # index into the price paths -> name
HEALTH = "health"  # clearing.health.Health -> name
SIDE = "side"  # +1 / -1 -> buy / sell
FLAGS = "flags"  # sim.core.orders.FillFlag bits -> "liquidation+adl" ("none" when 0)
SOLVENCY_KIND = "solvency kind"  # 0 / 1 / 2 -> insurance_fund / bad_debt_recoveries / trader
CODES = (INSTRUMENT, UNDERLYING, HEALTH, SIDE, FLAGS, SOLVENCY_KIND)


@dataclass(frozen=True, slots=True)
class Col:
    """A registered column: how it is stored in memory (``unit``, ``dtype``) and what it means."""

    unit: str
    description: str
    dtype: str = "float64"  # the in-memory type it is cast to before conversion (string: "str")


@dataclass(frozen=True, slots=True)
class TableSpec:
    description: str
    columns: dict[str, Col]


def _t(unit: str = "seconds") -> Col:
    return Col(unit, "simulated time since the episode start", "float64")


def _acc(what: str = "the account") -> Col:
    return Col("account id", f"{what} (ledger row; join with accounts.account)", "int64")


def _money(desc: str, dtype: str = "float64") -> Col:
    return Col(MONEY, desc, dtype)


def _ticks(desc: str, dtype: str = "float64") -> Col:
    return Col(TICKS, desc, dtype)


_INSTRUMENT = Col(INSTRUMENT, "instrument symbol", "int64")

#: in-memory table name -> spec. The Parquet file name is ``FILE_NAMES.get(name, name)``.
TABLES: dict[str, TableSpec] = {
    "trades": TableSpec("every fill, in the order they happened", {
        "time": _t(),
        "instrument": _INSTRUMENT,
        "price": _ticks("trade price", "int64"),
        "size": Col("lots", "size in lots (one lot = the instrument's lot_size contract units)", "int64"),
        "aggressor": Col(SIDE, "side of the taker (buy or sell)", "int64"),
        "maker": _acc("the resting order's account"),
        "taker": _acc("the incoming order's account"),
        "flags": Col(FLAGS, "why the trade happened: none, or liquidation/adl/backstop/auction joined by +",
                     "int64"),
    }),
    "oracle": TableSpec("every oracle publication: the published index against the true price", {
        "time": _t(),
        "underlying": Col(UNDERLYING, "underlying name", "int64"),
        "index": Col(QUOTE_PRICE, "published index price per unit of the underlying"),
        "true": Col(QUOTE_PRICE, "true (path) price at the publication"),
    }),
    "market": TableSpec("every instrument at each sample: marks, index and the top of the book", {
        "time": _t(),
        "instrument": _INSTRUMENT,
        "mark": _ticks("mark price"),
        "index": _ticks("index price in the instrument's price units"),
        "best_bid": _ticks("best bid (NaN: empty side)"),
        "best_ask": _ticks("best ask (NaN: empty side)"),
        "open_interest": Col("lots", "open interest in lots (long lots over all accounts)", "int64"),
    }),
    "fund": TableSpec("system balances at each sample", {
        "time": _t(),
        "insurance_fund": _money("insurance fund balance", "int64"),
        "bad_debt": _money("cumulative bad debt", "int64"),
        "fee_pool": _money("fees collected", "int64"),
    }),
    "margin_totals": TableSpec("what the clearing house enforced, summed over traders at each full re-valuation", {
        "time": _t(),
        "im": _money("total initial margin requirement"),
        "mm": _money("total maintenance margin requirement"),
        "equity": _money("total equity"),
        "gross": _money("total gross notional"),
    }),
    "accounts": TableSpec("every trader account at each sample", {
        "time": _t(),
        "account": _acc(),
        "equity": _money("equity (cash after haircuts + positions at mark)"),
        "im": _money("initial margin requirement"),
        "mm": _money("maintenance margin requirement"),
        "health": Col(HEALTH, "health state: healthy, below_im, below_cancel, below_mm, bankrupt", "int8"),
        "gross": _money("gross notional of positions at mark"),
    }),
    "liquidations": TableSpec("one row per liquidation, with its cause (a cascade is a tree over parent)", {
        "liq_id": Col("id", "liquidation id", "int64"),
        "account": _acc("the liquidated account"),
        "breach_time": _t(),
        "start_time": _t(),
        "end_time": _t(),
        "cause": Col("string", "what pushed the account below MM: oracle, liquidation, loss_allocation, interval",
                     "str"),
        "cause_ref": Col("id", "oracle publication number, or the parent liquidation id", "int64"),
        "parent": Col("id", "the liquidation that cost the account most, when the but-for rule makes the breach "
                                 "endogenous (-1: none)", "int64"),
        "generation": Col("count", "depth in the cascade tree (0: exogenous)", "int64"),
        "equity_at_breach": _money("equity when MM was breached"),
        "mm_at_breach": _money("maintenance margin when MM was breached"),
        "outcome": Col("string", "how it ended", "str"),
        "notional": _money("notional closed", "int64"),
        # the but-for split of the equity change since the account was last at or above maintenance
        # (docs/METHODOLOGY.md, "Breach attribution"); the channels sum to that change exactly
        "equity_change_index": _money("equity change since the last healthy valuation from index moves"),
        "equity_change_collateral": _money("equity change from collateral prices and haircuts"),
        "equity_change_impact": _money("equity change from other liquidations' own price impact on the marks"),
        "equity_change_allocation": _money("equity change from loss allocations for other liquidations (ADL at "
                                           "the bankruptcy price, socialised loss, assessments)"),
        "equity_change_other": _money("the rest: other traders' basis moves, funding, fees, own trading"),
        "mm_change": _money("maintenance margin change over the same interval"),
        "endogenous": Col("bool", "but for the impact and allocation channels (a material loss) the account "
                          "would have stayed at or above maintenance", "bool"),
        "spell": Col("id", "the distress spell (cascade node) it belongs to: the spell's first liquidation id",
                     "int64"),
    }),
    "liquidation_steps": TableSpec("every step of every liquidation", {
        "liq_id": Col("id", "liquidation id (join with liquidations.liq_id)", "int64"),
        "time": _t(),
        "account": _acc("the liquidated account"),
        "instrument": _INSTRUMENT,
        "policy": Col("string", "book, backstop, auction, takeover or adl", "str"),
        "lots": Col("lots", "lots closed (signed as the account's trade)", "int64"),
        "notional": _money("notional closed", "int64"),
        "avg_price": _ticks("average execution price"),
        "mark": _ticks("mark at the step"),
        "bankruptcy": _ticks("bankruptcy price of the position"),
        "fee": _money("liquidation fee charged", "int64"),
    }),
    "losses": TableSpec("every loss absorbed, by layer", {
        "time": _t(),
        "liq_id": Col("id", "the liquidation the loss came from", "int64"),
        "account": _acc("the bankrupt account"),
        "layer": Col("string", "the layer that absorbed it", "str"),
        "amount": _money("amount absorbed", "int64"),
    }),
    "solvency": TableSpec("final equity at published and at true collateral prices", {
        "account": _acc(),
        "kind": Col(SOLVENCY_KIND, "insurance_fund, bad_debt_recoveries (collateral in kind) or trader", "int64"),
        "equity": _money("equity with collateral at published prices"),
        "equity_true_collateral": _money("equity with collateral at true prices"),
    }),
    "who_paid": TableSpec("the loss ledger: who paid each amount of the liquidation and default losses", {
        "time": _t(),
        "liq_id": Col("id", "the liquidation the amount belongs to (-1: the backstop vault's own row)", "int64"),
        "account": _acc("the liquidated account (the vault for its own row)"),
        "layer": Col("string", "defaulter_margin, defaulter_default_fund, liquidation_penalties, insurance_fund, "
                     "ccp_capital, survivors_default_fund, assessments, vm_gains_haircut, adl, socialised, "
                     "backstop_vault or bad_debt", "str"),
        "borne_by": Col("string", "defaulter, liquidated or others", "str"),
        "amount": _money("amount paid", "int64"),
    }),
    "backstop_vault": TableSpec("the backstop vault's equity and P&L at each sample", {
        "time": _t(),
        "account": _acc("the vault's account"),
        "capital": _money("collateral at the start, published prices, no haircut"),
        "equity": _money("collateral plus positions at mark, the same valuation"),
        "pnl": _money("equity - capital"),
    }),
    "reference_margin": TableSpec("the fixed reference portfolio's requirements at each sample", {
        "time": _t(),
        "im": _money("initial margin of the reference portfolio"),
        "mm": _money("maintenance margin of the reference portfolio"),
        "gross": _money("gross notional of the reference portfolio"),
    }),
    "directory": TableSpec("every ledger row: system rows and trader accounts, with what they started with", {
        "account": Col("account id", "ledger row", "int64"),
        "name": Col("string", "system row name, or <group>/<k> for an agent", "str"),
        "group": Col("string", "population group (system, backstop_vault for the house vault)", "str"),
        "type": Col("string", "agent type (market_maker, leveraged, ...) or system", "str"),
        "initial_quote": _money("quote currency deposited", "int64"),
        "collateral_asset": Col("string", "the non-quote collateral asset deposited (null: none)", "str"),
        "initial_collateral": Col(ASSET_AMOUNT, "amount of collateral_asset deposited, in that asset's units",
                                  "int64"),
        "initial_capital": _money("everything deposited, valued at the starting prices without haircuts"),
    }),
}

#: in-memory name -> Parquet file stem, where they differ: ``accounts.parquet`` is the directory
#: users join on; the per-sample states are ``account_states.parquet``.
FILE_NAMES = {"accounts": "account_states", "directory": "accounts"}

_SIDES = {1: "buy", -1: "sell"}
_SOLVENCY = {0: "insurance_fund", 1: "bad_debt_recoveries", 2: "trader"}


class UnregisteredColumn(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def file_name(table: str) -> str:
    return FILE_NAMES.get(table, table)


def _spec(table: str) -> TableSpec:
    spec = TABLES.get(table)
    if spec is None:
        raise UnregisteredColumn(f"result table {table!r} is not in the results registry: add it to "
                                 f"sim.experiment.tables.TABLES (every column with its unit and description) and to "
                                 f"docs/RESULTS.md")
    return spec


def _cast(values: Any, col: Col) -> np.ndarray:
    a = np.asarray(values)
    if col.dtype == "str":
        return np.array([None if v is None else str(v) for v in a.tolist()], dtype=object)
    return a.astype(col.dtype, copy=False)


def _dictionary(values: list[Any]) -> pa.Array:
    return pa.array(values, type=pa.string()).dictionary_encode()


def _decode(kind: str, codes: np.ndarray, context: "Context") -> pa.Array:
    """Integer codes as a dictionary array of their names (vectorised: one name per distinct code)."""
    distinct, inverse = np.unique(codes.astype(np.int64), return_inverse=True)
    if kind == INSTRUMENT:
        name = _from_list(context.symbols)
    elif kind == UNDERLYING:
        name = _from_list(context.underlyings)
    elif kind == HEALTH:
        name = _from_list([h.name.lower() for h in Health])
    elif kind == SIDE:
        name = lambda v: _SIDES.get(v, str(v))  # noqa: E731
    elif kind == SOLVENCY_KIND:
        name = lambda v: _SOLVENCY.get(v, str(v))  # noqa: E731
    else:  # FLAGS
        name = _flag_names
    return pa.DictionaryArray.from_arrays(pa.array(inverse.reshape(-1).astype(np.int32)),
                                          pa.array([name(v) for v in distinct.tolist()], type=pa.string()))


def _from_list(names: list[str]) -> Callable[[int], str]:
    return lambda v: names[v] if 0 <= v < len(names) else str(v)


def _flag_names(bits: int) -> str:
    if bits == 0:
        return "none"
    # a Flag member's name is None only for a combination of members, which iterating never yields
    return "+".join(f.name.lower() for f in FillFlag if f and bits & f)  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class Context:
    """What the conversion needs from the episode config."""

    quote: str
    quote_decimals: int
    symbols: list[str]
    underlyings: list[str]
    ticks_per_unit: np.ndarray  # per instrument: 1 / tick_size (the divisor of a tick count)
    asset_decimals: dict[str, int]

    @classmethod
    def of(cls, config: EpisodeConfig) -> Context:
        market = config.market
        inv = np.array([1.0 / i.tick_size for i in market.instruments])
        return cls(market.quote.name, market.quote.decimals, [i.symbol for i in market.instruments],
                   list(config.paths.names()), inv,
                   {a.name: a.decimals for a in [market.quote, *market.collateral]})


def _field(name: str, array: pa.Array, col: Col, unit: str | None = None, description: str | None = None) -> \
        tuple[pa.Field, pa.Array]:
    meta = {"unit": unit or col.unit, "description": description or col.description}
    return pa.field(name, array.type, metadata=meta), array


def _ticks_to_price(ticks: np.ndarray, instrument: np.ndarray, context: Context) -> np.ndarray:
    # dividing by a whole number of ticks per unit is correctly rounded (1407 / 10 is exactly 140.7
    # as a float; 1407 * 0.1 is not)
    inv = context.ticks_per_unit[instrument.astype(np.int64)] if instrument.size else np.zeros(0)
    whole = np.abs(inv - np.round(inv)) < 1e-9
    return np.where(whole, ticks / np.where(whole, np.round(inv), 1.0), ticks / inv)


def to_arrow(table: str, columns: Mapping[str, Any], config: Any) -> pa.Table:
    """One in-memory table as an Arrow table in user units, with units and descriptions in its schema.

    Raises ``UnregisteredColumn`` naming any table or column missing from ``TABLES``."""
    spec = _spec(table)
    unknown = [c for c in columns if c not in spec.columns]
    if unknown:
        raise UnregisteredColumn(f"column(s) {', '.join(f'{table}.{c}' for c in unknown)} not in the results "
                                 f"registry: add each to sim.experiment.tables.TABLES[{table!r}] with its unit and "
                                 f"description, and to docs/RESULTS.md")
    lengths = {len(np.asarray(v)) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"{table}: columns of unequal length")
    context = Context.of(config)
    scale = 10.0 ** context.quote_decimals
    fields: list[tuple[pa.Field, pa.Array]] = []
    for name, raw in columns.items():
        col = spec.columns[name]
        values = _cast(raw, col)
        if col.unit == MONEY:
            fields.append(_field(name, pa.array(values / scale, type=pa.float64()), col, context.quote))
            fields.append(_field(f"{name}_minor", pa.array(values), col, f"{context.quote} minor units "
                                 f"(1/{10 ** context.quote_decimals:,}); exact"))
        elif col.unit == TICKS:
            instrument = _cast(columns["instrument"], spec.columns["instrument"])
            price = _ticks_to_price(values.astype(np.float64), instrument, context)
            fields.append(_field(name, pa.array(price, type=pa.float64()), col, f"{context.quote} per unit"))
            fields.append(_field(f"{name}_ticks", pa.array(values), col, "ticks of the instrument; exact"))
        elif col.unit == ASSET_AMOUNT:
            assets = _cast(columns["collateral_asset"], spec.columns["collateral_asset"])
            div = np.array([10.0 ** context.asset_decimals.get(a, 0) if a is not None else 1.0
                            for a in assets.tolist()])
            fields.append(_field(name, pa.array(values / div if values.size else np.zeros(0), type=pa.float64()),
                                 col, "units of collateral_asset"))
            fields.append(_field(f"{name}_minor", pa.array(values), col, "minor units of collateral_asset; exact"))
        elif col.unit == QUOTE_PRICE:
            fields.append(_field(name, pa.array(values, type=pa.float64()), col, f"{context.quote} per unit"))
        elif col.unit in CODES:
            fields.append(_field(name, _decode(col.unit, values, context), col, "name"))
        elif col.dtype == "str":
            fields.append(_field(name, _dictionary(values.tolist()), col))
        else:
            fields.append(_field(name, pa.array(values), col))
    schema = pa.schema([f for f, _ in fields], metadata={
        "table": file_name(table), "description": spec.description, "quote_currency": context.quote})
    return pa.Table.from_arrays([a for _, a in fields], schema=schema)


def type_name(t: pa.DataType) -> str:
    """A short type name for the data dictionary."""
    if pa.types.is_dictionary(t):
        return "string (dictionary)"
    return {"double": "float64", "bool": "bool"}.get(str(t), str(t))


def render_markdown(config: Any) -> str:
    """The data dictionary as the Markdown docs/RESULTS.md carries between its markers."""
    lines: list[str] = []
    for stem, rows in data_dictionary(config).items():
        table = next(t for t in TABLES if file_name(t) == stem)
        lines += [f"### `{stem}.parquet`", "", TABLES[table].description[:1].upper() + TABLES[table].description[1:]
                  + ".", "", "| column | type | unit | description |", "|---|---|---|---|"]
        lines += [f"| `{c}` | {t} | {u} | {d} |" for c, t, u, d in rows]
        lines.append("")
    return "\n".join(lines)


def data_dictionary(config: Any) -> dict[str, list[tuple[str, str, str, str]]]:
    """File stem -> [(column, type, unit, description)] as written for ``config`` (empty tables;
    the types do not depend on the contents). ``docs/RESULTS.md`` lists the same rows."""
    out = {}
    for table, spec in TABLES.items():
        empty = {name: np.zeros(0, dtype=object if col.dtype == "str" else col.dtype)
                 for name, col in spec.columns.items()}
        arrow = to_arrow(table, empty, config)
        out[file_name(table)] = [(f.name, type_name(f.type), f.metadata[b"unit"].decode(),
                                  f.metadata[b"description"].decode()) for f in arrow.schema]
    return out
