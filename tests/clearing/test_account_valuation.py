"""The one-account valuation path (``ClearingHouse.account_valuation``, ``covers_im_with`` and
``MarginRegime.account_requirements``) gives the general array path's figures to the bit: on
random accounts with linear and option positions, resting orders, zero positions, tiered, single
rate, dense and isolated standard margin -- and falls back to the array path for regimes without
a one-account path."""

from __future__ import annotations

import numpy as np
import pytest

from clearing.config import ClearingConfig
import clearing.house as house_module
from clearing.house import ClearingHouse
from clearing.ledger import FIRST_TRADER, Ledger
from clearing.margin.base import Positions
from clearing.margin.config import StandardConfig
from clearing.margin.examples import benchmark_book
from clearing.margin.span import SpanRegime
from clearing.margin.standard import StandardRegime
from sim.core.instruments import Asset
from tests.clearing.fakes import FakeMarks, FakeOracle, FakeVenue, FakeWorld

TIERS = [{"max_notional": 2_000.0, "im_rate": 0.05, "mm_rate": 0.025},
         {"max_notional": 20_000.0, "im_rate": 0.1, "mm_rate": 0.05}, {"im_rate": 0.2, "mm_rate": 0.1}]
CONFIGS = {
    "tiered": StandardConfig(tiers=TIERS),
    "single": StandardConfig(tiers=[{"im_rate": 0.05, "mm_rate": 0.025}]),
    "isolated": StandardConfig(tiers=TIERS, margin_mode="isolated"),
    "no_mark_added": StandardConfig(tiers=TIERS, short_option={"add_mark": False}),
}


def _book(n_instruments: int, seed: int):
    table, market, *_ = benchmark_book(n_accounts=1, n_instruments=n_instruments, seed=seed)
    return table, market


def _random_lots(rng: np.random.Generator, n: int) -> np.ndarray:
    lots = np.zeros(n)
    held = rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False)
    lots[held] = rng.integers(-400, 401, held.size)  # some are drawn as zero
    return lots


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("n_instruments", [3, 12])  # 3: linear only (the dense column path when cross)
def test_regime_account_requirements_equal_the_array_path(name: str, n_instruments: int) -> None:
    table, market = _book(n_instruments, seed=n_instruments)
    regime = StandardRegime(table, CONFIGS[name])
    rng = np.random.default_rng(5)
    for _ in range(400):
        lots = _random_lots(rng, len(table))
        got = regime.account_requirements(lots.tolist(), market)
        want = regime.requirements_stateless(Positions(lots[None, :]), market)
        assert got is not None
        assert got[0] == want.im[0] and got[1] == want.mm[0], lots
        assert np.float64(got[0]).tobytes() == want.im[0].tobytes()  # to the bit, not only ==
        assert np.float64(got[1]).tobytes() == want.mm[0].tobytes()


def test_regime_account_requirements_zero_and_caps() -> None:
    table, market = _book(12, seed=1)
    regime = StandardRegime(table, StandardConfig(tiers=TIERS))
    assert regime.account_requirements([0.0] * len(table), market) == (0.0, 0.0)
    capped = StandardRegime(table, StandardConfig(tiers=TIERS, open_interest_caps={"lower": 1e6, "upper": 1e7}))
    assert capped.account_requirements([1.0] + [0.0] * (len(table) - 1), market) is None  # the array path
    assert SpanRegime(table).account_requirements([1.0] * len(table), market) is None


class _Marks(FakeMarks):
    def __init__(self, table, market) -> None:
        super().__init__(len(table))
        # fractional ticks, as a mark between two ticks is: equity sums are then inexact, and
        # their bits depend on the order of the products
        self.ticks = np.asarray(market.marks) / table.tick_size * 1.000_123_7
        self._market = market

    def market_state(self, now: float):
        return self._market


def _house(regime_of, n_accounts: int, seed: int, assets=(Asset("USD", 2),)):
    table, market = _book(12, seed=seed)
    world, ledger = FakeWorld(), Ledger(list(assets), table.instruments, capacity=16)
    venue = FakeVenue(len(table))
    house = ClearingHouse(world, ledger, venue, FakeOracle(index=np.array([60_000.0, 3_000.0, 150.0]),
                                                           underlyings=("BTC", "ETH", "SOL")),
                          _Marks(table, market), table, regime_of(table), ClearingConfig())
    rng = np.random.default_rng(seed)
    maker = ledger.open_account()
    accounts = [ledger.open_account() for _ in range(n_accounts)]
    venue.resting.ensure(ledger.n_accounts)
    for a in accounts:
        for asset in range(len(assets)):
            ledger.deposit(a, asset, int(rng.integers(0, 10**9)))
        lots = _random_lots(rng, len(table)).astype(np.int64)
        for i in np.flatnonzero(lots).tolist():
            n = int(lots[i])
            price = int(rng.integers(1, 10**5))
            ledger.trade(a, maker, i, price, n) if n > 0 else ledger.trade(maker, a, i, price, -n)
        if rng.random() < 0.5:  # resting orders on a few instruments, both sides
            for i in rng.choice(len(table), size=3, replace=False).tolist():
                venue.resting.add(a, i, int(rng.choice([1, -1])), int(rng.integers(1, 600)))
    return house, accounts, rng


