import numpy as np
import pytest

from bnutils.plotting import running_mean


def test_running_mean_over_the_last_n_values():
    y = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    assert running_mean(y, 2) == pytest.approx([1.0, 2.0, 4.0, 6.0, 8.0])
    assert running_mean(y, 10) == pytest.approx(np.cumsum(y) / np.arange(1, 6))
    assert running_mean(y, 1) == pytest.approx(y)
