"""Venue configuration: fees, latency, price bands, self-trade prevention."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sim.market.latency import LatencyConfig
from sim.core.strict_model import StrictModel


class VenueConfig(StrictModel):
    """Fees are in basis points of notional, charged in integer minor units (rounded up)."""

    maker_fee_bps: float = Field(1.0, ge=-10.0, le=100.0, description="negative = rebate")
    taker_fee_bps: float = Field(5.0, ge=0.0, le=100.0)
    to_venue_latency: LatencyConfig = LatencyConfig(kind="exponential", mean=0.002, min=0.0005)
    to_agent_latency: LatencyConfig = LatencyConfig(kind="exponential", mean=0.002, min=0.0005)
    price_band: float = Field(0.10, gt=0.0, le=10.0,
                              description="limit orders further than this fraction from the reference are rejected")
    market_protection: float = Field(0.05, gt=0.0, le=10.0,
                                     description="market orders never fill further than this fraction from the reference")
    self_trade_prevention: Literal["cancel_newest", "cancel_oldest", "decrement_both"] = "cancel_newest"
