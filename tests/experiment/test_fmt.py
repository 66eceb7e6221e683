"""Human number formatting (sim/experiment/fmt.py), shared by CLI tables, HTML reports and plot axes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.experiment.fmt import DASH, cell, compact, number, percent, signed


@pytest.mark.parametrize("value, text", [
    (4716.814, "4,716.81"), (25_793_400.0, "25,793,400"), (1234567, "1,234,567"), (0.0, "0"),
    (0.000123456, "0.0001235"), (-0.5, "-0.5"), (None, DASH), (math.nan, DASH), (math.inf, DASH),
    (True, "yes"), (np.float64(2.5), "2.50"),
])
def test_number(value, text):
    assert number(value) == text


@pytest.mark.parametrize("value, text", [
    (25_793_400, "25.8M"), (-1500, "-1.5K"), (999_999.9, "1M"), (2.5e9, "2.5B"), (3e12, "3T"), (950, "950"),
    (0, "0"), (12.5, "12.50"), (None, DASH), (math.nan, DASH),
])
def test_compact(value, text):
    assert compact(value) == text


def test_percent_signed_and_cells():
    assert percent(0.1234) == "12.3%" and percent(None) == DASH
    assert signed(5.0) == "+5.00" and signed(-5.0) == "-5.00" and signed(0) == "0" and signed(None) == DASH
    assert cell([1, None]) == f"1, {DASH}" and cell({}) == DASH and cell("span") == "span"


def test_axis_labels_in_k_m_b():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sim.experiment.fmt import axis

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 3e7])
    axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all("e" not in x for x in labels) and any(x.endswith("M") for x in labels), labels


def test_comparison_figures_keep_their_significant_digits():
    """The comparison table's rules (sim.experiment.compare_report and the CLI's compare table): three
    significant digits with trailing zeros, a spaced K/M/B for money, signed differences."""
    from sim.experiment.fmt import difference, quantity, short, significant

    assert significant(1.5) == "1.50" and significant(2.004981776e-05) == "0.0000200" and significant(0) == "0"
    assert significant(123456.7) == "123,457" and significant(1e-9) == "≈0" and significant(None) == DASH
    assert short(2.5e9) == "2.50 B" and short(-12_500.0) == "-12.5 K" and short(950.0) == "950"
    assert quantity(0.5526, "fraction") == "55.3 %" and quantity(3.0, "count") == "3" and quantity(0.0, "x") == "0×"
    assert difference(-1_234_567.0, "money") == "−1.23 M" and difference(0.0, "money") == "0"
    assert difference(2.0, "x") == "+2.00×" and difference(None, "money") == DASH
    # rounding into the next decade keeps three digits, not four: 0.99996 beside 1.0 reads 1.00 and 1.00
    assert significant(0.99996) == "1.00" and significant(1.0) == "1.00" and significant(9.9996) == "10.0"
    assert significant(-0.99996) == "-1.00" and significant(99_999.6) == "100,000" and significant(0.0999996) == "0.100"
