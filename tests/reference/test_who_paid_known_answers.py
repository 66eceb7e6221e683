"""Who paid, socialised-loss caps and procyclicality: scenarios whose answers are worked out by hand.

Source: the definitions in docs/METHODOLOGY.md (*Who paid*, *Procyclicality*), applied to hand-built
episodes (``tests.scenarios.harness``: one BTC perpetual, tick $1, lot 0.01 BTC -- $0.01 per tick
per lot -- a scripted path with zero vol, accounts placed by hand). Every money figure below is
worked out from prices and lots, not read back from the code.
"""

from __future__ import annotations

import numpy as np
import pytest

from clearing.ledger import QUOTE
from sim.experiment.errors import ConfigError
from sim.experiment.config import parse_episode
from sim.experiment.metrics import summarise
from tests.scenarios import harness
from tests.scenarios.harness import BASE, USD, Scenario, crash


def _summary(s: Scenario) -> dict:
    return summarise(s.config, s.recorder.tables())


def _default_setup(*overrides, traders: int = 1):
    """Each trader: long 18 lots (0.18 BTC, $9,000) at 50,000 on $1,000, against a whale's short.
    A 10% crash at t=100 (publication at 45,000) leaves equity $100 < MM $405; the only bid is a
    separate bidder's at 40,000, so the close-out sells at 40,000: a further $900 loss, $800 of it
    beyond the account's equity -- the deficit."""
    s = Scenario(crash(100.0, 0.10), {"clearing": {"liquidation": {"book": {"worst_price": "band"}}}}, *overrides)
    whale = s.account(10_000_000)
    accounts = [s.account(1_000) for _ in range(traders)]
    for a in accounts:
        s.position(a, whale, 18)
    bidder = s.account(1_000_000)
    s.bid(bidder, 40_000.0, 100 * traders)
    return s, accounts, whale, bidder


def test_a_deficit_covered_partly_by_the_fund_and_partly_socialised_is_split_exactly():
    """$800 deficit: the $300 fund pays first, the $500 rest is socialised over the profitable side
    -- the whale (short 18 from 50,000) and the bidder (long 18 from 40,000), both in profit at the
    45,000 mark -- pro rata to 18 : 18 lots, $250 each. The defaulter's margin at default is its
    $100 equity at the breach; with it the default cost $900 = 18 lots x 0.01 x (45,000 - 40,000)."""
    s, (trader,), whale, bidder = _default_setup({"clearing": {"loss_absorption": {
        "insurance_fund": 300.0, "adl": "off", "socialised": "open_interest"}}})
    whale_cash, bidder_cash = int(s.ep.ledger.cash[whale, QUOTE]), int(s.ep.ledger.cash[bidder, QUOTE])
    s.run()
    (event,) = s.events
    assert event.outcome == "bankrupt" and event.equity_at_breach == pytest.approx(100 * USD)
    charged = {t.source: t.amount for t in s.ep.ledger.journal if t.reason == "socialised loss"}
    assert charged == {whale: 250 * USD, bidder: 250 * USD}
    losses = _summary(s)["losses"]
    who = losses["who_paid"]
    assert who["defaulter_margin"] == 100.0
    assert who["insurance_fund"] == 300.0 and who["socialised"] == 500.0 and who["bad_debt"] == 0.0
    assert who["adl"] == 0.0 and who["backstop_vault"] == 0.0 and who["liquidation_penalties"] == 0.0
    assert losses["borne_by_others"] == 800.0 and losses["paid_by_liquidated"] == 100.0
    assert losses["borne_by_others"] + losses["paid_by_liquidated"] == pytest.approx(18 * 0.01 * 5_000)
    # the whale paid its share on top of the bidder's purchase price difference, exactly
    assert int(s.ep.ledger.cash[bidder, QUOTE]) == bidder_cash - 18 * 40_000 * 10_000 - 250 * USD
    assert int(s.ep.ledger.cash[whale, QUOTE]) == whale_cash - 250 * USD


def test_socialised_loss_beyond_the_per_event_cap_is_bad_debt():
    s, _, _, _ = _default_setup({"clearing": {"loss_absorption": {
        "insurance_fund": 300.0, "adl": "off", "socialised": "open_interest", "socialised_cap_per_event": 200.0}}})
    s.run()
    who = _summary(s)["losses"]["who_paid"]
    assert who["insurance_fund"] == 300.0 and who["socialised"] == 200.0 and who["bad_debt"] == 300.0
    assert s.ep.ledger.bad_debt() == 300 * USD


