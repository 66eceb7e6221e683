"""Known-answer cases for venue rules as real venues run them (issue 15).

Sources:
* Price band on modifications: CME Globex "Price Banding" applies to new orders *and* order
  modifications; Binance's PERCENT_PRICE filter is checked on every order placement or
  modification. The numbers are the issue's: band 10%, reference 1000, a bid at 950 amended to
  1500 and an ask amended to 100 are both refused.
* Reduce-only trimming: BitMEX ("reduce-only orders are amended down or cancelled so that they can
  only reduce the position") and Binance Futures (reduce-only orders are cancelled or resized when
  the position is reduced elsewhere). The case is the issue's: long 10 with a resting reduce-only
  sell of 10 that sells its 10 elsewhere must end flat, never short 10.
"""

from __future__ import annotations

from sim.core.phases import Phase
from sim.core.kernel import World
from sim.market.latency import LatencyConfig
from sim.core.orders import BUY, SELL, Fill, RejectReason
from sim.market.venue_config import VenueConfig
from sim.market.venue import Venue

ZERO = LatencyConfig(kind="constant", mean=0.0)


class Positions:
    def __init__(self) -> None:
        self.held: dict[tuple[int, int], int] = {}

    def __call__(self, account: int, instrument: int) -> int:
        return self.held.get((account, instrument), 0)

    def on_trade(self, fill: Fill, _m: int, _t: int) -> None:
        s = fill.aggressor_side * fill.size
        self.held[(fill.taker_account, fill.instrument)] = self(fill.taker_account, fill.instrument) + s
        self.held[(fill.maker_account, fill.instrument)] = self(fill.maker_account, fill.instrument) - s


def venue_with_positions(**cfg) -> tuple[World, Venue, Positions]:
    pos = Positions()
    world = World(0)
    venue = Venue(world, VenueConfig(to_venue_latency=ZERO, to_agent_latency=ZERO, **cfg), [1], position_of=pos)
    venue.trade_listeners.add(pos.on_trade, Phase.OBSERVE)
    return world, venue, pos


# ------------------------------------------------------------------ price band on amend

def test_an_amend_outside_the_band_is_refused_and_the_order_stays_as_it_was():
    world, venue, _ = venue_with_positions(price_band=0.10)
    venue.reference[0] = 1000.0
    venue.execute(1, 1, 0, BUY, 950, 5)
    venue.execute(2, 2, 0, SELL, 1060, 5)
    venue.execute(3, 3, 0, SELL, 1050, 5)
    replies = []
    venue.amend(1, 1, 0, new_price=1500, reply=replies.append)  # would trade through both asks
    venue.amend(2, 2, 0, new_price=100, reply=replies.append)  # would rest 90% below the reference
    venue.amend(3, 3, 0, new_price=1100, reply=replies.append)  # exactly on the band's edge: allowed
    world.run(until=1.0)
    assert [r.reject for r in replies] == [RejectReason.OUTSIDE_PRICE_BAND] * 2 + [None]
    book = venue.books[0]
    assert (book.order(1).price, book.order(1).size) == (950, 5)
    assert book.order(2).price == 1060 and book.order(3).price == 1100
    assert venue.counts["fills"] == 0 and venue.counts["rejects"] == 2


def test_a_new_order_at_the_amended_price_gets_the_same_answer():
    world, venue, _ = venue_with_positions(price_band=0.10)
    venue.reference[0] = 1000.0
    assert venue.execute(1, 1, 0, BUY, 1500, 5).reject == RejectReason.OUTSIDE_PRICE_BAND
    assert venue.execute(2, 2, 0, SELL, 100, 5).reject == RejectReason.OUTSIDE_PRICE_BAND


# ------------------------------------------------------------------ reduce-only trimming

def test_a_resting_reduce_only_order_is_cancelled_when_the_position_closes_elsewhere():
    world, venue, pos = venue_with_positions()
    pos.held[(1, 0)] = 10
    assert venue.execute(1, 1, 0, SELL, 1100, 10, reduce_only=True).resting_size == 10
    venue.execute(2, 2, 0, BUY, 1000, 10)
    venue.execute(3, 1, 0, SELL, 1000, 10)  # sells its 10 elsewhere
    assert pos(1, 0) == 0
    assert 1 not in venue.books[0] and venue.open_asks[1, 0] == 0
    venue.execute(4, 3, 0, BUY, 1100, 10)  # a buyer arrives at the old reduce-only price
    assert pos(1, 0) == 0  # flat, not short 10
    assert venue.books[0].order(4).size == 10


def test_reduce_only_orders_are_trimmed_newest_first_and_the_oldest_keeps_its_priority():
    world, venue, pos = venue_with_positions()
    pos.held[(1, 0)] = 10
    venue.execute(1, 1, 0, SELL, 1100, 6, reduce_only=True)
    venue.execute(5, 9, 0, SELL, 1100, 3)  # another seller queued behind order 1
    venue.execute(2, 1, 0, SELL, 1200, 4, reduce_only=True)
    venue.execute(3, 2, 0, BUY, 1000, 7)
    venue.execute(4, 1, 0, SELL, 1000, 7)  # position 10 -> 3
    book = venue.books[0]
    assert 2 not in book  # the newest (4 lots) went entirely
    assert book.order(1).size == 3  # the oldest was cut from 6 to 3 in place
    assert list(book.resting_orders(SELL))[:2] == [book.order(1), book.order(5)]  # still ahead of 5
    assert venue.open_asks[1, 0] == 3
    book.check_integrity()


def test_a_reduce_only_order_on_a_flipped_position_is_removed():
    world, venue, pos = venue_with_positions()
    pos.held[(1, 0)] = 5
    venue.execute(1, 1, 0, SELL, 1100, 5, reduce_only=True)
    venue.execute(2, 2, 0, BUY, 1000, 8)
    venue.execute(3, 1, 0, SELL, 1000, 8)  # long 5 -> short 3: a reduce-only sell would add to it
    assert pos(1, 0) == -3 and 1 not in venue.books[0] and venue.open_asks[1, 0] == 0


def test_positions_the_reduce_only_order_still_fits_are_left_alone():
    world, venue, pos = venue_with_positions()
    pos.held[(1, 0)] = 10
    venue.execute(1, 1, 0, SELL, 1100, 4, reduce_only=True)
    venue.execute(2, 2, 0, BUY, 1000, 6)
    venue.execute(3, 1, 0, SELL, 1000, 6)  # 10 -> 4: the order of 4 can still only close it
    assert venue.books[0].order(1).size == 4 and venue.counts["cancels"] == 0
