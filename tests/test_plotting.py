import numpy as np
import pytest

from bnutils.infra.plotting import running_mean


def test_running_mean_over_the_last_n_values():
    y = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    assert running_mean(y, 2) == pytest.approx([1.0, 2.0, 4.0, 6.0, 8.0])
    assert running_mean(y, 10) == pytest.approx(np.cumsum(y) / np.arange(1, 6))
    assert running_mean(y, 1) == pytest.approx(y)


def test_percentile_bands_draws_the_median_and_two_bands():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bnutils.infra.plotting import percentile_bands

    steps = np.array([0, 10, 20])
    samples = np.stack([np.arange(101.0) + 100 * k for k in range(3)])  # percentiles = values
    fig, ax = plt.subplots()
    percentile_bands(ax, steps, samples, color="C0", label="x")
    (median,) = ax.lines
    assert median.get_ydata() == pytest.approx([50, 150, 250])
    assert len(ax.collections) == 2  # the 15-85th and 5-95th bands
    plt.close(fig)
