"""Properties every margin regime must have (METHODS.md sections 1-5: standard margin after
Binance / dYdX / Deribit, CME SPAN, TIMS / FINRA Rule 4210(g), Deribit portfolio margin, VaR with
EMIR RTS 153/2013 Art. 28 anti-procyclicality).

- Hedged portfolios -- long + short futures on one underlying, a covered call, a delta-hedged
  short straddle -- need no more initial margin under the portfolio regimes (span, tims,
  portfolio, portfolio_joint) than under standard, and strictly less. The covered call is drawn
  with an at- or in-the-money call (strike <= forward): with an out-of-the-money call the
  position is mostly an outright long, and the portfolio regime's 16% move plus 10% delta shock
  then asks more than the 10% standard rate -- a real difference of the regimes, not a hedge.
- Positive homogeneity: 2x every position -> 2x the requirement (add-ons off).
- Adding a position that only reduces every scenario loss never raises the requirement: a long
  option delta-hedged with its own forward instrument gains in every scenario of a regime whose
  scenarios move price only (convexity), so the regimes are configured with vol shocks off and
  the non-scenario add-ons that such a hedge legitimately changes (TIMS per-contract minimum,
  roll shock on the hedge future) off; the precondition is checked on the regime's own matrix.
  The VaR regimes age options over the MPOR, so there the hedge is not loss-reducing: the margin
  moves by no less than the addition's smallest and no more than its largest scenario loss
  (exactly that loss when it is the same in every scenario).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sim.core.instruments import InstrumentTable
from clearing.margin.base import FEW_ACCOUNTS, Positions, _worst, segment_reduce_t, segment_sums, \
    worst_loss_per_account, worst_loss_per_group
from clearing.margin.examples import make_instrument, make_market
from clearing.margin.registry import build_regime
from sim.market.pricing import black76_greeks

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PORTFOLIO_REGIMES = ("span", "tims", "portfolio", "portfolio_joint")


def _im(regime_name, table, market, lots, **kw):
    return float(build_regime(regime_name, table, **kw).requirements(Positions.of([lots]), market).im[0])


# ---------------------------------------------------------------------------------------- hedges
@SETTINGS
@given(near=st.sampled_from([None, 7, 30]), far=st.sampled_from([30, 90, 180]),
       basis=st.floats(-0.05, 0.05), q=st.floats(0.1, 50.0), sign=st.sampled_from([1.0, -1.0]),
       vol=st.floats(0.2, 1.5))
def test_calendar_spread_is_cheaper_than_standard(near, far, basis, q, sign, vol):
    assume(near is None or near < far)
    ins = [make_instrument(0, "NEAR", "perpetual" if near is None else "future", "X", 1.0, near),
           make_instrument(1, "FAR", "future", "X", 1.0, far)]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"X": 100.0}, {"X": vol}, linear_marks={"FAR": 100.0 * (1 + basis)})
    lots = [sign * q, -sign * q]
    std = _im("standard", table, market, lots)
    for name in PORTFOLIO_REGIMES:
        assert _im(name, table, market, lots) < std, name


@SETTINGS
@given(moneyness=st.floats(0.8, 1.0), days=st.floats(1.0, 180.0), vol=st.floats(0.2, 1.5), q=st.floats(0.1, 20.0))
def test_covered_call_is_cheaper_than_standard(moneyness, days, vol, q):
    ins = [make_instrument(0, "FUT", "future", "X", 1.0, days),
           make_instrument(1, "CALL", "option", "X", 1.0, days, strike=100.0 * moneyness, is_call=True)]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"X": 100.0}, {"X": vol})
    lots = [q, -q]
    std = _im("standard", table, market, lots)
    for name in PORTFOLIO_REGIMES:
        assert _im(name, table, market, lots) < std, name


@SETTINGS
@given(moneyness=st.floats(0.8, 1.2), days=st.floats(1.0, 180.0), vol=st.floats(0.2, 1.5), q=st.floats(0.1, 20.0))
def test_delta_hedged_short_straddle_is_cheaper_than_standard(moneyness, days, vol, q):
    k = 100.0 * moneyness
    ins = [make_instrument(0, "FUT", "future", "X", 1.0, days),
           make_instrument(1, "CALL", "option", "X", 1.0, days, strike=k, is_call=True),
           make_instrument(2, "PUT", "option", "X", 1.0, days, strike=k, is_call=False)]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"X": 100.0}, {"X": vol})
    delta = float(np.sum(black76_greeks(100.0, k, days / 365.0, vol, np.array([True, False])).delta))
    lots = [q * delta, -q, -q]  # short straddle: its delta is -delta per unit, hedged long
    std = _im("standard", table, market, lots)
    for name in PORTFOLIO_REGIMES:
        assert _im(name, table, market, lots) < std, name


# ----------------------------------------------------------------------------------- homogeneity
def _book():
    ins = [
        make_instrument(0, "BTC-PERP", "perpetual", "BTC"),
        make_instrument(1, "BTC-F30", "future", "BTC", 1.0, 30),
        make_instrument(2, "BTC-F90", "future", "BTC", 1.0, 90),
        make_instrument(3, "BTC-C30", "option", "BTC", 1.0, 30, 66_000.0, True),
        make_instrument(4, "BTC-P30", "option", "BTC", 1.0, 30, 54_000.0, False),
        make_instrument(5, "BTC-C90", "option", "BTC", 1.0, 90, 60_000.0, True),
        make_instrument(6, "ETH-PERP", "perpetual", "ETH", 10.0),
        make_instrument(7, "ETH-C30", "option", "ETH", 10.0, 30, 3_300.0, True),
        make_instrument(8, "ETH-P30", "option", "ETH", 10.0, 30, 2_700.0, False),
    ]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"BTC": 60_000.0, "ETH": 3_000.0}, {"BTC": 0.6, "ETH": 0.8},
                         linear_marks={"BTC-F30": 60_300.0, "BTC-F90": 61_000.0})
    rng = np.random.default_rng(3)
    history = np.exp(np.cumsum(rng.normal(0.0, 0.03, (700, 2)), axis=0))
    history *= np.array([60_000.0, 3_000.0]) / history[-1]
    return table, market, history


BOOK = _book()
lots_strategy = st.lists(st.sampled_from([0.0, 0.0, 0.0, -3.0, -1.0, -0.5, 0.5, 1.0, 2.0]), min_size=9, max_size=9)


@SETTINGS
@given(rows=st.lists(lots_strategy, min_size=1, max_size=4), factor=st.sampled_from([2.0, 3.0, 0.5]))
@pytest.mark.parametrize("name", ["standard", "standard_isolated", "span", "tims", "portfolio", "portfolio_joint",
                                  "var", "var_apc"])
def test_positive_homogeneity(name, rows, factor):
    table, market, history = BOOK
    pos = Positions.of(rows)
    one = build_regime(name, table, history=history).requirements(pos, market)
    k = build_regime(name, table, history=history).requirements(pos.scale(factor), market)
    np.testing.assert_allclose(k.im, factor * one.im, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(k.mm, factor * one.mm, rtol=1e-9, atol=1e-6)


@SETTINGS
@given(rows=st.lists(lots_strategy, min_size=1, max_size=4))
@pytest.mark.parametrize("config", [
    "standard", "standard_isolated", "span", "tims", "portfolio", "portfolio_joint", "var", "var_apc",
    {"regime": "standard", "tiers": [{"max_notional": 50_000, "im_rate": 0.02, "mm_rate": 0.01},
                                     {"im_rate": 0.10, "mm_rate": 0.05}]},
    {"regime": "standard", "liquidity": {"mode": "sqrt", "imf": 0.01, "apply_to_mm": True}},
    {"regime": "portfolio", "liquidity": {"mode": "sqrt", "imf": 0.01, "apply_to_mm": True}},
], ids=str)
def test_maintenance_never_exceeds_initial_margin(config, rows):
    """The clearing house orders health states IM > cancel level > MM and bounds a threshold's rise
    by the IM an order adds: both need MM <= IM for every account, under every regime."""
    table, market, history = BOOK
    req = build_regime(config, table, history=history).requirements(Positions.of(rows), market)
    assert np.all(req.mm <= req.im + 1e-9 * np.maximum(req.im, 1.0))


# ------------------------------------------------------------------------- loss-reducing additions
PURE_SCENARIO = {
    "span": {"regime": "span", "vol_scan": 0.0},
    "tims": {"regime": "tims", "minimum_per_contract": 0.0},
    "portfolio": {"regime": "portfolio", "vol_up": 0.0, "vol_down": 0.0, "min_vol_up": 0.0,
                  "roll_shock_rate": 0.0, "roll_shock_floor": 0.0},
    "portfolio_joint": {"regime": "portfolio_joint", "vol_up": 0.0, "vol_down": 0.0, "min_vol_up": 0.0,
                        "roll_shock_rate": 0.0, "roll_shock_floor": 0.0},
    "var": {"regime": "var"},
    "var_apc": {"regime": "var_apc"},
}


def _scenario_pnl(regime, market) -> np.ndarray:
    """The regime's own scenario P&L per long lot (instruments x scenarios)."""
    if hasattr(regime, "risk_arrays"):
        return regime.risk_arrays(market)
    if hasattr(regime, "pnl_matrices"):
        return np.concatenate(list(regime.pnl_matrices(market).values()), axis=1)
    m = regime.pnl_matrix(market)
    if hasattr(regime, "n_core"):
        return np.asarray(m[:, : regime.n_core + regime.n_ext], dtype=np.float64)
    return m


