import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from bnutils.chapters import gdnp as G
from bnutils.measure.linalg import DTYPE, bn_weight, empirical_cov, s_norm
from bnutils.measure.rayleigh import rayleigh, rayleigh_grad, rayleigh_local_rate, sin_to_line
from bnutils.measure.stats import fit_linear_rate, is_linear
from helpers import autograd, randn


@pytest.fixture(scope="module")
def problem():
    return G.gaussian_halfspace(6, 10.0, seed=1)


@pytest.fixture(scope="module")
def sigmoid():
    return G.gaussian_halfspace(6, 10.0, seed=1, loss="sigmoid", penalty=G.PENALTY)


@pytest.mark.parametrize("name", ["logistic", "sigmoid"])
def test_loss_derivatives_match_autograd_and_the_curvature_bound(name):
    loss = G.LOSSES[name]
    t = torch.linspace(-30, 30, 2001, dtype=DTYPE)
    torch.testing.assert_close(loss.d1(t), autograd(lambda x: loss.phi(x).sum(), t)[0])
    torch.testing.assert_close(loss.d2(t), autograd(lambda x: loss.d1(x).sum(), t)[0])
    assert loss.d2(t).abs().max().item() == pytest.approx(loss.curvature, rel=1e-4)
    assert bool((loss.d2(t) >= 0).all()) == loss.convex  # the sigmoid's phi'' changes sign


@pytest.mark.parametrize("length", [0.3, 3.0, 20.0])
def test_gaussian_expectation_matches_adaptive_quadrature(problem, length):
    wt = randn(6, seed=2)
    wt = length * wt / s_norm(wt, problem.S)
    a, b = float(problem.u @ wt), float(s_norm(wt, problem.Sigma))
    ref = integrate.quad(lambda e: np.logaddexp(0, a + b * e) * stats.norm.pdf(e), -12, 12,
                         points=[-a / b], limit=200, epsabs=1e-13)[0]
    assert problem.loss(wt).item() == pytest.approx(ref, rel=1e-10)


def test_bn_divides_by_the_second_moment(problem):
    # population: S = Cov(z) + u u^T = E[z z^T] = E[x x^T]
    torch.testing.assert_close(problem.S, problem.Sigma + torch.outer(problem.u, problem.u))
    # sample: x = -y z is centred, and S is the batch covariance of x, what BN divides by; the
    # BN unit's output equals x^T wtilde with wtilde = g w / ||w||_S (Chapter 4)
    p = G.sample_halfspace(5, 4.0, 300, seed=2)
    y = torch.where(torch.rand(300, generator=torch.Generator().manual_seed(2 + G.LABEL_SEED),
                               dtype=DTYPE) < 0.5, 1.0, -1.0).to(DTYPE)
    X = -y[:, None] * p.Z
    assert X.mean(0).abs().max().item() < 1e-12
    torch.testing.assert_close(p.S, empirical_cov(X))
    w = randn(5, seed=3)
    a = X @ w
    torch.testing.assert_close(1.3 * (a - a.mean()) / a.std(correction=0),
                               X @ bn_weight(w, 1.3, p.S))
    torch.testing.assert_close(p.Sigma, empirical_cov(p.Z))


@pytest.mark.parametrize("which", ["problem", "sigmoid"])
def test_stein_gradient_matches_autograd(which, request):
    p = request.getfixturevalue(which)
    for length in (0.5, 15.0):
        wt = length * randn(6, seed=3) / s_norm(randn(6, seed=3), p.S)
        torch.testing.assert_close(p._grad(wt), autograd(p.loss, wt)[0])
    W = randn(4, 6, seed=4)  # a batch of weights
    torch.testing.assert_close(p._grad(W), torch.stack([p._grad(w) for w in W]))
    torch.testing.assert_close(p.loss(W), torch.stack([p.loss(w) for w in W]))


