"""The gross notional a full re-valuation records (``ClearingHouse.margin_samples``, the
``margin_totals`` table's ``gross``): per instrument, the traders' |worst-case lots| summed, times
one lot's value at the mark. Known answers on the scenario harness's one perpetual at a flat
$50,000 (a lot is 0.01 BTC: $500), including the empty book, where it must be zero."""

from __future__ import annotations

from tests.scenarios.harness import USD, Scenario

LOT = 500 * USD  # one lot's value at the $50,000 mark, minor units


def _gross(s: Scenario) -> float:
    house = s.ep.house
    house.revalue_all(house.oracle_cause())
    return house.margin_samples[-1][4]


def test_no_position_and_no_order_is_zero_gross():
    s = Scenario()
    s.account(1_000_000)
    s.account(1_000)
    assert _gross(s) == 0.0


def test_gross_is_every_traders_worst_case_lots_at_the_mark_and_follows_trades():
    s = Scenario()
    whale, a, b = s.account(10_000_000), s.account(100_000), s.account(100_000)
    s.position(a, whale, 19)  # a long 19, the whale short 19
    s.bid(b, 49_000.0, 4)  # b flat, a resting bid: its worst case is long 4
    assert _gross(s) == (19 + 19 + 4) * LOT
    s.position(whale, a, 9)  # a sells 9 back: 10 and -10 (the kept sums drop the rows' old lots)
    assert _gross(s) == (10 + 10 + 4) * LOT
    s.ask(whale, 51_000.0, 25)  # the whale's worst case is now short 35: its ask adds to its short
    assert _gross(s) == (10 + 35 + 4) * LOT