@SETTINGS
@given(base=lots_strategy, option=st.sampled_from([3, 4, 5, 7, 8]), q=st.floats(0.1, 5.0))
@pytest.mark.parametrize("name", list(PURE_SCENARIO))
def test_adding_a_loss_reducing_position_never_raises(name, base, option, q):
    """A long option hedged with its forward instrument, added to any book.

    Scenario regimes (span, tims, portfolio, portfolio_joint) revalue at unchanged time: the hedge
    gains in every scenario (convexity) -- the precondition, checked on the regime's own matrix --
    and the requirement must not rise.

    The VaR regimes revalue at the end of the margin period of risk: there the same hedge loses its
    time decay wherever the move is small (gamma gain < theta), so it is not loss-reducing and the
    requirement may rise. What holds exactly is the property the scenario regimes' is the special
    case of: each VaR / ES figure is the k-th largest (mean of the k largest) of per-scenario sums,
    so adding a position that loses A_s in scenario s moves it by at least min A and at most max A
    (the k-th largest of L + A lies between the k-th largest of L plus min A and plus max A); the
    floor at 0, the stressed weighting (a convex combination) and the 10-year floor (a maximum) keep
    both bounds. So, A over every scenario set of the regime:

        before + min(0, min A)  <=  after  <=  before + max(0, max A)

    -- "never raises" when max A <= 0. Both sides are reached: a loss the same in every scenario
    moves the margin by exactly that loss (``test_a_loss_the_same_in_every_scenario_...`` below),
    and with these hedges the rise comes within ~10% of max A, so a tail that missed the added
    position's losses, or counted them twice, fails here.
    """
    table, market, history = BOOK
    regime = build_regime(PURE_SCENARIO[name], table, history=history)
    # long option hedged with its forward instrument (same-expiry future, else the perp)
    src = int(regime.rev.source[option])
    delta = float(regime.rev.deltas(market)[option] / table.contract_units[src])
    add = np.zeros(9)
    add[option] += q
    add[src] -= q * delta
    pnl = _scenario_pnl(regime, market)
    loss = -(add @ pnl)  # A: the addition's loss in each of the regime's scenarios
    before = regime.requirements(Positions.of([base]), market).im[0]
    after = build_regime(PURE_SCENARIO[name], table, history=history).requirements(
        Positions.of([np.asarray(base) + add]), market).im[0]
    tol = 1e-9 * max(1.0, before, float(np.abs(loss).max()))  # rounding of the sums, not slack
    if name.startswith("var"):
        assert before + min(0.0, float(loss.min())) - tol <= after <= before + max(0.0, float(loss.max())) + tol
    else:
        assert np.all(loss <= 1e-6 * np.abs(pnl).max())  # precondition: gains in every scenario
        assert after <= before + tol


