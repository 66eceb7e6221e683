"""Per-run metrics: one JSON-serialisable, deterministic summary of an episode's recorded tables.

``summarise(config, tables, stats)`` reads the tables ``sim.experiment.recorder.Recorder.tables()`` produces
and returns a nested dict of plain Python numbers, strings, lists and dicts. It contains no wall
clock figure (``timing(stats)`` returns those separately), and every float is rounded to
``SIGNIFICANT_DIGITS`` significant digits, so the same config and seed give a byte-identical
``summary.json`` in any process (in-process, a process pool, Ray or Dask).

Conventions: money in quote units (minor units / 10**quote.decimals); times in simulated
seconds; prices as the tables hold them (ticks for the venue, quote units for the oracle) and only
ever compared as ratios; slippage in basis points; ``None`` where a figure is undefined (the reason
is given next to it where it is not obvious). Every metric is defined in ``METRICS_DOC``.
"""

from sim.experiment.metrics.columns import SIGNIFICANT_DIGITS, rnd
from sim.experiment.metrics.summary import HEADLINE, flatten, headline, summarise, timing

__all__ = ["HEADLINE", "SIGNIFICANT_DIGITS", "flatten", "headline", "rnd", "summarise", "timing"]
