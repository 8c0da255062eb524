"""Tests of the measurements of Chapter 1 (bnutils.chapters.bn_transform)."""
import pytest
import torch

from bnutils.chapters.bn_transform import (alg2_check, backward_differences, inference_estimates,
                                           scale_invariance_check)
from bnutils.core.bn import BatchNorm


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_scale_invariance():
    W = torch.randn(4, 6, generator=_gen(), dtype=torch.float64)
    u = torch.randn(10, 6, generator=_gen(1), dtype=torch.float64)
    for a in (0.1, 3.0, 100.0):
        diffs = scale_invariance_check(W, u, a)
        assert max(diffs.values()) < 1e-10, diffs
    # with eps > 0 the invariance is broken slightly, and the check sees it
    assert scale_invariance_check(W, u, 0.01, eps=1e-3)["output"] > 1e-6


def test_backward_differences_are_at_rounding_level():
    for shape in [(32, 4), (8, 3, 4, 4)]:
        diffs = backward_differences(shape)
        assert set(diffs) == {"autograd", "torch"}
        assert all(v < 1e-12 for d in diffs.values() for v in d.values()), diffs
    with pytest.raises(ValueError, match="shape"):
        backward_differences((4,))


def test_inference_estimates_converge_and_alg2_is_unbiased():
    m, mean, var = 4, 2.0, 4.0
    est = inference_estimates(400, m, n_channels=200, mean=mean, var=var, seed=1)
    assert est["pop_var"].shape == (400, 200)
    last = {k: v[-1] for k, v in est.items()}
    assert abs(last["pop_mean"].mean().item() - mean) < 0.02
    assert abs(last["pop_var"].mean().item() / var - 1) < 0.02  # m/(m-1) removes the bias
    assert abs(last["pop_var_biased"].mean().item() / var - (m - 1) / m) < 0.02
    # the EMA forgets old batches, so its estimate stays noisier than Alg. 2's average
    assert (last["ema_var"] - var).pow(2).mean() > 2 * (last["pop_var"] - var).pow(2).mean()


def test_alg2_check_is_at_rounding_level_and_sees_a_wrong_correction(monkeypatch):
    assert max(alg2_check(8, seed=3).values()) < 1e-12
    with pytest.raises(ValueError, match="batch_size >= 2"):
        alg2_check(1)
    # population statistics without the m/(m-1) factor: the affine map no longer matches
    monkeypatch.setattr(BatchNorm, "population",
                        lambda self: (self.population_mean_sum / self.population_batches,
                                      self.population_var_sum / self.population_batches * 7 / 8))
    assert alg2_check(8)["affine"] > 1e-3
