"""Notebook support of ValuationResult: HTML repr and plot()."""

import numpy as np
import pytest

from valuation import ValuationError, ValuationResult


@pytest.fixture
def result():
    values = np.array([0.3, -0.2, 0.1, 0.0, -0.5, 0.7, 0.2])
    return ValuationResult(values=values, stderr=np.full(7, 0.05), counts=np.full(7, 4),
                           ids=np.array([f"<s{i}>" for i in range(7)]), method="tmc", seed=3)


def test_html_lists_lowest_and_highest_and_escapes_ids(result):
    html = result._repr_html_()
    assert "&lt;s4&gt;" in html and "<s4>" not in html  # ids are escaped
    low, high = html.split("highest values")
    assert "&lt;s4&gt;" in low and "&lt;s5&gt;" in high  # -0.5 lowest, 0.7 highest
    assert "&lt;s5&gt;" not in low.split("lowest values")[1]


def test_plot_returns_a_figure_with_the_values():
    pytest.importorskip("matplotlib")
    values = np.array([0.3, -0.2, 0.1])
    r = ValuationResult(values=values, stderr=np.array([0.1, np.inf, 0.0]),
                        counts=np.array([5, 1, 1]), ids=np.arange(3), method="tmc")
    fig = r.plot(highlight=np.array([False, True, False]))
    left, right = fig.axes
    np.testing.assert_allclose(left.lines[0].get_ydata(), [0.3, 0.1, -0.2])  # by rank
    assert sum(p.get_height() for p in right.patches) == 3  # every sample in the histogram
    with pytest.raises(ValuationError, match="highlight"):
        r.plot(highlight=np.array([True]))
