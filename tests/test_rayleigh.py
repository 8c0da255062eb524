import pytest
import torch

from bnutils.chapters.decoupling import OLS
from bnutils.measure.rayleigh import rayleigh, rayleigh_gap, rayleigh_local_rate, rayleigh_max
from helpers import randn


@pytest.fixture
def problem():
    return OLS.random(8, 20.0, seed=3)


def test_rayleigh_gap_is_rho_star_minus_rho(problem):
    w = randn(8, seed=8)
    S, u = problem.S, problem.u
    assert rayleigh_gap(S, u, w).item() == pytest.approx(
        (rayleigh_max(S, u)[1] - rayleigh(S, u, w)).item(), rel=1e-10)
    assert rayleigh_gap(S, u, rayleigh_max(S, u)[0]).item() < 1e-25


def test_local_rate_lies_between_the_interlacing_bounds(problem):
    lam = torch.linalg.eigvalsh(problem.S)
    rate = rayleigh_local_rate(problem.S, problem.u)
    assert 1 - lam[1].item() / problem.L <= rate <= 1 - problem.mu / problem.L