def test_socialised_loss_beyond_the_per_episode_cap_is_bad_debt():
    """Two identical defaulters, $800 deficit each, no fund: the first is socialised in full, the
    second only up to what is left of the $1,000 episode cap ($200); its other $600 is bad debt."""
    s, (a, b), _, _ = _default_setup({"clearing": {"loss_absorption": {
        "insurance_fund": 0.0, "adl": "off", "socialised": "open_interest", "socialised_cap_per_episode": 1_000.0}}},
        traders=2)
    s.run()
    assert [e.outcome for e in s.events] == ["bankrupt", "bankrupt"]
    by_account = {(r[2], r[3]): r[4] for r in s.ep.absorber.records}
    first, second = sorted((a, b), key=lambda x: next(e.liq_id for e in s.events if e.account == x))
    assert by_account == {(first, "socialised:open_interest"): 800 * USD,
                          (second, "socialised:open_interest"): 200 * USD, (second, "bad_debt"): 600 * USD}
    losses = _summary(s)["losses"]
    assert losses["who_paid"]["socialised"] == 1_000.0 and losses["who_paid"]["bad_debt"] == 600.0
    assert losses["borne_by_others"] == 1_600.0


def test_socialised_caps_are_validated():
    bad = {"clearing": {"loss_absorption": {"socialised": "off", "socialised_cap_per_event": 10.0}}}
    with pytest.raises(ValueError, match="socialised_cap_per_event is set but socialised loss is not used"):
        parse_episode({**BASE, **bad}, "scenario")
    bad = {"clearing": {"loss_absorption": {"socialised": "depositors", "socialised_side": "long"}}}
    with pytest.raises(ValueError, match="socialised_side applies only to socialised: open_interest"):
        parse_episode({**BASE, **bad}, "scenario")
    bad = {"clearing": {"loss_absorption": {"socialised_cap_per_episode": -1.0}}}
    with pytest.raises(ValueError, match="socialised_cap_per_episode"):
        parse_episode({**BASE, **bad}, "scenario")


