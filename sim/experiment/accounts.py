"""The accounts directory: who each ledger row is (system row, agent group and type) and what it
started with, so that every other table's ``account`` column can be joined to a name.

Built once at the end of a run from the episode and the balances snapshotted when the episode was
built (before any trading), in internal units like every in-memory table; ``sim.experiment.tables`` converts
it (it is written as ``accounts.parquet``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clearing.ledger import FIRST_TRADER, QUOTE, SystemAccount

if TYPE_CHECKING:
    from sim.experiment.assembled import Episode

__all__ = ["snapshot_initial", "account_directory"]


def snapshot_initial(episode: "Episode") -> None:
    """Remember every row's balances and the assets' prices before the first event (called by
    ``sim.experiment.episode.build`` once every account is open and funded)."""
    ledger = episode.ledger
    episode.initial_cash = ledger.cash[: ledger.n_accounts].copy()
    prices = np.ones(len(ledger.assets))
    names = list(episode.oracle.underlyings)
    for k, asset in enumerate(ledger.assets):
        if asset.price_source is not None:
            prices[k] = float(episode.oracle.index[names.index(asset.price_source)])
    episode.initial_asset_prices = prices


def account_directory(episode: "Episode") -> dict[str, np.ndarray]:
    """One row per ledger row: system rows, then every trader account.

    ``initial_quote`` is the starting quote balance (minor units), ``collateral_asset`` the one
    non-quote asset deposited (None when there is none), ``initial_collateral`` its amount in that
    asset's minor units, ``initial_capital`` the whole deposit valued in quote minor units at the
    starting prices without haircuts.
    """
    ledger = episode.ledger
    cash, start_prices = episode.initial_cash, episode.initial_asset_prices
    assert cash is not None and start_prices is not None  # snapshot_initial set both when the episode was built
    n = cash.shape[0]
    group = np.full(n, None, dtype=object)
    kind = np.full(n, None, dtype=object)
    name = np.full(n, None, dtype=object)
    for row in SystemAccount:
        group[int(row)] = "system"
        kind[int(row)] = "system"
        name[int(row)] = row.name.lower()
    types = {g.group_name: g.type for g in episode.config.population.groups}
    for agent in episode.agents:
        members = getattr(agent, "accounts", None)
        if isinstance(members, np.ndarray):  # a group acting as one agent (NoiseCrowd, LeveragedCrowd)
            rows = members[members < n]
            group[rows] = agent.name
            kind[rows] = types.get(agent.name, agent.kind)
            name[rows] = [f"{agent.name}/{k}" for k in range(rows.size)]
            continue
        if agent.account < n:
            gname = agent.name.rsplit("/", 1)[0]
            group[agent.account] = gname
            kind[agent.account] = types.get(gname, agent.kind)
            name[agent.account] = agent.name
    vault = episode.backstop_account
    if vault is not None and vault < n and name[vault] is None:
        group[vault], kind[vault], name[vault] = "backstop_vault", "backstop_vault", "backstop_vault"
    for a in range(FIRST_TRADER, n):  # any row opened outside the population (none today)
        if name[a] is None:
            group[a], kind[a], name[a] = "other", "other", f"account/{a}"
    assets = [a.name for a in ledger.assets]
    others = cash[:, 1:] if cash.shape[1] > 1 else np.zeros((n, 0), dtype=np.int64)
    held = others != 0
    first = np.argmax(held, axis=1) if others.shape[1] else np.zeros(n, dtype=np.int64)
    has = held.any(axis=1) if others.shape[1] else np.zeros(n, dtype=bool)
    collateral_asset = np.array([assets[1 + k] if h else None for k, h in zip(first.tolist(), has.tolist())],
                                dtype=object)
    initial_collateral = np.where(has, others[np.arange(n), first] if others.shape[1] else 0, 0).astype(np.int64)
    capital = ledger.value_cash(cash, start_prices, haircuts=False)
    return {
        "account": np.arange(n, dtype=np.int64),
        "name": name,
        "group": group,
        "type": kind,
        "initial_quote": cash[:, QUOTE].astype(np.int64),
        "collateral_asset": collateral_asset,
        "initial_collateral": initial_collateral,
        "initial_capital": np.asarray(capital, dtype=np.float64),
    }
