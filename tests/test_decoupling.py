import numpy as np
import pytest
import scipy.linalg
import torch

from bnutils.chapters.decoupling import (OLS, bn_ols_grad, bn_ols_loss, bn_unit, bound_excess,
                                         condition_sweep, decoupling_checks, gd_bn_ols, gd_ols,
                                         kappa_exponent, ols_grad, ols_loss, ols_solution,
                                         optimal_length)
from bnutils.measure.linalg import DTYPE, bn_weight, check_spd, empirical_cov
from bnutils.measure.rayleigh import rayleigh, rayleigh_grad, rayleigh_local_rate, rayleigh_max
from bnutils.measure.stats import fit_linear_rate
from helpers import autograd, randn


@pytest.fixture
def problem():
    return OLS.random(8, 20.0, seed=3)


@pytest.mark.parametrize("S, match", [
    (torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=DTYPE), "symmetric"),
    (torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=DTYPE), "positive definite"),
    (torch.ones(3, dtype=DTYPE), "square matrix"),
])
def test_bad_covariance_is_refused(S, match):
    with pytest.raises(ValueError, match=match):
        check_spd(S)
    with pytest.raises(ValueError, match=match):
        OLS(S, torch.ones(2, dtype=DTYPE))


def test_bad_arguments_are_refused(problem):
    w = randn(8)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        gd_ols(problem, w, 10, lr=-0.1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        gd_bn_ols(problem, w, 0)
    with pytest.raises(ValueError, match="kappa"):
        OLS.random(4, 0.5)
    with pytest.raises(ValueError, match="u must have shape"):
        OLS(problem.S, torch.ones(3, dtype=DTYPE))


def test_ols_solution_is_the_least_squares_fit():
    X, y = randn(200, 5, seed=1), randn(200, seed=2)
    p = OLS(X.T @ X / 200, -X.T @ y / 200)  # S = E[x x^T], u = E[-y x] on the sample
    expected = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    torch.testing.assert_close(ols_solution(p), expected)
    assert ols_loss(p, expected).item() == pytest.approx(-(p.u @ torch.linalg.solve(p.S, p.u)))


def test_hand_written_gradients_match_autograd(problem):
    w, wt, g = randn(8, seed=4), randn(8, seed=5), torch.tensor(0.7, dtype=DTYPE)
    torch.testing.assert_close(ols_grad(problem, wt),
                               autograd(lambda v: ols_loss(problem, v), wt)[0])
    torch.testing.assert_close(rayleigh_grad(problem.S, problem.u, w),
                               autograd(lambda v: rayleigh(problem.S, problem.u, v), w)[0])
    gw, gg = bn_ols_grad(problem, w, g)
    aw, ag = autograd(lambda v, h: bn_ols_loss(problem, v, h), w, g)
    torch.testing.assert_close(gw, aw)
    torch.testing.assert_close(gg, ag)


def test_bn_form_is_ols_at_the_reparametrised_weight(problem):
    w = randn(8, seed=6)
    torch.testing.assert_close(bn_ols_loss(problem, w, 1.3),
                               ols_loss(problem, bn_weight(w, 1.3, problem.S)))


def test_optimal_length_leaves_minus_the_rayleigh_quotient(problem):
    w = randn(8, seed=7)
    g = optimal_length(problem, w)
    assert bn_ols_grad(problem, w, g)[1].abs().item() < 1e-12
    rho = rayleigh(problem.S, problem.u, w).item()
    assert bn_ols_loss(problem, w, g).item() == pytest.approx(-rho)
    grid = g + torch.linspace(-1, 1, 201, dtype=DTYPE)
    assert bn_ols_loss(problem, w, grid).min() >= bn_ols_loss(problem, w, g) - 1e-12


def test_rayleigh_maximiser_is_the_top_generalised_eigenvector(problem):
    w_star, rho_star = rayleigh_max(problem.S, problem.u)
    B = torch.outer(problem.u, problem.u)
    evals, evecs = scipy.linalg.eigh(B.numpy(), problem.S.numpy())
    top = torch.from_numpy(evecs[:, -1])
    assert rho_star.item() == pytest.approx(evals[-1])
    assert abs(torch.nn.functional.cosine_similarity(w_star, top, dim=0).item()) \
        == pytest.approx(1.0, abs=1e-12)
    # and the BN optimum reproduces the OLS optimum
    torch.testing.assert_close(bn_weight(w_star, optimal_length(problem, w_star), problem.S),
                               ols_solution(problem))


def test_gd_rates_match_theory(problem):
    w0 = randn(8, seed=9)
    gd = fit_linear_rate(gd_ols(problem, w0, 1500), upper=1e-8, lower=1e-24)
    assert gd.agrees_with(2 * np.log10(1 - problem.mu / problem.L), rtol=0.03)
    bn = fit_linear_rate(gd_bn_ols(problem, w0, 1500), upper=1e-8, lower=1e-24)
    assert bn.agrees_with(2 * np.log10(rayleigh_local_rate(problem.S, problem.u)), rtol=0.03)
    assert bn.slope <= 2 * np.log10(1 - problem.mu / problem.L) * 0.99  # at least the bound


def test_bn_unit_is_scale_invariant_with_orthogonal_gradient():
    X, y, w = randn(256, 6, seed=10) @ randn(6, 6, seed=11), randn(256, seed=12), randn(6, seed=13)
    rows = decoupling_checks(X, y, w, 1.5, [0.01, 1.0, 100.0])
    for r in rows:
        assert r["max |out(cw) - out(w)|"] < 1e-10
        assert r["|out - X wtilde|"] < 1e-10
        assert abs(r["cos(w, grad)"]) < 1e-10
    assert abs(rows[0]["cos_S(w, grad)"]) > 1e-3  # the plain gradient is not S-orthogonal
    assert all(abs(r["cos_S(w, S^-1 grad)"]) < 1e-10 for r in rows)  # the S-gradient is
    norms = [r["c * ||grad||"] for r in rows]
    assert norms == pytest.approx([norms[1]] * 3, rel=1e-9)
    assert bn_unit(X, w, 1.5).std(correction=0).item() == pytest.approx(1.5)
    assert empirical_cov(X).shape == (6, 6)


def test_condition_sweep_rows():
    rows = condition_sweep([10.0, 30.0], d=5, n_seeds=2)
    assert [(r["kappa"], r["seed"]) for r in rows] == [(10.0, 0), (10.0, 1), (30.0, 0), (30.0, 1)]
    for r in rows:
        assert r["fit_gd"].agrees_with(r["bound"], rtol=0.05)
        assert r["fit_bn"].agrees_with(r["local"], rtol=0.05)
    with pytest.raises(ValueError, match="every kappa must be > 1"):
        condition_sweep([10.0, 1.0], d=5, n_seeds=1)


def test_bound_excess_checks_every_t_by_hand():
    # rate 1/2 per step (log10 = -0.301): a curve at the bound, one below it, one above it once
    rate = np.log10(0.5)
    at = 0.5 ** np.arange(10)
    assert bound_excess(at, rate) == pytest.approx(0.0, abs=1e-12)
    below = at * np.r_[1.0, [0.9] * 9]
    assert bound_excess(below, rate) == pytest.approx(-0.1)
    bump = at.copy()
    bump[3] *= 1.5  # above the bound at t = 3 only; its asymptotic slope is still the bound's
    assert bound_excess(bump, rate) == pytest.approx(0.5)
    # only the iterations where the bound is above the floor count
    tail = at.copy()
    tail[9] = 1.0
    assert bound_excess(tail, rate, floor=0.5 ** 8.5) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="nothing to check"):
        bound_excess(at, rate, floor=0.9)


def test_gd_and_the_bn_form_stay_under_the_bound_at_every_step(problem):
    w0 = randn(8, seed=9)
    bound = 2 * np.log10(1 - problem.mu / problem.L)
    assert bound_excess(gd_ols(problem, w0, 400), bound) <= 1e-9
    assert bound_excess(gd_bn_ols(problem, w0, 400), bound) <= 1e-9
    # a longer step (0.99/L instead of 1/(2L)) lets the top eigen-component decay by only
    # |1 - 1.98| = 0.98 > 1 - mu/L = 0.95 per step: the bound breaks at some t
    assert bound_excess(gd_ols(problem, w0, 400, lr=0.99 / problem.L), bound) > 0


def test_kappa_exponent_of_rates_of_order_one_over_kappa():
    from bnutils.measure.stats import RateFit
    kappas = [10.0, 30.0, 100.0, 300.0]
    rows = [dict(kappa=k, fit=RateFit(-0.87 / k * (1 + 0.01 * i), 0, 0, 0, 1, 2, 0.95))
            for i, k in enumerate(kappas)]
    a = kappa_exponent(rows, "fit")
    assert a.estimate == pytest.approx(1.0, abs=0.01) and a.lo < 1.0 < a.hi + 0.01
