"""Exogenous price paths for stress episodes: stochastic models, CSV replay, scripted shocks.

One entry point, :func:`generate_paths`, turns a validated :class:`~sim.market.paths_config.PathsConfig`
into a :class:`PricePaths` on a regular time grid ``t_k = k * dt`` (simulated seconds). All
randomness comes from the ``numpy.random.Generator`` passed in -- never the global RNG -- and each
model draws from its own child generator (``rng.spawn``), so appending a model leaves the paths of
the earlier ones unchanged. Models work in log price; increments are vectorised over steps and
underlyings, except the recursions (GARCH variance, regime chain, OU), which step through time
with numpy operations over all underlyings at once.

Annualised parameters are converted with ``dt_years = dt / SECONDS_PER_YEAR``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from sim.core.instruments import SECONDS_PER_YEAR
from sim.market.increments import cum_log
from sim.market.price_csv import PriceCsv, read_price_csv
from sim.market.shocks import apply_shocks
from sim.market.paths_config import (
    GarchPathConfig,
    GBMPathConfig,
    MertonPathConfig,
    OUMegashockPathConfig,
    OUUnderlyingSpec,
    PathModelConfig,
    PathsConfig,
    RegimeSwitchPathConfig,
    ReplayPathConfig,
)

__all__ = [
    "PricePaths",
    "generate_paths",
    "time_grid",
    "correlation_factor",
    "gbm_log_paths",
    "merton_log_paths",
    "garch_log_paths",
    "regime_log_paths",
    "ou_megashock_log_paths",
    "replay_log_paths",
]


@dataclass(slots=True)
class PricePaths:
    """Prices of ``names`` at ``times``.

    ``times`` (T,) seconds, increasing; ``prices`` (T, U) float64; ``vols`` (T, U) the model's
    annualised instantaneous vol in force from each time (GARCH / regime conditional vol, the
    diffusion vol for GBM / Merton / OU, an EWMA realised vol for replays; scaled by vol spikes).
    """

    times: np.ndarray
    names: tuple[str, ...]
    prices: np.ndarray
    vols: np.ndarray

    def index_at(self, t: ArrayLike) -> np.ndarray:
        """Index of the row in force at time(s) ``t`` (the last row with times <= t; row 0 before)."""
        idx = np.searchsorted(self.times, t, side="right") - 1
        return np.maximum(idx, 0)

    def at(self, t: ArrayLike) -> np.ndarray:
        """Prices in force at time ``t``: (U,) for a scalar t, (n, U) for an array of n times."""
        return self.prices[self.index_at(t)]

    def column(self, name: str) -> np.ndarray:
        return self.prices[:, self.names.index(name)]

    def log_returns(self) -> np.ndarray:
        """(T-1, U) log returns between consecutive grid times."""
        return np.diff(np.log(self.prices), axis=0)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def time_grid(duration: float, dt: float) -> np.ndarray:
    """0, dt, 2dt, ... up to the first multiple of dt at or after ``duration``."""
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be positive and finite, got {dt!r}")
    if not (duration >= 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be non-negative and finite, got {duration!r}")
    n = int(math.ceil(duration / dt - 1e-9))
    return np.arange(n + 1, dtype=np.float64) * dt


def correlation_factor(corr: np.ndarray) -> np.ndarray:
    """A matrix L with L @ L.T == corr: Cholesky, or an eigen factor when corr is singular PSD."""
    corr = np.asarray(corr, dtype=np.float64)
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(corr)
        return v * np.sqrt(np.clip(w, 0.0, None))


def _correlated_normals(rng: np.random.Generator, n: int, corr: np.ndarray) -> np.ndarray:
    """(n, U) standard normals with correlation ``corr`` across columns."""
    z = rng.standard_normal((n, corr.shape[0]))
    if np.array_equal(corr, np.eye(corr.shape[0])):
        return z
    return z @ correlation_factor(corr).T


def _dt_years(times: np.ndarray) -> float:
    """The grid step in years (0 for a single-point grid)."""
    return float(times[1] - times[0]) / SECONDS_PER_YEAR if len(times) > 1 else 0.0


def _ar1(y0: np.ndarray, a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """y_0 = y0, y_{k+1} = a * y_k + e_k, vectorised over columns; returns (n+1, U).

    Solved in closed form over blocks short enough that a^-m stays near 1 (no loss of precision):
    inside a block y_k = a^k (y_start + sum_{j<k} a^-(j+1) e_j).
    """
    n, u = e.shape
    out = np.empty((n + 1, u))
    out[0] = y0
    a = np.broadcast_to(np.asarray(a, dtype=np.float64), (u,))
    if n == 0:
        return out
    with np.errstate(divide="ignore"):
        log_a = np.log(a)  # a in [0, 1]
    max_rate = float(np.max(-log_a))
    block = n if max_rate == 0.0 else int(max(1, min(n, math.floor(1.0 / max_rate))))
    block = min(block, 4096)
    y = np.asarray(y0, dtype=np.float64).copy()
    if block == 1:  # fast mean reversion: plain recurrence
        for k in range(n):
            y = a * y + e[k]
            out[k + 1] = y
        return out
    k = 0
    while k < n:
        m = min(block, n - k)
        j = np.arange(1, m + 1, dtype=np.float64)[:, None]
        pw = np.exp(j * log_a)  # a^1..a^m
        acc = np.cumsum(e[k : k + m] / pw, axis=0)
        out[k + 1 : k + m + 1] = pw * (y + acc)
        y = out[k + m].copy()
        k += m
    return out


# ---------------------------------------------------------------------------------------------
# Models (each returns log prices (T, U) and vols (T, U) on ``times``)
# ---------------------------------------------------------------------------------------------


def _diffusion_params(cfg: GBMPathConfig | MertonPathConfig | GarchPathConfig | RegimeSwitchPathConfig
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s0 = np.array([u.s0 for u in cfg.underlyings], dtype=np.float64)
    mu = np.array([u.drift for u in cfg.underlyings], dtype=np.float64)
    sig = np.array([u.vol for u in cfg.underlyings], dtype=np.float64)
    return s0, mu, sig


def gbm_log_paths(cfg: GBMPathConfig, rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln S_{k+1} = ln S_k + (mu - vol^2/2) dt + vol sqrt(dt) z_k, z_k ~ N(0, corr) (exact)."""
    dt = _dt_years(times)
    s0, mu, sig = _diffusion_params(cfg)
    z = _correlated_normals(rng, len(times) - 1, cfg.correlation_matrix())
    inc = (mu - 0.5 * sig**2) * dt + sig * math.sqrt(dt) * z
    return cum_log(np.log(s0), inc), np.broadcast_to(sig, (len(times), len(sig))).copy()