@pytest.mark.parametrize("name", ["var", "var_apc"])
def test_a_loss_the_same_in_every_scenario_moves_var_by_exactly_that(name):
    """The bound above is reached: an option on an underlying whose history never moved loses only
    its time decay over the MPOR, the same c in every scenario of every set (base, stressed,
    floor), so the book's margin moves from m to m + c -- to rounding."""
    ins = [make_instrument(0, "X-PERP", "perpetual", "X"), make_instrument(1, "X-C", "option", "X", 1.0, 30, 100.0, True),
           make_instrument(2, "Y-C", "option", "Y", 1.0, 20, 100.0, True)]
    table = InstrumentTable.from_instruments(ins)
    market = make_market(table, {"X": 100.0, "Y": 100.0}, {"X": 0.6, "Y": 0.5})
    rng = np.random.default_rng(6)
    history = np.column_stack([100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, 800))), np.full(800, 100.0)])
    history[:, 0] *= 100.0 / history[-1, 0]
    regime = build_regime(name, table, history=history)
    decay = -regime.pnl_matrices(market)["base"][2]  # the Y call's loss: its theta over the MPOR
    assert decay.min() == decay.max() > 0.0
    base = [-1.0, 2.0, 0.0]
    before = regime.requirements(Positions.of([base]), market).im[0]
    after = build_regime(name, table, history=history).requirements(Positions.of([[-1.0, 2.0, 3.0]]), market).im[0]
    assert before > 0.0
    assert after == pytest.approx(before + 3.0 * decay[0], rel=1e-12, abs=1e-9)