HOUSES = {
    "tiered": lambda t: StandardRegime(t, StandardConfig(tiers=TIERS)),
    "isolated": lambda t: StandardRegime(t, StandardConfig(tiers=TIERS, margin_mode="isolated")),
    "single": lambda t: StandardRegime(t, StandardConfig(tiers=[{"im_rate": 0.05, "mm_rate": 0.025}])),
    "span (array path)": SpanRegime,
}


def _array_path(house, rows: np.ndarray, monkeypatch) -> tuple:
    """``_value_rows`` on the one-row (or few-row) arrays, without the plain-Python path for few rows."""
    with monkeypatch.context() as m:
        m.setattr(house_module, "_FEW_ROWS", 0)
        return house._value_rows(rows)


@pytest.mark.parametrize("name", sorted(HOUSES))
def test_account_valuation_equals_the_array_path(name: str, monkeypatch) -> None:
    house, accounts, rng = _house(HOUSES[name], 150, seed=3)
    for account in accounts + [FIRST_TRADER]:  # FIRST_TRADER: the maker, the other side of every trade
        got = house.account_valuation(account)
        want = _array_path(house, np.array([account]), monkeypatch)[:3]
        assert [np.float64(x).tobytes() for x in got] == [w[0].tobytes() for w in want], account
        lots = np.asarray(house.ledger.position[accounts[int(rng.integers(len(accounts)))]])
        rows = np.array([account])
        worst = house.exposure(rows)
        worst[0] += lots
        expected = bool(house.equities(rows)[0] >= house.requirements(worst).im[0] * house.scale)
        assert house.covers_im_with(account, lots) == expected


@pytest.mark.parametrize("name", sorted(HOUSES))
def test_few_rows_equal_the_array_path(name: str, monkeypatch) -> None:
    """A few rows at once (a fill's parties, ADL counterparties) give the arrays the array path
    gives -- equity, IM, MM and the worst-case lots -- to the bit."""
    house, accounts, rng = _house(HOUSES[name], 120, seed=6)
    for _ in range(60):
        rows = np.sort(rng.choice(accounts, size=int(rng.integers(1, 9)), replace=False))
        got, want = house._value_rows(rows), _array_path(house, rows, monkeypatch)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes()


def test_account_valuation_with_haircut_collateral(monkeypatch) -> None:
    """Two collateral assets: the collateral goes through the same array call as the general path."""
    assets = (Asset("USD", 2), Asset("BTC", 8, haircut=0.1, price_source="BTC"))
    house, accounts, _rng = _house(HOUSES["tiered"], 40, seed=4, assets=assets)
    for account in accounts:
        got = house.account_valuation(account)
        want = _array_path(house, np.array([account]), monkeypatch)[:3]
        assert [np.float64(x).tobytes() for x in got] == [w[0].tobytes() for w in want]


def test_a_known_account() -> None:
    """Control with a hand-worked answer: one long BTC perpetual position, no orders, one rate."""
    house, _accounts, _rng = _house(HOUSES["single"], 0, seed=1)
    ledger, marks = house.ledger, house.marks
    a, b = ledger.open_account(), ledger.open_account()
    house.venue.resting.ensure(ledger.n_accounts)
    ledger.deposit(a, 0, 1_000_000)
    marks.ticks[0] = mark = 60_000  # a whole tick, so that the trade at the mark moves no equity
    ledger.trade(a, b, 0, mark, 3)  # at the mark: equity is the deposit
    equity, im, mm = house.account_valuation(a)
    notional = 3 * float(house.table.contract_units[0]) * float(house.marks.market_state(0).marks[0])
    assert equity == 1_000_000
    assert im == notional * 0.05 * house.scale and mm == notional * 0.025 * house.scale
    assert house.account_valuation(ledger.open_account()) == (0.0, 0.0, 0.0)  # nothing at all
