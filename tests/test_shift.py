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


def _tiny(norm):
    import torch

    from bnutils.core.models import MLP
    torch.manual_seed(0)
    return MLP(5, hidden=(6, 4), n_classes=3, norm=norm).double()


def test_moment_probe_by_hand():
    import torch

    from bnutils.core.probes import Step, activations
    from bnutils.measure.shift import MomentProbe

    net = _tiny("bn")
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,))
    probe_x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    step = Step(net, x, y, 0.5, "cross_entropy", 0)
    out = MomentProbe(probe_x, layers=(1, 2), every=1)(step)
    before = activations(net, probe_x, (2,), train_mode=True)["post2"]
    after = activations(net, probe_x, (2,), train_mode=True, at=step.stepped(0.5))["post2"]
    torch.testing.assert_close(out["dmean_2"], (after.mean(0) - before.mean(0)).abs())
    torch.testing.assert_close(out["dvar_2"], (after.var(0) - before.var(0)).abs())
    # behind BN in training mode each unit's batch mean is beta: it moves by beta's step
    _, grads = step.gradient()
    torch.testing.assert_close(out["dmean_2"], 0.5 * grads["layers.1.norm.bias"].abs())
    assert out["mean_2"].abs().max() < 1e-12


def test_noisy_bn_draws_fresh_noise_for_each_of_the_two_passes():
    import torch

    from bnutils.core.probes import Step
    from bnutils.measure.shift import MomentProbe

    net = _tiny("noisy_bn")
    x = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    state = torch.get_rng_state()
    out = MomentProbe(x, layers=(1,), every=1)(Step(net, x, y, 1e-12, "cross_entropy", 0))
    assert torch.equal(torch.get_rng_state(), state)  # the generators are left alone
    # with a vanishing step the change comes from the noise alone: it is not zero
    assert out["dmean_1"].mean() > 1e-3