# ---------------------------------------------------------------- sparse machinery vs brute force
@SETTINGS
@given(seed=st.integers(0, 10_000), n_acc=st.integers(1, 60), n_ins=st.integers(1, 12), n_groups=st.integers(1, 4))
def test_sparse_aggregation_matches_dense(seed, n_acc, n_ins, n_groups):
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_acc, n_ins)) < 0.3, rng.integers(-5, 6, (n_acc, n_ins)), 0).astype(float)
    pnl = rng.normal(0, 100, (n_ins, 7))
    groups = rng.integers(0, n_groups, n_ins)
    pos = Positions.of(dense)
    np.testing.assert_allclose(worst_loss_per_account(pos, pnl), np.maximum(-(dense @ pnl).min(axis=1), 0.0), atol=1e-9)
    per_group = np.stack([np.maximum(-((dense * (groups == g)) @ pnl).min(axis=1), 0.0) for g in range(n_groups)], 1)
    np.testing.assert_allclose(worst_loss_per_group(pos, pnl, groups, n_groups), per_group, atol=1e-9)
    seg, sums = segment_sums(pos, pnl, groups, n_groups)
    for s in range(seg.n):
        expect = (dense[seg.row[s]] * (groups == seg.group[s])) @ pnl
        np.testing.assert_allclose(sums[s], expect, atol=1e-9)
    # adding a position with non-negative P&L everywhere never raises the worst loss
    extra = np.abs(rng.normal(0, 10, (1, 7)))
    pnl2 = np.vstack([pnl, extra])
    dense2 = np.hstack([dense, rng.integers(0, 4, (n_acc, 1)).astype(float)])
    assert np.all(worst_loss_per_account(Positions.of(dense2), pnl2) <= worst_loss_per_account(pos, pnl) + 1e-9)


@SETTINGS
@given(seed=st.integers(0, 10_000), n_acc=st.integers(1, FEW_ACCOUNTS), n_ins=st.integers(1, 12),
       n_groups=st.integers(1, 4), zeros=st.booleans())
