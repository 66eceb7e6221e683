"""The oracle feed: turns exogenous price paths (and optionally the venue's own trades) into
published index prices, with the delays and failure modes real feeds have.

Published values are what the clearing house margins against; the true path is what the market
"really" does. The gap between the two -- latency, heartbeat and deviation thresholds, outages, a
floor it will not publish below, a venue price it can be pushed by -- is what several historical
episodes turned on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sim.core.phases import Subscribers
from sim.core.kernel import World
from sim.market.oracle_config import OracleConfig

PriceSource = Callable[[float], np.ndarray]  # time -> true prices per underlying
Listener = Callable[[np.ndarray], None]  # called with the indices of underlyings just published


class Oracle:
    """Publishes index prices per underlying; ``index``/``published_at`` are the public state."""

    def __init__(self, world: World, config: OracleConfig, underlyings: list[str], source: PriceSource,
                 batch_source: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """``source(t)`` gives the true prices at time t; ``batch_source(times)`` (optional, e.g.
        ``PricePaths.at``) gives them for many sample times at once, which the sampler reads ahead."""
        self.world = world
        self.config = config
        self.underlyings = list(underlyings)
        self.source = source
        self.batch_source = batch_source
        self._ahead: list[list[float]] = []
        self._ahead_times: list[float] = []
        self._ahead_pos = 0
        # samples of the block before this position publish nothing (exogenous index, no outages):
        # -1 until scanned, after each new block and each publication (which moves the references)
        self._quiet_until = -1
        n = len(underlyings)
        self._rng = world.stream("oracle/sources")
        self.floor = np.array([config.floor.get(u, 0.0) for u in underlyings])
        self.ceiling = np.array([config.ceiling.get(u, np.inf) for u in underlyings])
        self.venue_price = np.full(n, np.nan)  # last venue trade price per underlying (quote units)
        self._floor_list = self.floor.tolist()
        self._ceiling_list = self.ceiling.tolist()
        self._aggregation_median = config.aggregation == "median"
        self._exogenous = not self._aggregation_median and config.venue_weight == 0.0
        self._heartbeat_due = config.heartbeat - 1e-9  # a heartbeat's worth of float steps may fall short
        self._outage_windows = [
            (o.start, o.end, np.array([u in o.underlyings for u in underlyings]) if o.underlyings else np.ones(n, bool))
            for o in config.outages
        ]
        self._counts_off = self._exogenous and batch_source is not None and not self._outage_windows
        first = np.array(self._candidate(0.0))
        self.index = first.copy()
        self.published_at = np.zeros(n)
        self._pending_last = first.copy()  # last value sent for publication (deviation reference)
        self._pending_at = np.zeros(n)
        self.listeners: Subscribers[Listener] = Subscribers()  # phase by phase (sim.core.phases)
        self.publications = 0
        self.history_t: list[float] = [0.0]
        self.history: list[np.ndarray] = [first.copy()]

    def start(self) -> None:
        self.world.every(self.config.sample_interval, self._sample, start=self.config.sample_interval)

    # ------------------------------------------------------------------ sampling and publication
    def _weighted(self, true: list[float]) -> list[float]:
        """The weighted index of one sample in plain floats: the true price, mixed with the venue's
        last trade where it has traded, clipped to the floor and ceiling."""
        w = self.config.venue_weight
        venue, floor, ceiling = self.venue_price, self._floor_list, self._ceiling_list
        out = []
        for u, price in enumerate(true):
            v = float(venue[u])
            if v == v:  # not NaN: the venue has traded
                price = (1.0 - w) * price + w * v
            out.append(min(max(price, floor[u]), ceiling[u]))
        return out

    def _median(self, now: float) -> np.ndarray:
        """The median of noisy external sources and the venue price, clipped."""
        c = self.config
        true = np.asarray(self.source(now), dtype=np.float64)
        noise = self._rng.normal(0.0, c.source_noise, (c.external_sources, true.size))
        venue = np.where(np.isnan(self.venue_price), true, self.venue_price)
        value = np.median(np.vstack([true * np.exp(noise), venue]), axis=0)
        return np.clip(value, self.floor, self.ceiling)

    def _candidate(self, now: float) -> list[float]:
        if self._aggregation_median:
            return self._median(now).tolist()
        if self._exogenous:
            return self._row_ahead(now)
        return self._weighted(self._row_ahead(now))

    def _in_outage(self, now: float) -> np.ndarray:
        blocked = np.zeros(len(self.underlyings), dtype=bool)
        for start, end, mask in self._outage_windows:
            if start <= now < end:
                blocked |= mask
        return blocked

    def _row_ahead(self, now: float) -> list[float]:
        """True prices at ``now`` as Python floats, read ahead in blocks from ``batch_source`` --
        already clipped to the floor and ceiling when the index does not look at the venue (the
        candidate is then the clipped true price, exogenous, and a whole block clips at once)."""
        if self.batch_source is None:
            return self._clip_if_exogenous(np.asarray(self.source(now), dtype=np.float64)).tolist()
        pos = self._ahead_pos
        if pos >= len(self._ahead_times) or self._ahead_times[pos] != now:
            step = self.config.sample_interval
            # the clock reaches sample times by repeated addition: build them the same way
            times = np.cumsum(np.r_[now, np.full(1023, step)])
            self._ahead_times = times.tolist()
            rows = np.asarray(self.batch_source(times), dtype=np.float64)
            self._ahead = self._clip_if_exogenous(rows).tolist()
            self._quiet_until = -1
            pos = 0
        self._ahead_pos = pos + 1
        return self._ahead[pos]

    def _clip_if_exogenous(self, prices: np.ndarray) -> np.ndarray:
        return np.minimum(np.maximum(prices, self.floor), self.ceiling) if self._exogenous else prices

    def _quiet_scan(self, pos: int) -> int:
        """The first sample of the read-ahead block at or after ``pos`` that publishes anything, with
        the references as they are now: ``_sample``'s own test, in the same Python floats. A
        publication comes within a heartbeat, so a scan walks a few dozen samples -- cheaper in
        plain floats than the fixed cost of the numpy calls over the block."""
        rows, times = self._ahead, self._ahead_times
        last, last_at = self._pending_last.tolist(), self._pending_at.tolist()
        deviation, heartbeat = self.config.deviation, self._heartbeat_due
        for k in range(pos, len(rows)):
            now = times[k]
            for price, ref, at in zip(rows[k], last, last_at):
                if abs(price / ref - 1.0) > deviation or now - at >= heartbeat:
                    return k
        return len(rows)

    def _sample(self) -> None:
        """Publish every underlying whose candidate moved beyond ``deviation`` or whose heartbeat is
        due, outside outages (plain floats: a handful of underlyings, no numpy overhead).

        An exogenous index read ahead (no venue price, no median, no outages) is known for the
        whole block, and so is which of its samples would publish while the references stand: the
        samples before the next one that does are only counted off (most samples publish nothing
        -- 22,476 of 23,400 in the RMSC04-like day)."""
        now = self.world.now
        pos = self._ahead_pos
        if self._counts_off and pos < len(self._ahead_times) and self._ahead_times[pos] == now:
            quiet = self._quiet_until
            if quiet < pos:
                quiet = self._quiet_until = self._quiet_scan(pos)
            if pos < quiet:
                self._ahead_pos = pos + 1
                return
        candidate = self._candidate(now)
        last, last_at = self._pending_last, self._pending_at
        heartbeat, deviation = self._heartbeat_due, self.config.deviation
        blocked = self._in_outage(now).tolist() if self._outage_windows else None
        which: list[int] = []
        values: list[float] = []
        for u, price in enumerate(candidate):
            if blocked is not None and blocked[u]:
                continue
            if abs(price / last.item(u) - 1.0) > deviation or now - last_at.item(u) >= heartbeat:
                which.append(u)
                values.append(price)
        if not which:
            return
        idx = np.array(which, dtype=np.int64)
        vals = np.array(values)
        last[idx] = vals
        last_at[idx] = now
        self._quiet_until = -1  # the references moved: the block is scanned again from the next sample
        latency = self.config.latency
        if latency > 0:
            self.world.call_later(latency, self._publish, idx, vals)
        else:
            self._publish(idx, vals)

    def _publish(self, which: np.ndarray, values: np.ndarray) -> None:
        now = self.world.now
        self.index[which] = values
        self.published_at[which] = now
        self.publications += 1
        self.history_t.append(now)
        self.history.append(self.index.copy())
        for listener in self.listeners.calls:
            listener(which)

    # ------------------------------------------------------------------ public reads
    def observe_trade(self, underlying: int, price: float) -> None:
        """The venue's last traded price for an underlying (feeds manipulation-prone indices)."""
        self.venue_price[underlying] = price

    def stale(self) -> np.ndarray:
        """True where the published index is older than ``stale_after``."""
        return (self.world.now - self.published_at) > self.config.stale_after
