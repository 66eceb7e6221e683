import math

import numpy as np
import pytest
from pydantic import ValidationError

from sim.core.instruments import SECONDS_PER_YEAR
from sim.market.paths import _ar1, correlation_factor, generate_paths, time_grid
from sim.market.price_csv import read_price_csv
from sim.market.paths_config import PathsConfig, check_correlation

HOUR = 3600.0
DAY = 86400.0


def gbm(names=("BTC", "ETH"), vols=(0.5, 0.8), drifts=(0.0, 0.0), s0=(100.0, 50.0), corr=None):
    m = {
        "kind": "gbm",
        "underlyings": [{"name": n, "s0": s, "drift": d, "vol": v} for n, s, d, v in zip(names, s0, drifts, vols)],
    }
    if corr is not None:
        m["correlation"] = corr
    return m


def cfg(*models, shocks=(), dt=HOUR, root=None):
    """``root``: the config's folder, which replay files are resolved against and confined to."""
    context = {"root": None if root is None else str(root)}
    return PathsConfig.model_validate({"models": list(models), "shocks": list(shocks), "dt": dt}, context=context)


def rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- grid and container


def test_time_grid_and_at():
    t = time_grid(10.0, 3.0)
    np.testing.assert_array_equal(t, [0, 3, 6, 9, 12])
    p = generate_paths(cfg(gbm(), dt=60.0), rng(), duration=600.0)
    assert p.times.shape == (11,) and p.prices.shape == (11, 2) and p.vols.shape == (11, 2)
    assert p.names == ("BTC", "ETH")
    np.testing.assert_array_equal(p.prices[0], [100.0, 50.0])
    np.testing.assert_array_equal(p.at(119.9), p.prices[1])
    np.testing.assert_array_equal(p.at(120.0), p.prices[2])
    np.testing.assert_array_equal(p.at(-5.0), p.prices[0])
    np.testing.assert_array_equal(p.at(1e9), p.prices[-1])
    np.testing.assert_array_equal(p.at(np.array([0.0, 61.0])), p.prices[[0, 1]])
    np.testing.assert_array_equal(p.column("ETH"), p.prices[:, 1])
    assert p.prices.dtype == np.float64


# ----------------------------------------------------------------------------- GBM statistics


def test_gbm_log_return_moments_and_correlation():
    mu, vols, rho = (0.3, -0.2), (0.5, 0.8), 0.6
    c = cfg(gbm(drifts=mu, vols=vols, corr=[[1, rho], [rho, 1]]), dt=HOUR)
    n = 200_000
    p = generate_paths(c, rng(11), duration=n * HOUR)
    r = p.log_returns()
    dt = HOUR / SECONDS_PER_YEAR
    for i in range(2):
        sd = vols[i] * math.sqrt(dt)
        expected_mean = (mu[i] - 0.5 * vols[i] ** 2) * dt
        assert abs(r[:, i].mean() - expected_mean) < 4 * sd / math.sqrt(n)
        assert r[:, i].var() / sd**2 == pytest.approx(1.0, abs=5 * math.sqrt(2 / n))
    assert np.corrcoef(r.T)[0, 1] == pytest.approx(rho, abs=0.01)
    np.testing.assert_allclose(p.vols, np.broadcast_to(vols, p.vols.shape))


def test_correlation_factor_handles_singular_psd():
    ones = np.ones((3, 3))
    L = correlation_factor(ones)
    np.testing.assert_allclose(L @ L.T, ones, atol=1e-12)
    c = np.array([[1, 0.3], [0.3, 1]])
    np.testing.assert_allclose(correlation_factor(c) @ correlation_factor(c).T, c)


def test_perfectly_correlated_gbm_moves_together():
    p = generate_paths(cfg(gbm(vols=(0.5, 0.5), corr=[[1, 1], [1, 1]])), rng(), duration=100 * HOUR)
    r = p.log_returns()
    np.testing.assert_allclose(r[:, 0], r[:, 1], atol=1e-12)


