"""Building a population from its config: accounts, capital, random streams, agents.

For each group, in config order, and each k in range(count): open a ledger account, deposit the
agent's capital (drawn from the agent's own stream ``agent/{group name}/{k}``, then converted to
integer minor units of the quote asset), and build the agent with that stream. Nothing is
shared between agents' streams, so adding an agent or a group never changes what another draws.

Noise, leveraged and value groups are built as one agent over an array of accounts
(``agents.noise.NoiseCrowd``, ``agents.leveraged.LeveragedCrowd``, ``agents.value.ValueCrowd``):
their members' capitals, in member order, and all their later draws come from the group's one
stream ``group/{group name}``, and their messages to and from the venue share one pair of latency
links per group (``sim.market.venue.Venue.share_links``) -- a million members cost no million
streams, objects or events. Adding a group still changes no other group's draws; adding a member
to such a group changes its group's.

Shared, population-wide helpers are built once: the trade tape (one venue listener) and, per
delta-hedger group, one monitor (one oracle listener that checks the whole group with array
operations; a leveraged group is its own). The backstop provider's account, if any, is the clearing house's vault.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agents.arbitrage import BasisArbitrageur
from agents.backstop import AuctionBidder, BackstopProvider
from agents.base import Agent, AgentContext, Crowd
from agents.leveraged import LeveragedCrowd
from agents.manipulator import Manipulator
from agents.market_maker import MarketMaker
from agents.momentum import MomentumTrader
from agents.noise import NoiseCrowd
from agents.options import DeltaHedger, HedgeMonitor, OptionSeller
from agents.pair import PairTrader
from agents.tape import MarketTape
from agents.value import ValueCrowd
from clearing.ledger import QUOTE, Ledger
from agents.config import CollateralSplit, GroupConfig, PopulationConfig
from agents.distributions import Sampler, sample


class Population(list):
    """The agents (a list, in build order) plus what the episode needs to know about them."""

    def __init__(self) -> None:
        super().__init__()
        self.backstop_account: int | None = None
        self.bidders: list[AuctionBidder] = []
        self.groups: dict[str, list[Agent]] = {}
        self.tape: MarketTape | None = None
        # one row per account opened here, in account order: (account, group name, agent type,
        # capital in quote units as drawn) -- the recorder's ``accounts_meta`` table
        self.meta: list[tuple[int, str, str, float]] = []

    @property
    def agents(self) -> list[Agent]:
        return self

    def accounts(self, group: str) -> list[int]:
        out: list[int] = []
        for a in self.groups.get(group, []):
            out.extend(a.accounts.tolist() if isinstance(a, Crowd) else [a.account])
        return out


# group type (the config's discriminator) -> agent class, in two tables. The group types built as
# one agent per member, each with its own account; the constructors take (context, name, account,
# stream, group config, instrument ids, then what the group shares)
MEMBER_TYPES: dict[str, Callable[..., Agent]] = {
    "market_maker": MarketMaker, "basis_arb": BasisArbitrageur, "momentum": MomentumTrader,
    "option_seller": OptionSeller, "delta_hedger": DeltaHedger, "backstop_provider": BackstopProvider,
    "auction_bidder": AuctionBidder, "pair_trader": PairTrader, "manipulator": Manipulator,
}
# the group types built as one agent over an array of member accounts (``_build_crowd``); the
# constructors take (context, name, stream, group config, instrument ids, accounts)
CROWD_TYPES: dict[str, Callable[..., Crowd]] = {"noise": NoiseCrowd, "leveraged": LeveragedCrowd, "value": ValueCrowd}


def _deposit(ctx: AgentContext, ledger: Ledger, account: int, capital: float, split: CollateralSplit | None) -> None:
    """Deposit ``capital`` (quote units): all in the quote currency, or partly in another asset
    bought at its starting oracle price."""
    quote = ledger.assets[QUOTE]
    in_quote = capital
    if split is not None:
        names = [a.name for a in ledger.assets]
        if split.asset not in names:
            raise ValueError(f"collateral asset {split.asset!r} is not in the market (assets: {names})")
        k = names.index(split.asset)
        asset = ledger.assets[k]
        if asset.price_source is None:
            price = 1.0
        else:
            price = float(ctx.oracle.index[ctx.oracle.underlyings.index(asset.price_source)])
        value = capital * split.fraction
        ledger.deposit(account, k, int(round(value / price * 10**asset.decimals)))
        in_quote = capital - value
    if in_quote > 0:
        ledger.deposit(account, QUOTE, int(round(in_quote * 10**quote.decimals)))


def build_population(ctx: AgentContext, ledger: Ledger, config: PopulationConfig, symbols: dict[str, int]
                     ) -> Population:
    """Open accounts in ``ledger`` and deposit their capital, build every agent (not started: the
    episode calls ``start``). Agents themselves only read the ledger (``ctx.ledger``)."""
    config.check_symbols(symbols)
    pop = Population()
    tape = MarketTape(len(ctx.table)).attach(ctx.venue)
    pop.tape = tape

    for group in config.groups:
        gname = group.group_name
        ids = [symbols[s] for s in group.instruments]
        if group.type in CROWD_TYPES:
            crowd = _build_crowd(ctx, ledger, pop, group, ids)
            pop.append(crowd)
            pop.groups[gname] = [crowd]
            continue
        members: list[Agent] = []
        cls = MEMBER_TYPES[group.type]
        # the extra argument some types share across a group: the trade tape, or a group monitor
        if group.type == "market_maker":
            shared: tuple = (tape,)
        elif group.type == "delta_hedger":
            shared = (HedgeMonitor(ctx),)
        else:
            shared = ()
        for k in range(group.count):
            rng = ctx.world.stream(f"agent/{gname}/{k}")
            capital = sample(group.capital, rng)
            account = ledger.open_account()
            _deposit(ctx, ledger, account, capital, group.collateral)
            agent = cls(ctx, f"{gname}/{k}", account, rng, group, ids, *shared)
            pop.meta.append((account, gname, group.type, float(capital)))
            members.append(agent)
            pop.append(agent)
            if isinstance(agent, BackstopProvider):
                pop.backstop_account = account
            elif isinstance(agent, AuctionBidder):
                pop.bidders.append(agent)
        pop.groups[gname] = members
    # the caller (``sim.experiment.episode.build``) grows the house's arrays and the venue's resting arrays to
    # the accounts opened here once it has opened its own
    return pop


def _build_crowd(ctx: AgentContext, ledger: Ledger, pop: Population, group: GroupConfig, ids: list[int]) -> Crowd:
    """A noise, leveraged or value group's accounts, opened and funded in member order, and its one agent."""
    gname = group.group_name
    rng = ctx.world.stream(f"group/{gname}")
    capitals = Sampler(group.capital, rng, max(1, group.count))  # one vector draw for the whole group
    accounts = np.empty(group.count, dtype=np.int64)
    for k in range(group.count):  # a ledger call per account: opening accounts is the ledger's business
        capital = capitals()
        account = accounts[k] = ledger.open_account()
        _deposit(ctx, ledger, account, capital, group.collateral)
        pop.meta.append((account, gname, group.type, float(capital)))
    return CROWD_TYPES[group.type](ctx, gname, rng, group, ids, accounts)
