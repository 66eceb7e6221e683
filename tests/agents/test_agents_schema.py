"""The population schema: every group type parses from YAML, Dist values validate and sample, and
errors name the field path."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from agents.config import PopulationConfig
from agents.distributions import Sampler, sample

EVERY_GROUP = """
groups:
  - type: market_maker
    name: amm
    count: 2
    capital: 10000000
    instruments: [PERP]
    interval: 60
    poisson: true
    levels: 10
    level_spacing: 5
    pov: 0.025
    min_size: 1
    adaptive_spread: true
    spread_alpha: 0.75
    price_skew_ticks: 4
    half_spread_bps: {dist: uniform, low: 1, high: 3}
    withdraw_vol: 2.5
    withdraw_drawdown: 0.3
  - type: noise
    count: 1000
    capital: 100000
    instruments: [PERP]
    rate: 0.001
    max_orders: 1
    market_prob: 0.1
    size: {dist: choice, values: [1, 2, 5, 10], weights: [0.5, 0.3, 0.15, 0.05]}
    limit_offset_bps: {dist: normal, mean: 5, std: 10}
  - type: leveraged
    count: 100
    capital: {dist: lognormal, mean: 20000, sigma: 0.8, low: 1000}
    instruments: [PERP]
    leverage: {dist: lognormal, mean: 8, sigma: 0.5, high: 9.5}
    long_prob: 0.8
    entry_delay: {dist: uniform, low: 0, high: 600}
    stop_loss: 0.05
    take_profit: 0.1
    on_margin_call: cut
    reentry_prob: 0.3
  - type: basis_arb
    count: 3
    capital: 1000000
    instruments: [PERP]
    threshold_bps: 3
    size: 20
  - type: value
    count: 102
    capital: 100000
    instruments: [PERP]
    rate: 0.0057
    kappa: 1.67e-6
    obs_noise: 3.16e-4
    horizon: 23400
  - type: momentum
    count: 12
    capital: 100000
    instruments: [PERP]
    interval: 37
    short_window: 20
    long_window: 50
    panic_drop: 0.03
    panic_window: 300
  - type: option_seller
    count: 4
    capital: 500000
    instruments: [CALL, PUT, PERP]
    structure: iron_condor
    strangle_width: 0.1
    wing_width: 0.05
    lots: {dist: uniform, low: 5, high: 20}
  - type: delta_hedger
    count: 2
    capital: 500000
    instruments: [CALL, PUT, PERP]
    position: long_straddle
    band: 1.5
  - type: backstop_provider
    capital: 5000000
    unwind_interval: 30
  - type: auction_bidder
    count: 3
    capital: {dist: uniform, low: 200000, high: 2000000}
    zero_bidder: false
    vol_discount: 0.1
