import numpy as np
import pytest

from bnutils.measure.shift import distribution_shift, percentile_drift


def test_percentile_drift_by_hand():
    steps = np.array([0, 10, 20, 100])
    q = np.array([[0.0, 5.0, 1.0, -1.0], [0.0, 5.0, 2.0, 2.0], [0.0, 5.0, 3.0, 3.0]])
    # from step 10 (10% of 100) to the end: |-6| + |-3| + |-2| = 11, over 3, over spread 4
    assert percentile_drift(q, steps) == pytest.approx(11 / 3 / 4)
    assert percentile_drift(q, steps, start_fraction=0.2) == pytest.approx((2 + 0 + 0) / 3 / 4)
    with pytest.raises(ValueError, match="shape"):
        percentile_drift(q[:2], steps)


def test_distribution_shift_is_a_scaled_wasserstein_distance():
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 2000))
    assert distribution_shift(np.stack([start, start])) == 0.0
    moved = distribution_shift(np.stack([start, start + 1.0]))
    # W1 between N(0,1) and N(1,1) is 1; the pooled std of the two is sqrt(1 + 1/4)
    assert moved == pytest.approx(1 / np.sqrt(1.25), rel=0.03)
    assert distribution_shift(np.stack([start, start * 10])) == \
        pytest.approx(distribution_shift(np.stack([start * 0.1, start])))