def merton_log_paths(cfg: MertonPathConfig, rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GBM plus compound-Poisson log jumps per underlying.

    Per step: N ~ Poisson(lambda dt), jump sum = mean * N + std * sqrt(N) * z' (exact for normal
    jump sizes). Compensated: log drift -= lambda * (exp(mean + std^2/2) - 1) so E[S_t] = S_0 e^{mu t}.
    """
    dt = _dt_years(times)
    s0, mu, sig = _diffusion_params(cfg)
    n, u = len(times) - 1, len(s0)
    names = cfg.names()
    lam = np.zeros(u)
    jm = np.zeros(u)
    js = np.zeros(u)
    for name, j in cfg.jumps.items():
        i = names.index(name)
        lam[i], jm[i], js[i] = j.intensity, j.mean, j.std
    z = _correlated_normals(rng, n, cfg.correlation_matrix())
    counts = rng.poisson(lam * dt, size=(n, u)).astype(np.float64)
    jumps = jm * counts + js * np.sqrt(counts) * rng.standard_normal((n, u))
    drift = mu - 0.5 * sig**2
    if cfg.compensated:
        drift = drift - lam * np.expm1(jm + 0.5 * js**2)
    inc = drift * dt + sig * math.sqrt(dt) * z + jumps
    return cum_log(np.log(s0), inc), np.broadcast_to(sig, (n + 1, u)).copy()


def garch_log_paths(cfg: GarchPathConfig, rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1): eps_k = sqrt(h_k) z_k, ln S_{k+1} = ln S_k + mu dt - h_k/2 + eps_k,
    h_{k+1} = omega dt + alpha eps_k^2 + beta h_k (h is the per-step variance)."""
    dt = _dt_years(times)
    s0, mu, sig = _diffusion_params(cfg)
    n, u = len(times) - 1, len(s0)
    a, b = cfg.alpha, cfg.beta
    if cfg.omega is None:
        omega = (1.0 - a - b) * sig**2 * dt
    else:
        omega = np.full(u, cfg.omega * dt)
    h = (cfg.initial_vol_ratio**2) * (omega / (1.0 - a - b))
    z = _correlated_normals(rng, n, cfg.correlation_matrix())
    inc = np.empty((n, u))
    hs = np.empty((n + 1, u))
    for k in range(n):
        hs[k] = h
        eps = np.sqrt(h) * z[k]
        inc[k] = mu * dt - 0.5 * h + eps
        h = omega + a * eps * eps + b * h
    hs[n] = h
    vols = np.sqrt(hs / dt) if dt > 0 else np.broadcast_to(sig, (n + 1, u)).copy()
    return cum_log(np.log(s0), inc), vols