def test_adl_cost_is_what_the_counterparties_lost_against_the_mark():
    """Long 8 lots at 50,000 on $1,000 (bankruptcy price 37,500); a 40% crash marks 30,000 and the
    empty fund sends the position to ADL: two shorts take 4 lots each at 37,500 instead of 30,000:
    2 x 4 lots x 7,500 ticks x $0.01 = $600 -- exactly the $600 the account was under water."""
    s = Scenario(crash(100.0, 0.40), {"clearing": {"loss_absorption": {"insurance_fund": 0.0}}})
    trader = s.account(1_000)
    s1, s2, s3 = s.account(2_000), s.account(5_000), s.account(10_000)
    whale = s.account(10_000_000)
    s.position(trader, s1, 4)
    s.position(trader, s2, 4)
    s.position(whale, s3, 4)
    s.run()
    adl = [st for st in s.steps if st.policy == "adl"]
    assert [st.avg_price_ticks for st in adl] == [37_500.0, 37_500.0]
    assert all(st.mark_ticks == pytest.approx(30_000.0) for st in adl)
    losses = _summary(s)["losses"]
    assert losses["who_paid"]["adl"] == pytest.approx(600.0, abs=0.01)
    assert losses["who_paid"]["defaulter_margin"] == 0.0  # under water at the breach: no margin left
    assert losses["borne_by_others"] == pytest.approx(600.0, abs=0.01)
    assert s.events[0].equity_at_breach == pytest.approx(-600 * USD, abs=USD // 100)


@pytest.mark.parametrize("second_move, loss", [(-0.10, True), (0.10, False)])
def test_backstop_vault_pnl_on_what_it_took_over(second_move, loss):
    """A 10.5% crash (mark 44,750) hands the 18-lot long to the vault at 1% below the mark
    (floor(44,302.5) = 44,302); a further 10% gap moves the mark to 40,275 (or up to 49,225). The
    vault's P&L is 0.18 BTC x (final mark - 44,302): -$724.86 (a loss others bore) or +$881.37 (a
    gain, which is not netted against anything)."""
    s = Scenario(crash(100.0, 0.105), {"paths": {"shocks": [
        {"kind": "crash", "start": 100.0, "drop": 0.105, "duration": 1.0},
        {"kind": "gap", "start": 300.0, "size": second_move}]}},
        {"clearing": {"liquidation": {"backstop": {"enabled": True, "discount": 0.01, "capital": 1_000_000.0,
                                                     "equity_fraction_of_mm": 0.667}}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    ep = s.run()
    (step,) = [st for st in s.steps if st.policy == "backstop"]
    assert step.avg_price_ticks == 44_302.0
    final = 44_750.0 * (1 + second_move)
    assert float(ep.marks.ticks[0]) == pytest.approx(final)
    pnl = 0.18 * (final - 44_302.0)
    losses = _summary(s)["losses"]
    vault = losses["backstop_vault"]
    assert vault["capital"] == 1_000_000.0
    assert vault["pnl_final"] == pytest.approx(pnl, abs=0.01)
    assert losses["who_paid"]["backstop_vault"] == (pytest.approx(-pnl, abs=0.01) if loss else 0.0)
    # the hand-over cost the trader 0.18 x (44,750 - 44,302) = $80.64 against the mark, on equity of
    # 1,000 - 0.18 x 5,250 = $55 at the breach: its margin paid $55, the insurance fund $25.64
    assert losses["who_paid"]["defaulter_margin"] == pytest.approx(55.0, abs=0.01)
    assert losses["who_paid"]["insurance_fund"] == pytest.approx(25.64, abs=0.01)
    assert losses["borne_by_others"] == pytest.approx(losses["who_paid"]["backstop_vault"] + 25.64, abs=0.01)


@pytest.mark.parametrize("fee_rate", [0.0, 0.01])
def test_nothing_is_borne_by_others_when_liquidations_leave_no_deficit(fee_rate):
    """A partial liquidation into a deep bid just below the mark restores the account: the trader
    pays its own losses (and, with a fee, the penalty, which is all the insurance fund received)."""
    s = Scenario(crash(100.0, 0.10), {"clearing": {"liquidation": {"fee_rate": fee_rate}}})
    whale = s.account(10_000_000)
    trader = s.account(1_000)
    s.position(trader, whale, 18)
    s.bid(whale, 44_990.0, 100)
    s.run()
    assert s.events and all(e.outcome in ("restored", "closed") for e in s.events)
    losses = _summary(s)["losses"]
    assert losses["borne_by_others"] == 0.0
    # no loss to pay: the penalty paid none (it is the fund's gain), so the ledger is empty
    assert all(v == 0.0 for v in losses["who_paid"].values())
    fees = sum(st.fee for st in s.steps) / USD
    assert (fees > 0) == (fee_rate > 0)
    assert losses["insurance_fund_received"] == pytest.approx(fees)
    assert losses["insurance_fund_net"] == pytest.approx(fees)


def test_penalties_of_an_earlier_liquidation_are_not_counted_in_a_later_default():
    """The who-paid identity with a penalty in it. Long 18 lots at 50,000 on $1,000, 1% fee.
    An 8% crash (mark 46,000: equity $280 < MM $414) is met by a bid at 45,990: 8 lots sold
    ($3,679.20 notional, a $36.792 fee, $320.80 realised) restore the account: $642.408 cash on 10
    lots. A second crash to 45,000 leaves equity $642.408 - 0.10 x 5,000 = $142.408 < MM $225; the
    only bid, at 32,000, closes the 10 lots $1,300 below the mark: a $1,157.592 deficit, paid by the
    fund. The close beat no bankruptcy price, so it paid no fee: the default's margin is its whole
    equity at the breach. The fund pays the deficit with the $36.792 penalty of the first
    liquidation first, then $1,120.80 of its own: the penalty is counted once, as what it paid for,
    and the ledger adds up to the default's cost, $1,300."""
    shocks = {"paths": {"shocks": [{"kind": "crash", "start": 100.0, "drop": 0.08, "duration": 1.0},
                                   {"kind": "crash", "start": 300.0, "drop": 1 / 46, "duration": 1.0}]}}
    s = Scenario(shocks, {"clearing": {"liquidation": {"fee_rate": 0.01, "book": {"worst_price": "band"}},
                                       "loss_absorption": {"insurance_fund": 10_000.0, "adl": "off"}}})
    whale, trader, bidder = s.account(10_000_000), s.account(1_000), s.account(1_000_000)
    s.position(trader, whale, 18)
    s.bid(whale, 45_990.0, 100)

    def only_a_low_bid_left() -> None:
        s.ep.venue.cancel_all_now(whale)
        s.bid(bidder, 32_000.0, 100)

    s.ep.world.call_later(200.0, only_a_low_bid_left)
    s.run()
    assert [e.outcome for e in s.events] == ["restored", "bankrupt"]
    assert s.events[1].equity_at_breach == pytest.approx(142.408 * USD, abs=1)
    assert [st.fee for st in s.steps if st.liq_id == 0] == [36_792_000]
    assert all(st.fee == 0 for st in s.steps if st.liq_id == 1)
    losses = _summary(s)["losses"]
    who = losses["who_paid"]
    assert who["liquidation_penalties"] == pytest.approx(36.792)
    assert who["defaulter_margin"] == pytest.approx(142.408)
    assert who["insurance_fund"] == pytest.approx(1_157.592 - 36.792)
    assert all(v == 0.0 for k, v in who.items()
               if k not in ("liquidation_penalties", "defaulter_margin", "insurance_fund"))
    assert losses["borne_by_others"] == pytest.approx(1_120.8)
    assert losses["paid_by_liquidated"] == pytest.approx(142.408 + 36.792)
    # the ledger is the default's cost: margin + the deficit (penalty-financed and the fund's own)
    # = closing 0.10 BTC 13,000 below the mark, with nothing counted twice
    assert sum(who.values()) == pytest.approx(0.10 * 13_000)
    assert losses["insurance_fund_received"] == pytest.approx(36.792)
    assert losses["insurance_fund_net"] == pytest.approx(36.792 - 1_157.592)


# ------------------------------------------------------------------------------------ procyclicality
def _with_margin(monkeypatch, margin: dict) -> None:
    """Scenarios merge onto the harness's standard margin settings: replace them outright."""
    monkeypatch.setattr(harness, "BASE", {**BASE, "margin": margin})


def _reference_run(monkeypatch, margin: dict, measure_from: float = 300.0) -> dict:
    """No traders at all: only the reference portfolio (long $1 of BTC-PERP) is margined, every 10 s.
    The path has 50% vol, multiplied by 8 from t=300 to t=500 (a vol spike). The history the VaR
    regime reads gets a row every 20 s."""
    _with_margin(monkeypatch, margin)
    s = Scenario({"paths": {"models": [{"kind": "gbm", "underlyings": [{"name": "BTC", "s0": 50_000.0, "vol": 0.5}]}],
                            "shocks": [{"kind": "vol_spike", "start": 300.0, "duration": 200.0, "factor": 8.0}]},
                  "outputs": {"measure_from": measure_from, "procyclicality_horizon": 100.0},
                  "clearing": {"history": {"row_interval": 20.0, "pre_episode_rows": 300}}})
    s.run()
    return _summary(s)["margin"]


def test_reference_portfolio_margin_rate_is_flat_under_standard_margin(monkeypatch):
    m = _reference_run(monkeypatch, {"regime": "standard", "tiers": [{"im_rate": 0.10, "mm_rate": 0.05}]})
    ref = m["reference_rate"]
    assert ref["samples"] > 20
    assert ref["peak_to_trough_ratio"] == pytest.approx(1.0) and ref["max_increase_relative"] == pytest.approx(0.0)
    assert ref["at_measure_from"] == pytest.approx(0.10) and ref["final"] == pytest.approx(0.10)
    # no rise, so no time of one (argmax over zeros would name the first sample)
    assert ref["max_increase"] == 0.0 and ref["max_increase_time"] is None
    assert ref["max_increase_relative_time"] is None


def test_reference_portfolio_margin_rate_rises_with_vol_under_filtered_var(monkeypatch):
    """Filtered historical VaR scales its scenarios by today's EWMA vol: eight times the vol in the
    history rows drives the reference portfolio's rate up within the spike."""
    # horizons in days of time: one 20 s history row of MPOR; a day of lookback is more than the
    # history holds, so all of it is used
    m = _reference_run(monkeypatch, {"regime": "var", "method": "filtered", "mpor_days": 20.0 / 86_400,
                                     "lookback_days": 1.0, "ewma_lambda": 0.8})
    ref = m["reference_rate"]
    assert ref["peak_to_trough_ratio"] > 2.0
    assert ref["max_increase_relative"] > 0.5
    assert 300.0 < ref["max_increase_relative_time"] <= 600.0


def test_measurement_settings_are_validated():
    for outputs, message in (({"measure_from": 600.0}, "outputs.measure_from: 600 s is not inside the episode"),
                             ({"measure_from": 500.0, "procyclicality_horizon": 200.0},
                              "outputs.procyclicality_horizon: 200 s is longer than the measurement window"),
                             ({"reference_portfolio": {"ETH-PERP": 1.0}},
                              "outputs.reference_portfolio: unknown instrument 'ETH-PERP'"),
                             ({"reference_portfolio": {"BTC-PERP": 0.0}}, "non-zero finite")):
        with pytest.raises((ValueError, ConfigError), match=message):
            parse_episode({**BASE, "outputs": {**BASE["outputs"], **outputs}}, "scenario")


class _Untracked:
    def sample(self) -> None:
        pass


def test_reference_portfolio_sampling_leaves_the_episode_unchanged(monkeypatch):
    """The reference portfolio is margined with the stateless requirements: a VaR regime's memory
    is read, not advanced, so the population's margins are the same with or without it."""
    def run(track: bool) -> np.ndarray:
        s = Scenario(crash(100.0, 0.05), {"clearing": {"history": {"row_interval": 20.0, "pre_episode_rows": 300}}})
        whale = s.account(10_000_000)
        trader = s.account(5_000)
        s.position(trader, whale, 18)
        if not track:
            s.recorder.reference = _Untracked()
        s.run()
        if track:
            assert len(s.recorder.reference.rows) == 60  # every 10 s from 0 to 590
        return np.array(s.ep.house.margin_samples)
    _with_margin(monkeypatch, {"regime": "var", "method": "filtered", "buffer": 0.25, "mpor_days": 20.0 / 86_400})
    assert np.array_equal(run(True), run(False))


def test_the_defaulters_own_default_fund_contribution_is_not_borne_by_others():
    """The CCP waterfall on a $1,000 deficit (8 lots long from 50,000 on $1,000, sold at 25,000 after
    a 40% crash): its own default-fund contribution is the defaulter's money, the CCP's skin in the
    game (25% of $100 = $25) and everything after it are others'."""
    s = Scenario(crash(100.0, 0.40), {"clearing": {"loss_absorption": {
        "insurance_fund": 0.0, "adl": "off", "socialised": "off", "order": ["waterfall"],
        "waterfall": {"cover": 2, "members": 5, "sizing_time": 60.0, "ccp_capital": 100.0,
                      "skin_in_game": 0.25, "assessment_cap": 1.0}}}})
    trader = s.account(1_000)
    s1, s2, s3 = s.account(2_000), s.account(5_000), s.account(10_000)
    whale = s.account(10_000_000)
    s.position(trader, s1, 4)
    s.position(trader, s2, 4)
    s.position(whale, s3, 4)
    bidder = s.account(1_000_000)
    s.bid(bidder, 25_000.0, 100)
    s.run()
    own = sum(r[4] for r in s.ep.absorber.records if r[3] == "waterfall:defaulter_default_fund") / USD
    assert own > 0
    losses = _summary(s)["losses"]
    who = losses["who_paid"]
    assert who["defaulter_default_fund"] == own and who["ccp_capital"] == 25.0
    others = who["ccp_capital"] + who["survivors_default_fund"] + who["assessments"] + who["vm_gains_haircut"] \
        + who["bad_debt"]
    assert own + others == 1_000.0  # the whole deficit, layer by layer
    assert losses["borne_by_others"] == others and losses["paid_by_liquidated"] == own + who["defaulter_margin"]


def test_an_absorption_layer_without_a_payer_is_an_error_not_a_silent_drop():
    s, _, _, _ = _default_setup({"clearing": {"loss_absorption": {"insurance_fund": 300.0, "adl": "off"}}})
    s.run()
    s.ep.absorber.records.append((600.0, 0, 9, "haircut:new_layer", 5))
    with pytest.raises(ValueError, match="loss layer 'haircut:new_layer' has no who-paid layer"):
        s.recorder.tables()
