import pytest
import torch

from bnutils.chapters.decoupling import OLS
from bnutils.measure.linalg import empirical_cov, gaussian_samples, s_norm, spd_matrix
from helpers import randn


@pytest.fixture
def problem():
    return OLS.random(8, 20.0, seed=3)


def test_spectrum_is_the_requested_one():
    lam = torch.linalg.eigvalsh(spd_matrix(6, 50.0, torch.Generator().manual_seed(0)))
    assert lam[0].item() == pytest.approx(1.0) and lam[-1].item() == pytest.approx(50.0)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_s_norm_neither_underflows_nor_overflows(problem, scale):
    w = randn(8, seed=15)
    assert s_norm(scale * w, problem.S).item() == pytest.approx(
        scale * torch.sqrt(w @ problem.S @ w).item(), rel=1e-12)
    rows = torch.stack([w, 2 * w])
    torch.testing.assert_close(s_norm(rows, problem.S), torch.stack([s_norm(w, problem.S),
                                                                     2 * s_norm(w, problem.S)]))


def test_gaussian_samples_have_the_requested_covariance():
    S = spd_matrix(4, 10.0, torch.Generator().manual_seed(2))
    X = gaussian_samples(20_000, S, torch.Generator().manual_seed(3))
    torch.testing.assert_close(empirical_cov(X), S, rtol=0.05, atol=0.05)
    assert X.mean(0).abs().max() < 0.1