def test_sample_and_network_gradients_match_autograd():
    p = G.SampleHalfspace(randn(50, 4, seed=4) + 1.0, "sigmoid", 0.01)
    wt = randn(4, seed=5)
    torch.testing.assert_close(p._grad(wt), autograd(p.loss, wt)[0])
    net, _ = G.teacher_mlp(4, 3, 64, 5.0, seed=0)
    W = randn(3, 4, seed=6)
    torch.testing.assert_close(net._grad(W), autograd(net.loss, W)[0])
    Ws = randn(2, 3, 4, seed=7)
    torch.testing.assert_close(net._grad(Ws), torch.stack([net._grad(w) for w in Ws]))
    with pytest.raises(ValueError, match="centred"):
        G.TanhMLP(net.X + 1.0, net.y, net.theta)


def test_bn_chain_rule_and_the_one_dimensional_derivatives(problem, sigmoid):
    for p in (problem, sigmoid):
        w, g = randn(6, seed=7), torch.tensor(1.7, dtype=DTYPE)
        dw, dg = G.bn_grads(p, w, g)
        aw, ag = autograd(lambda v, h: p.loss(bn_weight(v, h, p.S)), w, g)
        torch.testing.assert_close(dw, aw)
        torch.testing.assert_close(dg, ag)
        v = w / s_norm(w, p.S)
        proj = p.project(v)
        torch.testing.assert_close(p.dfdg(proj, g), autograd(lambda h: p.loss(h * v), g)[0])
        # Gaussian z: grad_w f = (df/dm) grad m, so the direction step is the Rayleigh step
        m = p.u @ v
        dw = g * (p.backward(proj, v, g) - (p.backward(proj, v, g) @ v) * (p.S @ v))
        torch.testing.assert_close(dw, p.dfdm(proj, g, m) * (p.u - m * (p.S @ v)))