# ----------------------------------------------------------------------------- Merton


def merton(compensated=True, lam=200.0, jm=-0.02, js=0.01, vol=0.4):
    return {
        "kind": "merton",
        "underlyings": [{"name": "X", "s0": 100.0, "drift": 0.1, "vol": vol}],
        "jumps": {"X": {"intensity": lam, "mean": jm, "std": js}},
        "compensated": compensated,
    }


def test_merton_moments_and_compensation():
    lam, jm, js, vol, mu = 200.0, -0.02, 0.01, 0.4, 0.1
    n = 200_000
    dt = HOUR / SECONDS_PER_YEAR
    p = generate_paths(cfg(merton(True, lam, jm, js, vol)), rng(5), duration=n * HOUR)
    r = p.log_returns()[:, 0]
    k = math.exp(jm + 0.5 * js**2) - 1
    mean = (mu - 0.5 * vol**2 - lam * k) * dt + lam * dt * jm
    var = vol**2 * dt + lam * dt * (jm**2 + js**2)
    assert abs(r.mean() - mean) < 4 * math.sqrt(var / n)
    assert r.var() / var == pytest.approx(1.0, abs=0.03)
    # jumps make the returns fat-tailed (excess kurtosis > 0)
    z = (r - r.mean()) / r.std()
    assert (z**4).mean() > 3.3
    # same seed, uncompensated: the same draws, the log drift differs by lambda*k per year exactly
    q = generate_paths(cfg(merton(False, lam, jm, js, vol)), rng(5), duration=n * HOUR)
    diff = np.log(q.prices[:, 0]) - np.log(p.prices[:, 0])
    np.testing.assert_allclose(diff, lam * k * p.times / SECONDS_PER_YEAR, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- GARCH and regime


def test_garch_unconditional_variance_and_clustering():
    m = {
        "kind": "garch",
        "underlyings": [{"name": "X", "s0": 1.0, "vol": 0.6}],
        "alpha": 0.08,
        "beta": 0.9,
    }
    n = 100_000
    p = generate_paths(cfg(m, dt=HOUR), rng(2), duration=n * HOUR)
    r = p.log_returns()[:, 0]
    dt = HOUR / SECONDS_PER_YEAR
    assert r.var() / (0.6**2 * dt) == pytest.approx(1.0, abs=0.12)
    sq = r**2 - (r**2).mean()
    acf_sq = (sq[1:] * sq[:-1]).mean() / (sq**2).mean()
    acf = np.corrcoef(r[1:], r[:-1])[0, 1]
    assert acf_sq > 0.05  # volatility clusters
    assert abs(acf) < 0.02  # returns themselves are not predictable
    assert p.vols.shape == p.prices.shape and np.all(p.vols > 0)
    assert p.vols.std() > 0.05  # conditional vol moves


def test_regime_switch_vol_ratio_and_occupancy():
    m = {
        "kind": "regime",
        "underlyings": [{"name": "X", "s0": 1.0, "vol": 0.4}],
        "vol_multipliers": [1.0, 3.0],
        "switch_rates": [20.0, 60.0],
    }
    n = 200_000
    p = generate_paths(cfg(m, dt=HOUR), rng(4), duration=n * HOUR)
    r = p.log_returns()[:, 0]
    stressed = p.vols[:-1, 0] > 0.5
    frac = stressed.mean()
    assert frac == pytest.approx(20.0 / 80.0, abs=0.05)
    assert r[stressed].std() / r[~stressed].std() == pytest.approx(3.0, rel=0.05)


# ----------------------------------------------------------------------------- OU with megashocks


def test_ar1_blocked_solution_matches_recurrence():
    e = rng(8).standard_normal((20_000, 3))
    a = np.array([1.0, 0.9999, 0.97])
    y = _ar1(np.array([1.0, -2.0, 0.5]), a, e)
    ref = np.empty_like(y)
    ref[0] = [1.0, -2.0, 0.5]
    for k in range(e.shape[0]):
        ref[k + 1] = a * ref[k] + e[k]
    np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9)