def regime_states(rng: np.random.Generator, n: int, rates: Sequence[float], initial: int, dt: float) -> np.ndarray:
    """(n+1,) int8 states of a 2-state chain stepped once per dt (years); switch prob 1-e^{-q dt}."""
    p = (-math.expm1(-rates[0] * dt), -math.expm1(-rates[1] * dt))
    u = rng.random(n)
    states = np.empty(n + 1, dtype=np.int8)
    s = int(initial)
    states[0] = s
    # Run-length stepping: jump straight to the next step whose uniform triggers a switch.
    k = 0
    while k < n:
        hits = np.flatnonzero(u[k:] < p[s])
        nxt = n if hits.size == 0 else k + int(hits[0])
        states[k + 1 : nxt + 1] = s
        if nxt < n:
            s = 1 - s
            states[nxt + 1] = s
        k = nxt + 1
    return states


def regime_log_paths(cfg: RegimeSwitchPathConfig, rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correlated GBM with vol_i * m[state_k] in step k; the state is market-wide."""
    dt = _dt_years(times)
    s0, mu, sig = _diffusion_params(cfg)
    n = len(times) - 1
    states = regime_states(rng, n, cfg.switch_rates, cfg.initial_state, dt)
    mult = np.asarray(cfg.vol_multipliers, dtype=np.float64)[states]  # (n+1,)
    vols = sig[None, :] * mult[:, None]
    z = _correlated_normals(rng, n, cfg.correlation_matrix())
    v = vols[:-1]
    inc = (mu - 0.5 * v**2) * dt + v * math.sqrt(dt) * z
    return cum_log(np.log(s0), inc), vols


def _ou_start(underlyings: Sequence[OUUnderlyingSpec]) -> list[float]:
    """Starting level of each OU underlying: ``s0``, or its mean when ``s0`` is None."""
    return [u.mean if u.s0 is None else u.s0 for u in underlyings]


def ou_megashock_log_paths(cfg: OUMegashockPathConfig, rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact OU step in log price plus megashocks at the end of the step:

    x_{k+1} = m + (x_k - m) e^{-kappa dt} + vol sqrt((1 - e^{-2 kappa dt}) / (2 kappa)) z_k + J_k,
    J_k = megashock_mean * (N_up - N_down) + megashock_std * sqrt(N) z'_k, N ~ Poisson(lambda dt),
    N_up ~ Binomial(N, 1/2) for random signs (all up / all down otherwise).
    """
    dt = _dt_years(times)
    und = cfg.underlyings
    n, u = len(times) - 1, len(und)
    m = np.log([x.mean for x in und])
    x0 = np.log(_ou_start(und))
    kappa = np.array([x.kappa for x in und])
    sig = np.array([x.vol for x in und])
    lam = np.array([x.megashock_intensity for x in und])
    jm = np.array([x.megashock_mean for x in und])
    js = np.array([x.megashock_std for x in und])
    a = np.exp(-kappa * dt)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.where(kappa * dt > 1e-12, sig * np.sqrt(-np.expm1(-2.0 * kappa * dt) / (2.0 * kappa)), sig * math.sqrt(dt))
    z = _correlated_normals(rng, n, cfg.correlation_matrix())
    counts = rng.poisson(lam * dt, size=(n, u))
    up_random = rng.binomial(counts, 0.5)
    sign_mode = np.array([x.megashock_sign for x in und])
    n_up = np.where(sign_mode == "up", counts, np.where(sign_mode == "down", 0, up_random))
    n_down = counts - n_up
    jumps = jm * (n_up - n_down) + js * np.sqrt(counts) * rng.standard_normal((n, u))
    e = sd * z + jumps
    y = _ar1(x0 - m, a, e)
    return y + m, np.broadcast_to(sig, (n + 1, u)).copy()


# ---------------------------------------------------------------------------------------------
# CSV replay
# ---------------------------------------------------------------------------------------------

def _ewma_vol(times: np.ndarray, prices: np.ndarray, halflife: float) -> np.ndarray:
    """Annualised EWMA vol of log returns on an irregular grid (decay e^{-ln2 dt / halflife})."""
    n, u = prices.shape
    out = np.zeros((n, u))
    if n < 2:
        return out
    r = np.diff(np.log(prices), axis=0)
    gap = np.diff(times)
    rate = r * r / (gap[:, None] / SECONDS_PER_YEAR)  # variance per year of each return
    lam = np.exp(-math.log(2.0) * gap / halflife)
    v = rate[0].copy()
    out[0] = v
    for k in range(n - 1):
        v = lam[k] * v + (1.0 - lam[k]) * rate[k]
        out[k + 1] = v
    return np.sqrt(out)


def replay_log_paths(cfg: ReplayPathConfig, times: np.ndarray, return_prices: bool = False,
                     data: PriceCsv | None = None) -> tuple[np.ndarray, ...]:
    """Sample the CSV onto ``times``: the row in force (last timestamp <= t; the first row before).

    Returns (log prices, vols), plus the sampled prices themselves with ``return_prices``.
    ``data`` is the file's :func:`read_price_csv` result if already read (not modified)."""
    t_csv, names, px = read_price_csv(cfg.path, cfg.time_unit) if data is None else data
    cols = [names.index(c) for c in (cfg.columns or names)]
    px = px[:, cols]
    if cfg.rebase:
        t_csv = t_csv - t_csv[0]
    vols = _ewma_vol(t_csv, px, cfg.vol_halflife)
    idx = np.maximum(np.searchsorted(t_csv, times, side="right") - 1, 0)
    if return_prices:
        return np.log(px[idx]), vols[idx], px[idx]
    return np.log(px[idx]), vols[idx]


def replay_span(cfg: ReplayPathConfig, data: PriceCsv | None = None) -> float:
    t_csv, _, _ = read_price_csv(cfg.path, cfg.time_unit) if data is None else data
    return float(t_csv[-1] - (t_csv[0] if cfg.rebase else 0.0))


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

# kind -> (log prices, vols) on the time grid; each takes its own kind's config
_GENERATORS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "gbm": gbm_log_paths,
    "merton": merton_log_paths,
    "garch": garch_log_paths,
    "regime": regime_log_paths,
    "ou_megashock": ou_megashock_log_paths,
}


