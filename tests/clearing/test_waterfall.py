"""CCP default waterfall and default-fund sizing on a real Ledger."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.bad_debt import record_bad_debt
from sim.core.instruments import Asset, Instrument, InstrumentKind
from clearing.ledger import QUOTE, Ledger, SystemAccount
from clearing.waterfall import DefaultWaterfall, size_default_fund


def _ledger(n_traders: int) -> tuple[Ledger, list[int]]:
    ins = Instrument(0, "X-FUT", InstrumentKind.FUTURE, "X", "USD", tick_size=0.01, lot_size=1.0,
                     multiplier=1.0, tick_value=1, expiry=1e9)
    ledger = Ledger([Asset("USD", decimals=2)], [ins], capacity=8)
    return ledger, [ledger.open_account() for _ in range(n_traders)]


def _default(ledger: Ledger, loser: int, winner: int, loss: int) -> None:
    """Make ``loser`` lose ``loss`` minor units to ``winner`` through two trades (variation margin)."""
    ledger.trade(loser, winner, 0, 100_000, 1)
    ledger.trade(winner, loser, 0, 100_000 - loss, 1)


# ----------------------------------------------------------------------------- sizing


def test_cover1_and_cover2_sizing():
    stress = np.array([5_000.0, 12_000.0, 3_000.0, 9_000.5])
    margin = np.array([4_000.0, 2_000.0, 5_000.0, 1_000.0])
    # uncovered: 1000, 10000, 0, 8000.5 -> 8001 (rounded up)
    total1, c1 = size_default_fund(stress, margin, cover=1)
    assert total1 == 10_000 and int(c1.sum()) == 10_000
    total2, c2 = size_default_fund(stress, margin, cover=2)
    assert total2 == 18_001 and int(c2.sum()) == 18_001
    assert c2[2] == 0                                # no uncovered loss, no contribution
    # pro rata to 1000 : 10000 : 0 : 8001 -> 947.4, 9473.7, 0, 7579.9: floors + 2 largest remainders
    assert c2.tolist() == [947, 9_474, 0, 7_580]
    _, by_margin = size_default_fund(stress, margin, cover=2, allocate_by="margin")
    assert int(by_margin.sum()) == 18_001
    # 4:2:5:1 of 18,001 -> 6000.3, 3000.2, 7500.4, 1500.1: the one spare unit to the largest remainder
    assert by_margin.tolist() == [6_000, 3_000, 7_501, 1_500]
    total0, c0 = size_default_fund(np.array([1.0]), np.array([5.0]), cover=2)   # margin covers the stress
    assert total0 == 0 and c0.tolist() == [0]


def test_sizing_rejects_bad_input():
    with pytest.raises(ValueError, match="cover"):
        size_default_fund(np.ones(2), np.zeros(2), cover=0)
    with pytest.raises(ValueError, match="aligned"):
        size_default_fund(np.ones(2), np.zeros(3))
    with pytest.raises(ValueError, match="allocate_by"):
        size_default_fund(np.ones(2), np.zeros(2), allocate_by="size")


def test_margin_allocation_with_zero_margins_splits_equally():
    total, c = size_default_fund(np.array([10.0, 0.0, 0.0]), np.zeros(3), cover=1, allocate_by="margin")
    assert total == 10 and c.tolist() == [4, 3, 3]


# ----------------------------------------------------------------------------- funding


def test_fund_by_deposit_and_from_cash():
    ledger, (a, b, c) = _ledger(3)
    wf = DefaultWaterfall(ledger, {a: 1_000, b: 2_000, c: 3_000}, ccp_capital=4_000)
    wf.fund()
    bal = ledger.system_balances()
    assert bal["default_fund"] == 6_000 and bal["ccp_capital"] == 4_000
    assert [int(ledger.cash[m, QUOTE]) for m in (a, b, c)] == [0, 0, 0]
    assert int(ledger.deposits[QUOTE]) == 10_000
    with pytest.raises(RuntimeError):
        wf.fund()
    ledger.check()

    ledger2, (a2, b2) = _ledger(2)
    ledger2.deposit(a2, QUOTE, 5_000)
    wf2 = DefaultWaterfall(ledger2, {a2: 1_000, b2: 2_000}, ccp_capital=0, deposit=False)
    with pytest.raises(ValueError, match="less quote cash"):
        wf2.fund()
    assert ledger2.system_balances()["default_fund"] == 0          # nothing moved
    ledger2.deposit(b2, QUOTE, 2_000)
    wf2.fund()
    assert int(ledger2.cash[a2, QUOTE]) == 4_000 and int(ledger2.cash[b2, QUOTE]) == 0
    ledger2.check()


def test_absorb_before_fund_is_an_error():
    ledger, (a,) = _ledger(1)
    with pytest.raises(RuntimeError):
        DefaultWaterfall(ledger, {a: 10}, 0).absorb(a, 5)


# ----------------------------------------------------------------------------- absorption order


def test_layers_consumed_in_order_through_assessments():
    ledger, (a, b, c, d) = _ledger(4)
    wf = DefaultWaterfall(ledger, {a: 1_000, b: 2_000, c: 3_000}, ccp_capital=4_000,
                          skin_in_game_fraction=0.25, assessment_cap=1.0)
    wf.fund()
    ledger.deposit(b, QUOTE, 10_000)
    ledger.deposit(c, QUOTE, 10_000)
    _default(ledger, a, d, 10_000)
    assert int(ledger.cash[a, QUOTE]) == -10_000
    layers = wf.absorb(a, 10_000)
    assert layers == [
        ("defaulter_default_fund", 1_000),
        ("ccp_skin_in_game", 1_000),            # 25% of 4,000
        ("survivors_default_fund", 5_000),      # all of b's 2,000 and c's 3,000
        ("assessments", 3_000),                 # pro rata to the cap: b 1,200, c 1,800
    ]
    assert int(ledger.cash[a, QUOTE]) == 0
    assert wf.remaining == {a: 0, b: 0, c: 0}
    assert wf.assessment_remaining == {a: 1_000, b: 800, c: 1_200}
    assert int(ledger.cash[b, QUOTE]) == 10_000 - 1_200 and int(ledger.cash[c, QUOTE]) == 10_000 - 1_800
    assert ledger.system_balances()["ccp_capital"] == 3_000
    assert ledger.flows["waterfall: survivors_default_fund"] == 5_000
    assert wf.log[-1][1] == a
    ledger.check()


def test_loss_beyond_every_layer_reaches_vm_haircut_and_bad_debt():
    ledger, (a, b, c, d, e) = _ledger(5)
    gains = np.zeros(16)
    gains[[d, e]] = [3_000, 1_000]
    wf = DefaultWaterfall(ledger, {a: 1_000, b: 2_000, c: 3_000}, ccp_capital=4_000, assessment_cap=0.5,
                          vm_gains=lambda led: gains[: led.n_accounts])
    wf.fund()
    _default(ledger, a, d, 20_000)
    layers = wf.absorb(a, 20_000)
    assert [name for name, _ in layers] == ["defaulter_default_fund", "ccp_skin_in_game", "survivors_default_fund",
                                            "assessments", "vm_gains_haircut"]
    assert layers == [("defaulter_default_fund", 1_000), ("ccp_skin_in_game", 1_000),
                      ("survivors_default_fund", 5_000), ("assessments", 2_500),
                      ("vm_gains_haircut", 4_000)]
    assert sum(x for _, x in layers) == 20_000 - 6_500
    assert wf.last_uncovered == 6_500 and wf.log[-1][2][-1] == ("uncovered", 6_500)
    assert int(ledger.cash[b, QUOTE]) == -1_000 and int(ledger.cash[c, QUOTE]) == -1_500   # capped at 50%
    assert int(ledger.cash[a, QUOTE]) == -6_500
    assert record_bad_debt(ledger, a) == 6_500
    assert ledger.bad_debt() == 6_500
    ledger.check()


def test_second_default_uses_what_is_left_and_excludes_defaulted_members():
    ledger, (a, b, c, d) = _ledger(4)
    wf = DefaultWaterfall(ledger, {a: 1_000, b: 2_000, c: 3_000}, ccp_capital=4_000)
    wf.fund()
    _default(ledger, a, d, 3_000)
    assert wf.absorb(a, 3_000) == [("defaulter_default_fund", 1_000), ("ccp_skin_in_game", 1_000),
                                   ("survivors_default_fund", 1_000)]
    assert wf.remaining == {a: 0, b: 1_600, c: 2_400}      # 1,000 taken 2:3
    _default(ledger, b, d, 5_000)
    layers = wf.absorb(b, 5_000)
    # b's own 1,600 left, no skin left, c is the only survivor (a has defaulted): 2,400, then c's assessment
    assert layers == [("defaulter_default_fund", 1_600), ("survivors_default_fund", 2_400), ("assessments", 1_000)]
    assert wf.survivors() == [c]
    assert int(ledger.cash[c, QUOTE]) == -1_000
    assert wf.absorb(c, 0) == []
    ledger.check()


@settings(max_examples=50, deadline=None)
@given(contribs=st.lists(st.integers(0, 50_000), min_size=2, max_size=6), ccp=st.integers(0, 100_000),
       loss=st.integers(0, 400_000), cap=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_random_defaults_conserve_cash_and_sum_to_loss(contribs, ccp, loss, cap):
    ledger, acc = _ledger(len(contribs) + 1)
    members, winner = acc[:-1], acc[-1]
    wf = DefaultWaterfall(ledger, dict(zip(members, contribs)), ccp_capital=ccp, assessment_cap=cap)
    wf.fund()
    _default(ledger, members[0], winner, loss)
    before = int(ledger.cash[members[0], QUOTE])
    layers = wf.absorb(members[0], loss)
    uncovered = wf.last_uncovered
    # what the layers report is what reached the defaulter's account, and the rest is uncovered
    assert int(ledger.cash[members[0], QUOTE]) - before == sum(x for _, x in layers)
    assert sum(x for _, x in layers) + uncovered == loss and uncovered >= 0
    order = ["defaulter_default_fund", "ccp_skin_in_game", "survivors_default_fund", "assessments"]
    names = [n for n, _ in layers]
    assert names == sorted(names, key=order.index) and len(set(names)) == len(names)
    assert all(x > 0 for _, x in layers)
    assert all(v >= 0 for v in wf.remaining.values()) and wf.skin_remaining >= 0
    assert int(ledger.cash[members[0], QUOTE]) == -uncovered
    record_bad_debt(ledger, members[0])
    assert ledger.bad_debt() == uncovered
    assert int(ledger.cash[SystemAccount.DEFAULT_FUND, QUOTE]) == sum(wf.remaining.values())
    ledger.check()
