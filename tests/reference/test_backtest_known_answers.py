"""Backtest statistics against published tables.

Sources:

- Kupiec, P. (1995), "Techniques for verifying the accuracy of risk measurement models", Journal of
  Derivatives 3(2), non-rejection regions of the proportion-of-failures test at the 5% level, as
  reproduced in P. Jorion, *Value at Risk* (3rd ed.), table "Model backtesting, 95% nonrejection
  test confidence regions": for VaR confidence p and T days, the counts N that are not rejected.
  (For p = 1%, T = 255 the table prints only the upper end, N < 7.)
- Basel Committee on Banking Supervision (1996), "Supervisory framework for the use of
  'backtesting' in conjunction with the internal models approach to market risk capital
  requirements", Table 2: 250 observations at 99% coverage; cumulative probabilities of 0..10
  exceptions 8.11%, 28.58%, 54.32%, 75.81%, 89.22%, 95.88%, 98.63%, 99.60%, 99.89%, 99.97%, 99.99%;
  green zone 0-4 exceptions, yellow 5-9, red 10 or more.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.experiment.backtest.stats import cumulative_probability, kupiec_pof, traffic_light

# (exceedance probability, days) -> (lowest, highest) count not rejected
KUPIEC_REGIONS = {
    (0.01, 510): (2, 10), (0.01, 1000): (5, 16),
    (0.025, 255): (3, 11), (0.025, 510): (7, 20), (0.025, 1000): (16, 35),
    (0.05, 255): (7, 20), (0.05, 510): (17, 35), (0.05, 1000): (38, 64),
}


@pytest.mark.parametrize(("case", "region"), KUPIEC_REGIONS.items(), ids=lambda v: str(v))
def test_kupiec_non_rejection_regions_match_the_published_table(case, region):
    p, days = case
    x = np.arange(0, 120)
    _, pvalue = kupiec_pof(x, np.full(x.size, days), coverage=1.0 - p)
    kept = x[pvalue >= 0.05]
    assert (int(kept.min()), int(kept.max())) == region
    assert np.array_equal(kept, np.arange(region[0], region[1] + 1))  # one contiguous region


def test_kupiec_upper_end_for_255_days_at_one_percent():
    _, pvalue = kupiec_pof(np.array([6, 7]), np.array([255, 255]), coverage=0.99)
    assert pvalue[0] >= 0.05 > pvalue[1]


def test_basel_traffic_light_table():
    x = np.arange(0, 11)
    cum = cumulative_probability(x, np.full(11, 250), 0.99)
    published = [8.11, 28.58, 54.32, 75.81, 89.22, 95.88, 98.63, 99.60, 99.89, 99.97, 99.99]
    assert np.round(100 * cum, 2).tolist() == published
    assert traffic_light(x, np.full(11, 250), 0.99).tolist() == [0] * 5 + [1] * 5 + [2]