"""


def test_every_group_type_parses_from_yaml():
    cfg = PopulationConfig.model_validate(yaml.safe_load(EVERY_GROUP))
    types = [g.type for g in cfg.groups]
    assert types == ["market_maker", "noise", "leveraged", "basis_arb", "value", "momentum", "option_seller",
                     "delta_hedger", "backstop_provider", "auction_bidder"]
    assert cfg.total_agents == 2 + 1000 + 100 + 3 + 102 + 12 + 4 + 2 + 1 + 3
    cfg.check_symbols({"PERP": 0, "CALL": 1, "PUT": 2})
    with pytest.raises(ValueError, match=r"groups\[6\]\.instruments\[0\]: unknown instrument 'CALL'"):
        cfg.check_symbols({"PERP": 0})
    # a round trip through model_dump is stable
    again = PopulationConfig.model_validate(cfg.model_dump())
    assert again == cfg


@pytest.mark.parametrize(("group", "path", "reason"), [
    ({"type": "noise", "instruments": ["P"], "capital": {"dist": "normal", "mean": 1e5, "std": 5e4}},
     "groups.0.noise.capital", "must be > 0"),
    ({"type": "noise", "instruments": ["P"], "capital": {"dist": "normal", "mean": 1e5, "std": 5e4, "low": 0.0}},
     "groups.0.noise.capital", "must be > 0"),
    ({"type": "noise", "instruments": ["P"], "size": {"dist": "uniform", "low": 5, "high": 1}},
     "groups.0.noise.size.dist.uniform", "must be >= low"),
    ({"type": "noise", "instruments": ["P"], "size": {"dist": "choice", "values": [1, 2], "weights": [1]}},
     "groups.0.noise.size.dist.choice", "weights has 1 entries"),
    ({"type": "noise", "instruments": ["P"], "size": {"dist": "gamma", "k": 2}},
     "groups.0.noise.size.dist", "does not match"),
    ({"type": "noise", "instruments": ["P"], "rate": 0}, "groups.0.noise.rate", "greater than 0"),
    ({"type": "noise", "instruments": ["P"], "count": -1}, "groups.0.noise.count", "greater than or equal to 0"),
    ({"type": "noise"}, "groups.0.noise", "needs at least one instrument"),
    ({"type": "noise", "instruments": ["P"], "colour": "red"}, "groups.0.noise.colour", "Extra inputs"),
    ({"type": "momentum", "instruments": ["P"], "short_window": 50, "long_window": 20},
     "groups.0.momentum", "short_window"),
    ({"type": "leveraged", "instruments": ["P"], "leverage": -2}, "groups.0.leveraged.leverage", "must be > 0"),
    ({"type": "market_maker", "instruments": ["P"], "start": 10, "end": 5}, "groups.0.market_maker", "end"),
    ({"type": "trader", "instruments": ["P"]}, "groups.0", "does not match"),
])
def test_errors_name_the_field_path(group, path, reason):
    with pytest.raises(ValidationError) as err:
        PopulationConfig.model_validate({"groups": [group]})
    e = err.value.errors()[0]
    assert ".".join(str(p) for p in e["loc"]) == path
    assert reason in e["msg"]


def test_group_names_must_be_unique_and_one_vault_at_most():
    with pytest.raises(ValidationError, match=r"groups\[1\]\.name: group name 'noise'"):
        PopulationConfig.model_validate({"groups": [{"type": "noise", "instruments": ["P"]},
                                                    {"type": "noise", "instruments": ["P"]}]})
    PopulationConfig.model_validate({"groups": [{"type": "noise", "instruments": ["P"]},
                                                {"type": "noise", "name": "noise2", "instruments": ["P"]}]})
    with pytest.raises(ValidationError, match="at most one backstop_provider"):
        PopulationConfig.model_validate({"groups": [{"type": "backstop_provider", "count": 2}]})


def test_dist_sampling():
    cfg = PopulationConfig.model_validate(yaml.safe_load(EVERY_GROUP))
    rng = np.random.default_rng(1)
    lev = cfg.groups[2]
    draws = np.array([sample(lev.leverage, rng) for _ in range(4000)])
    assert draws.max() <= 9.5 and draws.min() > 0
    capital = np.array([sample(lev.capital, rng) for _ in range(20000)])
    assert capital.min() >= 1000
    assert np.mean(capital) == pytest.approx(20000, rel=0.05)  # lognormal 'mean' is the distribution's mean
    size = Sampler(cfg.groups[1].size, rng)
    lots = np.array([size.lots() for _ in range(4000)])
    assert set(np.unique(lots)) == {1, 2, 5, 10}
    assert np.mean(lots == 1) == pytest.approx(0.5, abs=0.03)
    assert sample(3.0, rng) == 3.0 and Sampler(2.4, rng).lots() == 2


@pytest.mark.parametrize("block", [1, 7, 64])
def test_sampler_choice_draws_what_generator_choice_draws(block):
    """The sampler inverts the cumulative weights itself, once; per block it must consume the stream
    and pick exactly as ``Generator.choice`` would."""
    dist = PopulationConfig.model_validate(yaml.safe_load(EVERY_GROUP)).groups[1].size
    ours = Sampler(dist, np.random.default_rng(7), block=block)
    theirs = np.random.default_rng(7)
    w = np.asarray(dist.weights)
    expected = np.concatenate([theirs.choice(np.asarray(dist.values, dtype=float), block, p=w / w.sum())
                               for _ in range(200 // block + 1)])
    assert [ours() for _ in range(200)] == expected[:200].tolist()