def test_gdnp_direction_step_is_the_rayleigh_step_of_chapter_4(problem):
    w0 = randn(6, seed=8)
    tr = G.gdnp_lanes(problem, w0, 40, [1.0], T_d=1)[0]
    v0 = w0 / s_norm(w0, problem.S)
    expected = v0 + (v0 @ problem.S @ v0) / (2 * problem.L * rayleigh(problem.S, problem.u, v0)) \
        * rayleigh_grad(problem.S, problem.u, v0)
    # one step of GDNP with the theory step lands on the direction of Chapter 4's update
    direction = tr.final / s_norm(tr.final, problem.S)  # (w_0, g_0): the recorded point
    torch.testing.assert_close(direction.abs(), v0.abs())
    w1 = G.gdnp_lanes(problem, w0, 40, [1.0], T_d=2)[0].final
    w1 = w1 / s_norm(w1, problem.S)
    e = expected / s_norm(expected, problem.S)
    assert abs(float(w1 @ problem.S @ e)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("which", ["problem", "sigmoid"])
def test_critical_points_lie_on_the_line_through_S_inv_u(which, request):
    p = request.getfixturevalue(which)
    wt = G.critical_point(p, randn(6, seed=9), 300)
    assert p.grad_norm(wt) < 1e-14
    line = torch.linalg.solve(p.S, p.u)
    cos = (wt @ p.S @ line) / (s_norm(wt, p.S) * s_norm(line, p.S))
    assert cos.item() == pytest.approx(-1.0, abs=1e-12)  # wtilde* = -c S^{-1} u with c > 0
    assert sin_to_line(p.S, p.u, wt) < 1e-8
    assert sin_to_line(p.S, p.u, randn(6, seed=20)) > 0.1


def test_the_sigmoid_objective_is_not_convex(problem, sigmoid):
    assert G.negative_curvature(problem, 3, 5.0, seed=0) == 0
    assert G.negative_curvature(sigmoid, 3, 5.0, seed=0) == 3


def test_bisection_on_a_batch():
    calls = []

    def fn(x):
        calls.append(1)
        return x - torch.tensor([0.3, -0.7, 5.0, -5.0], dtype=DTYPE)

    root = G.bisection(fn, -1.0, 1.0, 10, (4,))
    assert len(calls) == 12  # both ends and T_s midpoints
    assert abs(root[0] - 0.3) <= 2 / 2 ** 11 and abs(root[1] + 0.7) <= 2 / 2 ** 11
    assert root[2] == 1.0 and root[3] == -1.0  # no sign change: the end f decreases towards
    assert abs(float(G.bisection(lambda x: x - 0.3, -1.0, 1.0, 30)) - 0.3) < 1e-8
    with pytest.raises(ValueError, match="T_s must be a positive integer"):
        G.bisection(lambda x: x, -1.0, 1.0, 0)
    T_s = G.bisection_steps(20.0, 1e-6)
    assert 20 * 2.0 ** -T_s <= 1e-6 < 20 * 2.0 ** -(T_s - 1)


def test_cost_is_counted_in_passes_over_the_data(problem):
    # a GDNP step: two passes (projection, gradient) and T_s + 3 one-dimensional evaluations
    calls = {"project": 0, "dfdg": 0, "dfdm": 0, "backward": 0}
    p = G.gaussian_halfspace(6, 10.0, seed=1)
    for name in calls:
        method = getattr(p, name)

        def counted(*a, _m=method, _n=name):
            calls[_n] += 1
            return _m(*a)
        setattr(p, name, counted)
    tr = G.gdnp(p, randn(6, seed=10), 12, T_d=5)
    assert calls == {"project": 5, "dfdg": 5 * 14, "dfdm": 5, "backward": 5}
    np.testing.assert_allclose(np.diff(tr.cost), 2 + (12 + 3) / 6)
    assert p.meter.passes == pytest.approx(tr.cost[-1])
    # a baseline step: one gradient, two passes; recording the curve is free
    tr = G.gd(problem, randn(6, seed=11), 0.1, budget=9)
    np.testing.assert_allclose(np.diff(tr.cost), 2.0)
    assert tr.steps == 5  # stops once the budget is spent


def test_network_gdnp_is_charged_its_cached_cost():
    net, _ = G.teacher_mlp(4, 2, 100, 3.0, seed=1)
    cached = []
    count = net.meter.cached
    net.meter.cached = lambda k=1.0: cached.append(k) or count(k)
    tr = G.gdnp_mlp(net, randn(2, 4, seed=15), 6, 0.3, budget=50, inner=2)
    # per direction step: 2 passes (gradient, new projection) and T_s + 5 one-dimensional
    # evaluations at 1/d pass; k = 2 units, 2 steps per visit; the first round also projects
    step = 2 + (6 + 5) / 4
    np.testing.assert_allclose(np.diff(tr.cost), [2 + 4 * step, 4 * step, 4 * step])
    assert len(cached) == 3 * 4 * (6 + 5) and net.meter.passes == pytest.approx(tr.cost[-1])
    base = G.gd(net, randn(2, 4, seed=16), 0.1, key="loss", budget=7.5)
    np.testing.assert_allclose(np.diff(base.cost), 2 * 2)  # a full gradient of k units


def test_lanes_are_independent_runs(problem):
    wt0 = randn(6, seed=12)
    lanes = G.gd_lanes(problem, wt0, [0.1, 1.0], budget=40)
    for lr, tr in zip([0.1, 1.0], lanes):
        np.testing.assert_allclose(tr.values, G.gd(problem, wt0, lr, budget=40).values)
    # Adam as torch.optim.Adam computes it
    lanes = G.adam_lanes(problem, wt0, [0.05], budget=10)[0]
    param = torch.nn.Parameter(wt0.clone())
    opt = torch.optim.Adam([param], lr=0.05)
    for _ in range(5):
        param.grad = problem._grad(param.data)
        opt.step()
    torch.testing.assert_close(lanes.final, param.data)
    # GD with BN: the same step for w and g, one run per step size
    tr = G.gd_bn_lanes(problem, wt0, [0.3], budget=4)[0]
    w, g = wt0.clone(), torch.tensor(1.0, dtype=DTYPE)
    for _ in range(2):
        dw, dg = G.bn_grads(problem, w, g)
        w, g = w - 0.3 * dw, g - 0.3 * dg
    torch.testing.assert_close(tr.final, bn_weight(w, g, problem.S))


def test_runs_stop_at_the_target_and_selection_has_one_criterion(problem):
    wt0 = randn(6, seed=13)
    target = 1e-6 * problem.grad_norm(wt0)
    runs = dict(zip([0.1, 1.0, 3.0], G.gd_lanes(problem, wt0, [0.1, 1.0, 3.0], budget=2000,
                                                 target=target)))
    best, costs = G.select(runs, target)
    # all lanes stop as soon as one reaches the target: it is the best, the others cannot win
    assert runs[best].values[-1] <= target and costs[best] == runs[best].cost[-1]
    assert all(math.isinf(costs[x]) for x in runs if x != best)
    # among runs that never reach it: the smallest mean log10 over the last quarter
    tails = {0.1: [1.0] * 6 + [1e-2, 1e-2], 1.0: [1.0] * 6 + [1e-1, 1e-5],
             10.0: [1e-9] * 6 + [1e-1, 1e-1], 30.0: [1.0, float("nan")]}
    runs = {x: G.Trace("grad_norm", v, list(range(len(v)))) for x, v in tails.items()}
    best, costs = G.select(runs, 1e-12)
    assert best == 1.0 and all(math.isinf(c) for c in costs.values())


def test_speed_is_decades_per_pass():
    t = np.arange(200)
    tr = G.Trace("grad_norm", list(10.0 ** (-0.1 * t)), list(3.0 * t))
    sp, window = G.speed(tr)
    assert window and sp.estimate == pytest.approx(0.1 / 3) and sp.lo <= sp.estimate <= sp.hi
    slow = G.Trace("grad_norm", list(10.0 ** (-0.001 * t)), list(2.0 * t))
    sp, window = G.speed(slow)  # never reaches 1e-2: the whole run's average rate
    assert not window and sp.estimate == pytest.approx(0.0005)
    flat = G.Trace("grad_norm", [1.0] * 10, list(range(10)))
    assert G.speed(flat)[0].estimate == pytest.approx(1e-12)


def test_gdnp_converges_linearly_down_to_the_bisection_floor(problem):
    w0 = randn(6, seed=10)
    T_s = [8, 14, 20, 26, 32]
    floor = G.bisection_floor(T_s, [G.gdnp(problem, w0, t, T_d=300) for t in T_s])
    assert floor.agrees_with(-1.0, rtol=0.2) and floor.hi - floor.lo < 0.3
    tr = G.gdnp(problem, w0, 45, T_d=250)
    assert tr.values[-1] < 1e-11
    fit = fit_linear_rate(tr.tensor(), upper=1e-2, lower=1e-9)
    assert fit.agrees_with(np.log10(rayleigh_local_rate(problem.S, problem.u)), rtol=0.1)
    assert G.step_rate(tr, lower=1e-9) == fit and is_linear(tr.tensor(), fit)
    assert G.linear(tr, lower=1e-9)
    slowing = G.Trace("grad_norm", [1.0 / (t + 1) ** 3 for t in range(2000)])
    assert not G.linear(slowing, lower=1e-9)
    assert G.step_rate(G.Trace("grad_norm", [1.0, 0.9, 0.8])) is None


@pytest.mark.parametrize("scale", [1e-100, 1e100])
def test_gdnp_is_finite_from_tiny_or_huge_w(problem, scale):
    w0 = randn(6, seed=11)
    tr = G.gdnp(problem, scale * w0, 20, T_d=30)
    ref = G.gdnp(problem, w0, 20, T_d=30)
    assert np.all(np.isfinite(tr.values))
    np.testing.assert_allclose(tr.values, ref.values, rtol=1e-8)


def test_stopping_rule_stops_early(problem):
    tr = G.gdnp(problem, randn(6, seed=12), 40, T_d=500, eps=1e-12)
    assert 10 < tr.steps < 500


def test_bad_input_is_refused(problem):
    w = randn(6)
    with pytest.raises(ValueError, match="T_s must be a positive integer"):
        G.gdnp(problem, w, 0, T_d=10)
    with pytest.raises(ValueError, match="T_d must be a positive integer"):
        G.gdnp(problem, w, 10, T_d=0)
    with pytest.raises(ValueError, match="every mult must be a positive number"):
        G.gdnp(problem, w, 10, T_d=10, mult=-0.1)
    with pytest.raises(ValueError, match="budget .* or a number of steps"):
        G.gdnp(problem, w, 10)
    with pytest.raises(ValueError, match="every lr must be a positive number"):
        G.gd(problem, w, 0.0, budget=10)
    with pytest.raises(ValueError, match="unknown loss"):
        G.gaussian_halfspace(4, 5.0, loss="hinge")
    with pytest.raises(ValueError, match="penalty"):
        G.gaussian_halfspace(4, 5.0, penalty=-1.0)
    with pytest.raises(ValueError, match="positive definite"):
        G.GaussianHalfspace(torch.ones(2, dtype=DTYPE), torch.tensor([[1.0, 2.0], [2.0, 1.0]],
                                                                      dtype=DTYPE))
    with pytest.raises(ValueError, match="nu must be > 2"):
        G.sample_halfspace(4, 5.0, 100, nu=2.0)


def test_gdnp_on_a_tanh_network_converges_linearly():
    net, W_star = G.teacher_mlp(5, 2, 300, 5.0, seed=0)
    assert net.loss(W_star).item() < 1e-30 and net.grad_norm(W_star) < 1e-15
    tr = G.gdnp_mlp(net, randn(2, 5, seed=14), 20, 0.3, budget=4000)
    fit = G.step_rate(tr, lower=1e-9)
    assert fit is not None and is_linear(tr.tensor(), fit)
    assert tr.values[-1] < 1e-8 * tr.values[0]


def test_non_gaussian_problems():
    p = G.digits_halfspace(10)
    assert p.Z.shape == (1797, 10) and p.mu > 0
    t = G.sample_halfspace(4, 5.0, 4000, nu=5.0, seed=0)
    gauss = G.sample_halfspace(4, 5.0, 4000, seed=0)
    assert np.all(stats.kurtosis(t.Z.numpy(), axis=0) > 1.0)  # heavy tails (Gaussian: 0)
    assert np.all(np.abs(stats.kurtosis(gauss.Z.numpy(), axis=0)) < 0.3)
    torch.testing.assert_close(t.S, gauss.S, rtol=0.2, atol=0.3)  # same covariance (roughly)


def test_compare_runs_both_protocols_from_one_start(problem):
    res = G.compare(problem, randn(6, seed=17), [0.1, 1.0, 10.0], budget=60)
    assert set(res["curves"]) == set(G.METHODS) and set(res["untuned"]) == {"gdnp", "gd"}
    starts = {round(t.values[0], 12) for t in [*res["curves"].values(),
                                                *res["untuned"].values()]}
    assert len(starts) == 1  # every method starts at wtilde_0 = w_0 / ||w_0||_S
    assert res["tuned"]["gdnp"][2] == [0.1, 1.0, 10.0]  # GDNP: its multipliers in MULT_RANGE
    assert res["theory_lr"] == pytest.approx(1 / ((0.25 + 0.0) * problem.L))
    zeta = problem.phi.curvature
    assert zeta * G.G_MAX * 2.0 ** -res["T_s"] <= G.FLOOR_SAFETY * res["target"]


def test_experiment_drivers_are_determined_by_their_arguments():
    a = G.halfspace_problems(4, 5.0, 2, seed=3)
    b = G.halfspace_problems(4, 5.0, 2, seed=3)
    assert all(torch.equal(p.S, q.S) and torch.equal(v, w) for (p, v), (q, w) in zip(a, b))
    assert not torch.equal(a[0][1], G.halfspace_problems(4, 5.0, 1, seed=4)[0][1])
    crit = G.critical_points(4, 5.0, 2, 3, 200)
    assert max(r["sin"] for r in crit["rows"]) < 1e-8 and crit["negative"] == 0
    sweep = G.ts_sweep(4, 5.0, 3, 40, [4, 12])
    assert sweep[1].values[-1] < sweep[0].values[-1]