def test_ou_stationary_moments():
    kappa, vol = 200.0, 0.5
    m = {"kind": "ou_megashock", "underlyings": [{"name": "F", "mean": 1000.0, "kappa": kappa, "vol": vol}]}
    n = 200_000
    p = generate_paths(cfg(m, dt=HOUR), rng(6), duration=n * HOUR)
    x = np.log(p.prices[:, 0])
    dt = HOUR / SECONDS_PER_YEAR
    var = vol**2 / (2 * kappa)
    phi = math.exp(-kappa * dt)
    assert x.mean() == pytest.approx(math.log(1000.0), abs=5 * math.sqrt(var * (1 + phi) / (1 - phi) / n))
    assert x.var() / var == pytest.approx(1.0, abs=0.05)
    assert np.corrcoef(x[1:], x[:-1])[0, 1] == pytest.approx(phi, abs=0.01)


def test_ou_megashocks_count_sign_and_reversion():
    lam, size = 50.0, 0.05
    m = {
        "kind": "ou_megashock",
        "underlyings": [
            {"name": "D", "mean": 100.0, "kappa": 0.0, "vol": 0.0, "megashock_intensity": lam,
             "megashock_mean": size, "megashock_std": 0.0, "megashock_sign": "down"},
            {"name": "R", "mean": 100.0, "s0": 150.0, "kappa": 50.0, "vol": 0.0},
        ],
    }
    years = 20.0
    p = generate_paths(cfg(m, dt=DAY), rng(3), duration=years * SECONDS_PER_YEAR)
    r = p.log_returns()
    n_jumps = -r[:, 0].sum() / size
    assert n_jumps == pytest.approx(np.round(n_jumps))
    assert abs(n_jumps - lam * years) < 5 * math.sqrt(lam * years)
    assert np.all(r[:, 0] <= 1e-15)
    # pure mean reversion: the gap to the mean decays as exp(-kappa t)
    t = p.times / SECONDS_PER_YEAR
    np.testing.assert_allclose(np.log(p.prices[:, 1] / 100.0), math.log(1.5) * np.exp(-50.0 * t), atol=1e-12)


# ----------------------------------------------------------------------------- shocks


def base_and_shocked(shocks, models=None, duration=3 * DAY, dt=60.0, seed=9):
    models = models or [gbm()]
    base = generate_paths(cfg(*models, dt=dt), rng(seed), duration=duration)
    shocked = generate_paths(cfg(*models, shocks=shocks, dt=dt), rng(seed), duration=duration)
    return base, shocked