def test_a_few_accounts_get_the_segment_paths_worst_loss_to_the_bit(seed, n_acc, n_ins, n_groups, zeros):
    """The few-accounts path of worst_loss_per_group (the pre-trade checks' states) gives the
    segment path's figures bit for bit (compared as bytes: signs of zero included), fractional
    lots, empty rows and P&L rows that cancel to zero among them."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_acc, n_ins)) < 0.5, rng.normal(0, 3, (n_acc, n_ins)), 0.0)
    pnl = rng.normal(0, 100, (n_ins, 16))
    if zeros:  # scenarios where a group's sum is exactly zero, and rows with no position
        pnl[:, :4] = 0.0
        dense[0] = 0.0
    groups = rng.integers(0, n_groups, n_ins)
    few = worst_loss_per_group(Positions.of(dense), pnl, groups, n_groups)
    seg, (worst,) = segment_reduce_t(Positions.of(dense), np.ascontiguousarray(pnl.T), groups, n_groups, _worst, 1)
    by_segments = np.zeros((n_acc, n_groups))
    by_segments[seg.row, seg.group] = worst
    assert few.tobytes() == by_segments.tobytes()


@SETTINGS
@given(rows=st.lists(lots_strategy, min_size=1, max_size=FEW_ACCOUNTS), extra=st.integers(1, 6))
@pytest.mark.parametrize("name", ["span", "tims", "portfolio", "portfolio_joint", "var", "var_apc",
                                  pytest.param({"regime": "tims", "product_groups": {"crypto": {
                                      "underlyings": ["BTC", "ETH"]}}}, id="tims_offset")])
def test_a_few_accounts_are_margined_to_the_bit_as_among_many(name, rows, extra):
    """The regimes' few-accounts path (the pre-trade checks' two or three states of one account)
    gives each account the requirement, bit for bit, that the segment path gives it among more
    accounts (here: the same accounts followed by empty ones, which add no segment)."""
    table, market, history = BOOK
    few = np.array(rows, dtype=np.float64)
    many = np.vstack([few, np.zeros((FEW_ACCOUNTS + extra - len(rows), few.shape[1]))])
    alone = build_regime(name, table, history=history).requirements(Positions.of(few), market)
    among = build_regime(name, table, history=history).requirements(Positions.of(many), market)
    assert alone.im.tobytes() == among.im[: len(rows)].tobytes()
    assert alone.mm.tobytes() == among.mm[: len(rows)].tobytes()


@SETTINGS
@given(rows=st.lists(st.lists(st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -3.0]), min_size=3, max_size=3),
                     min_size=1, max_size=FEW_ACCOUNTS), repeat=st.booleans())
def test_var_tables_of_a_few_accounts_are_the_whole_blocks(rows, repeat):
    """VaR's tables of a few accounts (built in plain Python) are those the whole-block path builds
    from np.unique, to the byte: the distinct portfolios' order, the inverse, held counts, columns,
    lots and slot prefixes (equal rows, signed zeros among them, collapse as numpy collapses them).
    A zero's sign in the distinct rows may differ; no figure reads it (only non-zero lots are terms)."""
    import clearing.margin.var as var

    lots = np.array((rows + rows[:1])[:FEW_ACCOUNTS] if repeat else rows, dtype=np.float64)
    few = var.LotSlots(lots)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(var, "FEW_ACCOUNTS", 0)  # the whole-block path for the same rows
        block = var.LotSlots(lots)
    for name in ("inverse", "nheld", "col", "lot"):
        mine, numpys = getattr(few, name), getattr(block, name)
        assert mine.dtype == numpys.dtype and mine.shape == numpys.shape and mine.tobytes() == numpys.tobytes(), name
    assert few.prefix == block.prefix and few.n == block.n
    assert few.dense.shape == block.dense.shape and np.array_equal(few.dense, block.dense)
    assert few.dense.flags.c_contiguous
    loss = np.random.default_rng(len(rows)).normal(0, 100, (lots.shape[1], 40))
    if few.dense.shape[0]:  # a flat book has no losses to compute (tail_of returns before asking)
        assert few.all_losses(loss).tobytes() == block.all_losses(loss).tobytes()