def generate_paths(
    config: PathsConfig,
    rng: np.random.Generator,
    duration: float | None = None,
    dt: float | None = None,
) -> PricePaths:
    """Generate every model's paths on the grid 0..duration step dt (default ``config.dt``),
    then apply the scripted shocks. ``duration=None`` is allowed when every model is a replay
    (the longest file's span is used). Deterministic given the generator's state.
    """

    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    dt = config.dt if dt is None else float(dt)
    # replay files already read, so each is parsed once
    csvs: list[PriceCsv | None] = [None] * len(config.models)
    if duration is None:
        replays = [m for m in config.models if isinstance(m, ReplayPathConfig)]
        if len(replays) < len(config.models):
            raise ValueError("duration is required unless every path model is a replay")
        read = [read_price_csv(m.path, m.time_unit) for m in replays]
        duration = max(replay_span(m, d) for m, d in zip(replays, read))
        csvs = list(read)
    times = time_grid(float(duration), dt)
    children = rng.spawn(len(config.models))
    logs, vols, names, raw = [], [], [], []
    for model, child, data in zip(config.models, children, csvs):
        if model.kind == "replay":
            lp, vv, px = replay_log_paths(model, times, return_prices=True, data=data)
        else:
            lp, vv = _GENERATORS[model.kind](model, child, times)
            px = None
        logs.append(lp)
        vols.append(vv)
        raw.append(px)
        names.extend(model.names())
    base_log = np.concatenate(logs, axis=1)
    vol = np.concatenate(vols, axis=1)
    names_t = tuple(names)
    log_prices = base_log
    if config.shocks:
        log_prices, vol = apply_shocks(base_log, vol, times, names_t, config.shocks)
    # Prices relative to the starting level so row 0 is exactly s0 (exp(log s0) is not always s0).
    start = np.concatenate([_start_levels(m, px) for m, px in zip(config.models, raw)])
    prices = start * np.exp(log_prices - np.log(start))
    # Replayed columns no shock touched are the file's numbers, bit for bit.
    col = 0
    for lp, px in zip(logs, raw):
        width = lp.shape[1]
        if px is not None:
            for j in range(width):
                if np.array_equal(log_prices[:, col + j], base_log[:, col + j]):
                    prices[:, col + j] = px[:, j]
        col += width
    return PricePaths(times=times, names=names_t, prices=prices, vols=vol)


def _start_levels(model: PathModelConfig, raw_prices: np.ndarray | None) -> np.ndarray:
    if raw_prices is not None:
        return raw_prices[0]
    assert not isinstance(model, ReplayPathConfig)  # a replay starts at its file's first row (raw_prices)
    if isinstance(model, OUMegashockPathConfig):
        return np.array(_ou_start(model.underlyings), dtype=np.float64)
    return np.array([u.s0 for u in model.underlyings], dtype=np.float64)