def test_crash_drawdown_timing_and_recovery():
    t0, T, T2 = 6 * HOUR, 12 * HOUR, 6 * HOUR
    crash = {"kind": "crash", "start": t0, "drop": 0.3, "duration": T, "recovery": 0.5,
             "recovery_duration": T2, "underlyings": ["BTC"]}
    base, sh = base_and_shocked([crash])
    ratio = sh.prices / base.prices
    i0, i1, i2 = (int(np.searchsorted(base.times, x)) for x in (t0, t0 + T, t0 + T + T2))
    np.testing.assert_allclose(ratio[: i0 + 1, 0], 1.0, rtol=1e-12)
    assert ratio[i1, 0] == pytest.approx(0.7, rel=1e-12)  # -30% exactly at t0 + T vs the base path
    assert ratio[i0 + (i1 - i0) // 2, 0] == pytest.approx(math.sqrt(0.7), rel=1e-9)  # log-linear
    assert ratio[:, 0].min() == pytest.approx(0.7, rel=1e-12)
    assert ratio[i2, 0] == pytest.approx(0.85, rel=1e-12)  # half of the fall won back
    np.testing.assert_allclose(ratio[i2:, 0], 0.85, rtol=1e-12)
    np.testing.assert_allclose(ratio[:, 1], 1.0, rtol=1e-12)  # ETH untouched


def test_gap_is_instant_and_permanent():
    base, sh = base_and_shocked([{"kind": "gap", "start": 5 * HOUR, "size": -0.12}])
    ratio = sh.prices / base.prices
    i = int(np.searchsorted(base.times, 5 * HOUR))
    np.testing.assert_allclose(ratio[:i], 1.0, rtol=1e-12)
    np.testing.assert_allclose(ratio[i:], 0.88, rtol=1e-12)


def test_vol_spike_scales_realised_vol_in_window_only():
    spike = {"kind": "vol_spike", "start": DAY, "duration": DAY, "factor": 4.0, "underlyings": ["ETH"]}
    base, sh = base_and_shocked([spike])
    rb, rs = base.log_returns(), sh.log_returns()
    win = (base.times[:-1] >= DAY) & (base.times[:-1] < 2 * DAY)
    assert rs[win, 1].std() == pytest.approx(4.0 * rb[win, 1].std(), rel=1e-9)
    np.testing.assert_allclose(rs[~win, 1], rb[~win, 1], atol=1e-12)
    np.testing.assert_allclose(rs[:, 0], rb[:, 0], atol=1e-12)
    rows = (sh.times >= DAY) & (sh.times < 2 * DAY)
    np.testing.assert_allclose(sh.vols[rows, 1], 4.0 * 0.8)
    np.testing.assert_allclose(sh.vols[~rows, 1], 0.8)


@pytest.mark.parametrize("mode, inside", [("decouple", 0.0), ("lockstep", 1.0)])
def test_correlation_breakdown_changes_realised_correlation(mode, inside):
    models = [gbm(corr=[[1, 0.8], [0.8, 1]])]
    shock = {"kind": "correlation_breakdown", "underlyings": ["BTC", "ETH"], "start": DAY, "duration": DAY, "mode": mode}
    base, sh = base_and_shocked([shock], models=models)
    r = sh.log_returns()
    rb = base.log_returns()
    win = (sh.times[:-1] >= DAY) & (sh.times[:-1] < 2 * DAY)
    assert np.corrcoef(r[win].T)[0, 1] == pytest.approx(inside, abs=1e-9)
    assert np.corrcoef(r[~win].T)[0, 1] == pytest.approx(0.8, abs=0.05)
    # each asset keeps its realised vol and its net move over the window
    np.testing.assert_allclose(r[win].std(axis=0), rb[win].std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(r[win].sum(axis=0), rb[win].sum(axis=0), atol=1e-9)


def test_correlation_breakdown_to_matrix():
    models = [gbm(names=("A", "B", "C"), vols=(0.5, 0.5, 0.5), s0=(1, 1, 1), drifts=(0, 0, 0))]
    shock = {"kind": "correlation_breakdown", "underlyings": ["C", "A"], "start": 0, "duration": DAY,
             "mode": "matrix", "correlation": [[1, -0.7], [-0.7, 1]]}
    base, sh = base_and_shocked([shock], models=models)
    r = sh.log_returns()
    win = sh.times[:-1] < DAY
    assert np.corrcoef(r[win][:, [2, 0]].T)[0, 1] == pytest.approx(-0.7, abs=1e-9)
    np.testing.assert_array_equal(sh.column("B"), base.column("B"))  # not a target: untouched


def test_depeg_hits_trough_and_partially_recovers():
    stable = gbm(names=("USDe",), vols=(0.0,), s0=(1.0,), drifts=(0.0,))
    depeg = {"kind": "depeg", "underlying": "USDe", "start": 2 * HOUR, "trough": 0.65, "duration": 30 * 60.0,
             "recovery_level": 0.9, "recovery_duration": 4 * HOUR}
    _, sh = base_and_shocked([depeg], models=[gbm(), stable])
    col = sh.column("USDe")
    np.testing.assert_allclose(col[sh.times <= 2 * HOUR], 1.0)
    assert sh.at(2 * HOUR + 30 * 60.0)[2] == pytest.approx(0.65, rel=1e-12)
    assert col.min() == pytest.approx(0.65, rel=1e-12)
    assert sh.times[np.argmin(col)] == 2 * HOUR + 30 * 60.0
    assert sh.at(2 * HOUR + 15 * 60.0)[2] == pytest.approx(0.825, rel=1e-12)
    np.testing.assert_allclose(col[sh.times >= 6.5 * HOUR], 0.9, rtol=1e-12)
    assert np.all(sh.vols[:, 2] == 0.0)


def test_depeg_unpinned_multiplies_base():
    depeg = {"kind": "depeg", "underlying": "ETH", "start": HOUR, "trough": 0.5, "duration": HOUR, "pin": False}
    base, sh = base_and_shocked([depeg])
    ratio = sh.column("ETH") / base.column("ETH")
    assert ratio[np.searchsorted(sh.times, 2 * HOUR)] == pytest.approx(0.5)
    assert ratio[-1] == pytest.approx(0.5)


def test_composed_shocks_on_several_underlyings():
    shocks = [
        {"kind": "crash", "start": HOUR, "drop": 0.12, "duration": 30 * 60.0, "underlyings": ["BTC"]},
        {"kind": "crash", "start": HOUR, "drop": 0.20, "duration": 30 * 60.0, "underlyings": ["ETH"]},
        {"kind": "gap", "start": 2 * HOUR, "size": -0.05},
    ]
    base, sh = base_and_shocked(shocks)
    ratio = sh.at(3 * HOUR) / base.at(3 * HOUR)
    np.testing.assert_allclose(ratio, [0.88 * 0.95, 0.80 * 0.95], rtol=1e-12)


# ----------------------------------------------------------------------------- replay


def write_csv(path, text):
    path.write_text(text)
    return path


def test_replay_round_trip(tmp_path):
    rows = ["timestamp,BTC,ETH"]
    t0 = 1_600_000_000
    data = []
    for k in range(50):
        btc, eth = 60000 * (1 + 0.01 * math.sin(k)), 3000 * (1 - 0.002 * k)
        data.append((btc, eth))
        rows.append(f"{t0 + 60 * k},{btc!r},{eth!r}")
    f = write_csv(tmp_path / "px.csv", "\n".join(rows) + "\n")
    c = cfg({"kind": "replay", "path": str(f)}, dt=60.0, root=tmp_path)
    p = generate_paths(c, rng(), duration=None)
    assert p.names == ("BTC", "ETH")
    assert p.times[-1] == 49 * 60.0
    np.testing.assert_array_equal(p.prices, np.array(data))
    # a finer grid holds each row until the next timestamp
    q = generate_paths(c, rng(), duration=49 * 60.0, dt=20.0)
    np.testing.assert_array_equal(q.prices[::3], np.array(data))
    np.testing.assert_array_equal(q.prices[1], q.prices[0])
    # column selection, ISO timestamps, composition with a model
    f2 = write_csv(tmp_path / "iso.csv", "timestamp,A,B\n2025-10-10T21:00:00,1.0,2\n2025-10-10T21:01:00,1.5,3\n")
    c2 = cfg({"kind": "replay", "path": "iso.csv", "columns": ["B"]}, gbm(), dt=30.0, root=tmp_path)
    r = generate_paths(c2, rng(), duration=120.0)
    assert r.names == ("B", "BTC", "ETH")
    np.testing.assert_array_equal(r.column("B"), [2, 2, 3, 3, 3])


@pytest.mark.parametrize(
    "text, message",
    [
        ("timestamp,X\n0,1\n60,2\n60,3\n", "line 4: the timestamp does not increase"),
        ("timestamp,X\n0,1\n60,-2\n", "line 3: column 'X': the price must be positive"),
        ("timestamp,X\n0,1\n60,abc\n", "line 3: column 'X': the price is not a number"),
        ("timestamp,X\n0,1\n60,2,3\n", "line 3: expected 2 fields, got 3"),
        ("time,X\n0,1\n", "line 1: the first column must be named 'timestamp'"),
        ("timestamp,X\n", "no data rows"),
        ("timestamp,X\nyesterday,1\n", "line 2: the timestamp is neither a number nor an ISO date-time"),
    ],
)
def test_replay_rejects_bad_files_naming_file_and_line(tmp_path, text, message):
    f = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(ValidationError) as e:
        cfg({"kind": "replay", "path": str(f)}, root=tmp_path)
    s = str(e.value)
    assert "models.0.replay.path" in s
    assert "bad.csv" in s and message in s
    with pytest.raises(ValueError, match="bad.csv"):
        read_price_csv(f)


def test_replay_missing_file_and_unknown_column(tmp_path):
    with pytest.raises(ValidationError) as e:
        cfg({"kind": "replay", "path": str(tmp_path / "nope.csv")}, root=tmp_path)
    assert "models.0.replay.path" in str(e.value) and "no such file" in str(e.value)
    f = write_csv(tmp_path / "ok.csv", "timestamp,X\n0,1\n")
    with pytest.raises(ValidationError) as e:
        cfg({"kind": "replay", "path": str(f), "columns": ["Y"]}, root=tmp_path)
    assert "'Y' is not a column" in str(e.value)


def test_replay_paths_are_confined_to_the_config_folder_and_never_echoed(tmp_path):
    """Regression (issue 14): ``../`` and absolute paths were read without restriction, and a
    validation error printed the file's first line (a system file's contents on the terminal)."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    secret = write_csv(tmp_path / "secret.txt", "root:x:0:0:the-secret-line\n")
    for path in ("../secret.txt", str(secret), "/etc/passwd"):
        with pytest.raises(ValidationError) as e:
            cfg({"kind": "replay", "path": path}, root=config_dir)
        assert "outside the config's folder" in str(e.value) and "allow_outside_config_folder" in str(e.value)
        assert "the-secret-line" not in str(e.value)
    # explicitly allowed: read, but the error does not quote the line either
    with pytest.raises(ValidationError) as e:
        cfg({"kind": "replay", "path": "../secret.txt", "allow_outside_config_folder": True}, root=config_dir)
    assert "not a price CSV" in str(e.value) and "the-secret-line" not in str(e.value)
    bad = write_csv(config_dir / "bad.csv", "timestamp,X\n0,1\n60,the-secret-cell\n")
    with pytest.raises(ValidationError) as e:
        cfg({"kind": "replay", "path": "bad.csv"}, root=config_dir)
    assert "line 3" in str(e.value) and "the-secret-cell" not in str(e.value)
    assert bad.exists()


def test_replay_path_resolves_against_the_config_file_not_the_working_directory(tmp_path, monkeypatch):
    from sim.experiment.config import load_episode

    folder = tmp_path / "study"
    (folder / "data").mkdir(parents=True)
    write_csv(folder / "data" / "px.csv", "timestamp,BTC\n0,100\n60,101\n120,102\n")
    (folder / "ep.yaml").write_text(
        "name: replayed\nduration: 120\nmarket: {instruments: [{symbol: BTC-PERP, kind: perpetual, "
        "underlying: BTC, tick_size: 1.0, lot_size: 0.001}]}\n"
        "paths: {dt: 60, models: [{kind: replay, path: data/px.csv}]}\npopulation: {groups: []}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_episode(folder / "ep.yaml")
    assert config.paths.models[0].path == (folder / "data" / "px.csv").resolve()


# ----------------------------------------------------------------------------- determinism


def test_determinism_under_seed_and_independent_model_streams():
    shocks = [{"kind": "crash", "start": HOUR, "drop": 0.3, "duration": HOUR}]
    c = cfg(gbm(), merton(), shocks=shocks, dt=60.0)
    a = generate_paths(c, rng(42), duration=DAY)
    b = generate_paths(c, rng(42), duration=DAY)
    assert a.prices.tobytes() == b.prices.tobytes() and a.vols.tobytes() == b.vols.tobytes()
    d = generate_paths(c, rng(43), duration=DAY)
    assert not np.array_equal(a.prices, d.prices)
    # appending a model does not perturb the existing ones
    e = generate_paths(cfg(gbm(), merton(), gbm(names=("Z",), vols=(1.0,), s0=(1.0,), drifts=(0.0,)),
                           shocks=shocks, dt=60.0), rng(42), duration=DAY)
    np.testing.assert_array_equal(e.prices[:, :3], a.prices)
    with pytest.raises(TypeError):
        generate_paths(c, 42, duration=DAY)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "corr, reason",
    [
        ([[1, 0.9, 0.9], [0.9, 1, -0.9], [0.9, -0.9, 1]], "not positive semidefinite"),
        ([[1, 0.5, 0], [0.4, 1, 0], [0, 0, 1]], "not symmetric"),
        ([[1, 0, 0], [0, 0.9, 0], [0, 0, 1]], "diagonal entry [1][1]"),
        ([[1, 0], [0, 1]], "2x2 but there are 3 underlyings"),
        ([[1, 1.2, 0], [1.2, 1, 0], [0, 0, 1]], "outside [-1, 1]"),
    ],
)
def test_invalid_correlation_rejected_with_field_path(corr, reason):
    m = gbm(names=("A", "B", "C"), vols=(0.1, 0.1, 0.1), s0=(1, 1, 1), drifts=(0, 0, 0), corr=corr)
    with pytest.raises(ValidationError) as e:
        cfg(m)
    s = str(e.value)
    assert "models.0.gbm.correlation" in s
    assert reason in s


def test_other_invalid_configs():
    with pytest.raises(ValidationError) as e:
        cfg({"kind": "garch", "underlyings": [{"name": "X", "s0": 1, "vol": 0.5}], "alpha": 0.2, "beta": 0.8})
    assert "models.0.garch.beta" in str(e.value) and "alpha + beta" in str(e.value)
    with pytest.raises(ValidationError) as e:
        cfg(gbm(), shocks=[{"kind": "crash", "start": 0, "drop": 0.3, "duration": 10, "underlyings": ["DOGE"]}])
    assert "unknown underlying 'DOGE'" in str(e.value)
    with pytest.raises(ValidationError) as e:
        cfg(gbm(), gbm(names=("BTC",), vols=(0.1,), s0=(1,), drifts=(0,)))
    assert "'BTC' appears more than once" in str(e.value)
    with pytest.raises(ValidationError) as e:
        cfg(gbm(), shocks=[{"kind": "crash", "start": 0, "drop": 1.3, "duration": 10}])
    assert "shocks.0.crash.drop" in str(e.value)
    with pytest.raises(ValidationError) as e:
        cfg({"kind": "brownian", "underlyings": []})
    assert "models.0" in str(e.value) and "brownian" in str(e.value)
    with pytest.raises(ValidationError) as e:
        cfg(gbm(), shocks=[{"kind": "depeg", "underlying": "BTC", "start": 0, "trough": 1.2, "duration": 10}])
    assert "below the peg" in str(e.value)
    with pytest.raises(ValidationError) as e:
        cfg(gbm(), shocks=[{"kind": "correlation_breakdown", "underlyings": ["BTC", "ETH"], "start": 0,
                            "duration": 10, "mode": "matrix"}])
    assert "needs a correlation matrix" in str(e.value)
    with pytest.raises(ValidationError) as e:
        cfg(merton() | {"jumps": {"Y": {"intensity": 1.0}}})
    assert "models.0.merton.jumps" in str(e.value)
    with pytest.raises(ValidationError) as e:
        cfg(gbm() | {"vol_of_vol": 1.0})
    assert "vol_of_vol" in str(e.value)
    with pytest.raises(ValueError, match="duration is required"):
        generate_paths(cfg(gbm()), rng(), duration=None)


def test_check_correlation_accepts_psd_singular():
    np.testing.assert_allclose(check_correlation([[1, 1], [1, 1]]), np.ones((2, 2)))
