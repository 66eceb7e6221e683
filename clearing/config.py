"""Clearing-house configuration: enforcement cadence, liquidation policy, loss absorption."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sim.core.strict_model import StrictModel


class EnforcementConfig(StrictModel):
    """When accounts are re-valued and how the health states are spaced.

    ``cadence='continuous'`` re-values every account on each oracle publication and the two parties
    on every fill; ``'interval'`` re-values everyone every ``interval`` seconds only (as a
    periodic margin run or a block-based protocol would). ``cancel_level`` places the
    cancel-open-orders threshold between MM (0) and IM (1).
    """

    cadence: Literal["continuous", "interval"] = "continuous"
    interval: float = Field(10.0, gt=0.0)
    cancel_level: float = Field(0.5, ge=0.0, le=1.0)
    pre_trade_check: bool = True


class BookLiquidationConfig(StrictModel):
    """Liquidation through the order book with IOC orders.

    ``worst_price`` is the limit of each liquidation order: ``bankruptcy`` (Binance's engine sends
    its IOC at the bankruptcy price), ``between`` (``worst_fraction`` of the way from the mark to
    the bankruptcy price), ``band`` (a market order within the venue's market protection, as
    Hyperliquid and FTX sent them) or ``fillable`` (dYdX v4's fillable price: the mark moved by
    ``bankruptcy_adjustment`` x (1 - equity / MM), clamped to [0, 1], of ``spread_to_mm_ratio`` x
    the position's maintenance requirement).
    """

    worst_price: Literal["bankruptcy", "between", "band", "fillable"] = "between"
    worst_fraction: float = Field(0.5, ge=0.0, le=1.0, description="'between': 0 = mark, 1 = bankruptcy")
    bankruptcy_adjustment: float = Field(1.0, ge=1.0, description="'fillable': dYdX BankruptcyAdjustmentPpm / 1e6")
    spread_to_mm_ratio: float = Field(0.1, gt=0.0, le=1.0,
                                      description="'fillable': dYdX SpreadToMaintenanceMarginRatioPpm / 1e6")
    buffer: float = Field(0.02, ge=0.0, lt=1.0, description="partial steps restore MM x (1 + buffer)")
    slice_fraction: float = Field(0.2, gt=0.0, le=1.0, description="largest share of a position per step")
    slice_notional: float = Field(250_000.0, ge=0.0, description="positions above this notional are sliced")
    cooldown: float = Field(30.0, ge=0.0, description="seconds between steps of one account")
    latency: float = Field(0.05, ge=0.0, description="seconds from breach to the first liquidation order")


class BackstopConfig(StrictModel):
    """Transfer to a backstop liquidity vault at mark minus a discount."""

    enabled: bool = True
    equity_fraction_of_mm: float = Field(2.0 / 3.0, ge=0.0, le=1.0,
                                         description="hand to the backstop when equity < this x MM")
    discount: float = Field(0.01, ge=0.0, lt=0.5)
    capital: float = Field(5_000_000.0, ge=0.0, description="vault capital in quote units")


class AuctionConfig(StrictModel):
    duration: float = Field(60.0, gt=0.0)
    min_bidders: int = Field(0, ge=0)


class LiquidationConfig(StrictModel):
    """``policy``: how an account below maintenance is closed. ``absorb_outside`` makes the run the
    no-feedback counterfactual of itself: every liquidation order that would go to the book (a
    book step, a takeover, the fallback of a vault or an auction) is filled instead, in full, at
    the mark by an absorber outside the market (an account opened after the population), so no
    liquidation ever trades on the book; sizing, timing, fees, the backstop vault, auctions, ADL
    and the loss chain are unchanged."""

    policy: Literal["book", "backstop", "auction"] = "book"
    absorb_outside: bool = Field(False, description="no-feedback twin: liquidation orders are filled at the mark "
                                                    "outside the market instead of on the book")
    fee_rate: float = Field(0.01, ge=0.0, lt=0.2, description="liquidation fee, fraction of notional")
    fee_cap: float = Field(50_000.0, ge=0.0, description="largest fee per liquidation step, quote units")
    book: BookLiquidationConfig = BookLiquidationConfig()
    backstop: BackstopConfig = BackstopConfig()
    auction: AuctionConfig = AuctionConfig()


class WaterfallConfig(StrictModel):
    """The CCP default waterfall and its default fund, sized once at ``sizing_time`` by a stress
    test from the margin regime's own scenarios (clearing/stress.py): each underlying moved alone by
    -/+ ``stress_multiple`` x the move the regime margins for it, at unchanged vol and vol up by
    ``vol_stress``, options revalued. ``members`` clearing members each clear a group of accounts
    (every trader account open at sizing, assigned uniformly from the stream ``ccp/members``); a
    member's uncovered loss is the sum over its accounts of max(stress loss - IM, 0); the fund is
    the ``cover`` largest (Cover-2: the two largest), split pro rata to uncovered loss."""

    cover: Literal[1, 2] = 2
    sizing_time: float = Field(300.0, ge=0.0, description="seconds from the start: when the fund is sized and paid in")
    stress_multiple: float = Field(2.0, gt=0.0, description="extreme move = this x the regime's margined move")
    vol_stress: float = Field(0.5, ge=0.0, description="vol-up scenarios: vol x (1 + this)")
    ccp_capital: float = Field(2_000_000.0, ge=0.0)
    skin_in_game: float = Field(0.25, ge=0.0, le=1.0)
    assessment_cap: float = Field(1.0, ge=0.0)
    members: int = Field(20, ge=1, description="clearing members; each clears a group of accounts")


class LossAbsorptionConfig(StrictModel):
    """Layers after a bankruptcy. ``order`` lists the cash layers in the order they are used;
    ADL (if enabled) acts on a bankrupt's open position when the insurance fund cannot cover it.

    Socialised loss charges at most ``socialised_cap_per_event`` per liquidation and
    ``socialised_cap_per_episode`` over the whole episode (quote units; None: no cap); what a cap
    leaves passes to the next layer in ``order`` and, after the last, is bad debt. Over open
    interest it is spread over ``socialised_side``: by default (None) ``profitable``, the holders
    whose unrealised PnL at the mark is positive (as perp venues socialise), or ``all`` holders, or
    one side."""

    insurance_fund: float = Field(1_000_000.0, ge=0.0, description="initial balance, quote units")
    insurance_cap_per_market: float | None = Field(None, ge=0.0)
    adl: Literal["off", "ranked", "pro_rata"] = "ranked"
    socialised: Literal["off", "open_interest", "depositors"] = "open_interest"
    socialised_side: Literal["profitable", "all", "long", "short"] | None = Field(
        None, description="who pays socialised loss over open interest (None: 'profitable')")
    socialised_cap_per_event: float | None = Field(None, ge=0.0, allow_inf_nan=False,
                                                   description="largest socialised charge per liquidation, quote units")
    socialised_cap_per_episode: float | None = Field(None, ge=0.0, allow_inf_nan=False,
                                                     description="largest socialised total per episode, quote units")
    waterfall: WaterfallConfig | None = None
    order: list[Literal["insurance_fund", "waterfall", "socialised"]] = ["insurance_fund", "waterfall", "socialised"]

    @model_validator(mode="after")
    def _unique(self) -> "LossAbsorptionConfig":
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"order lists a layer twice: {self.order}")
        return self

    @model_validator(mode="after")
    def _socialised_settings(self) -> "LossAbsorptionConfig":
        # a setting that cannot act is a mistake in the file, not something to ignore silently
        if self.socialised_side is not None and self.socialised != "open_interest":
            raise ValueError(f"socialised_side applies only to socialised: open_interest, not {self.socialised!r}")
        for name in ("socialised_cap_per_event", "socialised_cap_per_episode"):
            if getattr(self, name) is not None and (self.socialised == "off" or "socialised" not in self.order):
                raise ValueError(f"{name} is set but socialised loss is not used (socialised: {self.socialised!r}, "
                                 f"order: {self.order})")
        return self


class FundingConfig(StrictModel):
    enabled: bool = True
    premium_clamp: float = Field(0.0005, ge=0.0, description="premium inside +/- this pays no funding")


class StressedHistory(StrictModel):
    """A stressed period inside the synthetic pre-episode history, so the VaR regime's stressed
    weighting (EMIR Art. 28(1)(b)) has a stressed period to find: for ``days`` starting
    ``start_days_before`` the episode, every underlying's vol is ``vol_multiple`` times its
    starting vol and its price falls by ``drawdown`` (log-linearly) before recovering at the
    ordinary vol."""

    start_days_before: float = Field(gt=0.0)
    days: float = Field(gt=0.0)
    vol_multiple: float = Field(3.0, ge=1.0)
    drawdown: float = Field(0.3, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ends_before_the_episode(self) -> "StressedHistory":
        if self.days > self.start_days_before:
            raise ValueError(f"days ({self.days:g}) runs past the episode start "
                             f"(start_days_before {self.start_days_before:g})")
        return self


class HistoryConfig(StrictModel):
    """Price history for history-based regimes (VaR): a synthetic pre-episode history of
    ``pre_episode_rows`` rows, one per ``row_interval`` seconds, drawn as GBM at the path's starting
    vol and ending at the starting price; during the episode the published index is appended every
    ``row_interval`` seconds (86,400: a daily margin run; 3,600: hourly)."""

    pre_episode_rows: int = Field(1_000, ge=30)
    row_interval: float = Field(86_400.0, gt=0.0)
    stressed: StressedHistory | None = None

    @model_validator(mode="after")
    def _stress_inside(self) -> "HistoryConfig":
        if self.stressed is not None:
            span_days = (self.pre_episode_rows - 1) * self.row_interval / 86_400.0
            if self.stressed.start_days_before > span_days:
                raise ValueError(f"stressed.start_days_before ({self.stressed.start_days_before:g}) is before the "
                                 f"history's first row ({span_days:g} days before the episode)")
        return self


class SettlementConfig(StrictModel):
    """Variation margin. Equity always marks to market for margin purposes (the ledger's cash is
    exchanged at trade prices and positions are valued at mark), but gains are paid out -- become
    withdrawable -- either ``continuous``-ly or only at each ``interval`` settlement run, as a CCP's
    daily (or intraday) variation-margin cycle does. Interval settlement is what stops an account
    from withdrawing a paper profit the moment a manipulated mark creates it."""

    variation_margin: Literal["continuous", "interval"] = "continuous"
    interval: float = Field(86_400.0, gt=0.0)


class AttributionConfig(StrictModel):
    """Breach attribution (clearing.attribution, docs/METHODOLOGY.md "Breach attribution")."""

    materiality: float = Field(0.01, ge=0.0, lt=1.0, description=(
        "an endogenous loss smaller than this fraction of the maintenance requirement at the breach "
        "never makes a breach endogenous: an account that was already within a hair of maintenance "
        "would have breached on any move"))


class ClearingConfig(StrictModel):
    attribution: AttributionConfig = AttributionConfig()
    settlement: SettlementConfig = SettlementConfig()
    history: HistoryConfig = HistoryConfig()
    enforcement: EnforcementConfig = EnforcementConfig()
    liquidation: LiquidationConfig = LiquidationConfig()
    loss_absorption: LossAbsorptionConfig = LossAbsorptionConfig()
    funding: FundingConfig = FundingConfig()
