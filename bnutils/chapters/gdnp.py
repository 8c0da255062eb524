"""Chapter 5, Convergence of GDNP: learning halfspaces and one-hidden-layer tanh networks with
GDNP ([KDL+19] Sec. 4-5, Alg. 1).

Halfspaces: minimise F(wtilde) = E[phi(z^T wtilde)] with z = -y x, so that a positive margin
y x^T wtilde gives a negative argument, and phi the logistic loss phi(t) = log(1 + e^t): convex,
with phi' = sigmoid in (0, 1) and phi'' <= 1/4 (the bounded derivatives [KDL+19] assume). For
z ~ N(u, S), z^T wtilde ~ N(u^T wtilde, ||wtilde||_S^2), so F and its gradient are 1-D Gaussian
expectations, computed to float64 accuracy by quadrature, and by Stein's lemma

    grad F(wtilde) = c1 u + c2 S wtilde,   c1 = E[phi'(z^T wtilde)],  c2 = E[phi''(z^T wtilde)]

so a critical point satisfies wtilde = -(c1/c2) S^{-1} u: it lies on the line through S^{-1} u
([KDL+19] Lemma on the critical points). With wtilde = g w / ||w||_S ([KDL+19] Eq. 3), f(w, g) =
F(g w / ||w||_S) depends on w only through m(w) = u^T w / ||w||_S.

GDNP ([KDL+19] Alg. 1, as we can read it: the step size and stopping rule are UNSURE in our
sources): from w_0, repeat for t = 0, 1, ..., T_d - 1

    g_t     = Bisection(T_s, df/dg(w_t, .), -g_max, g_max)       (length: root of df/dg)
    stop if ||w_t||_S^2 ||grad_w f(w_t, g_t)||_{S^{-1}}^2 <= eps
    w_{t+1} = w_t - s_t grad_w f(w_t, g_t),   s_t = ||w_t||_S^3 / (L |g_t| c1_t |u^T w_t|)

With this s_t the direction update is exactly the Rayleigh-quotient step of Chapter 4 (derived in
the chapter), so the direction converges at the rate 1 - theta_1/L <= 1 - mu/L per step, while
T_s bisection steps leave |g_t - g*(w_t)| <= 2^(-T_s) g_max: the two terms of [KDL+19]'s bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import matplotlib
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from ..infra import report, validate
from ..infra.cache import cached_driver
from ..infra.config import ChapterProfiles
from ..infra.plotting import COLORS, LABELS, done, subplots
from ..infra.report import Below, Claim, MarkdownTable, claims_table, fmt, key_numbers, verdict
from ..measure.linalg import (DTYPE, bn_weight, check_spd, dual_norm, empirical_cov,
                              gaussian_samples, s_norm, spd_matrix)
from ..measure.rayleigh import rayleigh_local_rate, sin_to_line
from ..measure.stats import RateFit, fit_linear_rate, is_linear, slope_ci

PROFILES = ChapterProfiles(
    "05", "Convergence of GDNP",
    quick=dict(n_dim=10, kappa=10.0, n_seeds=3, steps=300,
               bisect_steps=[5, 10, 15, 20, 30, 40],
               lr=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0], n_samples=2000,
               n_units=3, n_mlp_samples=500, n_mlp_evals=2700, mlp_bisect_steps=15,
               critical_steps=3000, n_pca=20),
    full=dict(n_dim=50, kappa=30.0, n_seeds=10, steps=1500,
              bisect_steps=[5, 10, 15, 20, 30, 40],
              lr=[0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0],
              n_samples=50_000, n_units=5, n_mlp_samples=10_000, n_mlp_evals=90_000,
              mlp_bisect_steps=15, critical_steps=15_000, n_pca=20),
)

START_SEED = 1000     # problem ``s`` starts from w_0 ~ N(0, I) drawn with seed START_SEED + s
MLP_START_SEED = 7    # offset of the network's start seed from its problem seed
OFF_START_SEED = 3    # offset of the non-Gaussian problems' start seed from their data seed
MLP_G_MAX = 5.0       # the network's bisection interval [-g_max, g_max]
T_NU = 3.0            # degrees of freedom of the heavy-tailed (Student-t) sample

# ------------------------------------------------------------------------------------------------
# The loss phi and the halfspace objectives
# ------------------------------------------------------------------------------------------------


def phi(t: Tensor) -> Tensor:
    """The logistic loss on the argument z^T wtilde = -y x^T wtilde: log(1 + e^t)."""
    return torch.nn.functional.softplus(t)


def dphi(t: Tensor) -> Tensor:
    return torch.sigmoid(t)


def d2phi(t: Tensor) -> Tensor:
    s = torch.sigmoid(t)
    return s * (1 - s)


class Halfspace:
    """F(wtilde) = E[phi(z^T wtilde)] for z with mean u and covariance S ([KDL+19] Sec. 4).
    Subclasses define the expectation: :class:`GaussianHalfspace` (population, z ~ N(u, S)) and
    :class:`SampleHalfspace` (the mean over a data set)."""

    def __init__(self, u: Tensor, S: Tensor) -> None:
        check_spd(S)
        if u.shape != S.shape[:1]:
            raise ValueError(f"u must have shape ({S.shape[0]},), got {tuple(u.shape)}")
        self.u, self.S = u, S
        eig = torch.linalg.eigvalsh(S)
        self.mu, self.L = float(eig[0]), float(eig[-1])

    def loss(self, wt: Tensor) -> Tensor:
        raise NotImplementedError

    def grad(self, wt: Tensor) -> Tensor:
        raise NotImplementedError

    def mean_dphi(self, wt: Tensor) -> Tensor:
        """c1 = E[phi'(z^T wtilde)], used by the GDNP step size."""
        raise NotImplementedError

    def grad_norm(self, wt: Tensor) -> float:
        """||grad F(wtilde)||_{S^{-1}}: parametrisation-free, comparable across methods."""
        return dual_norm(self.grad(wt), self.S)


class GaussianHalfspace(Halfspace):
    """z ~ N(u, S): F, grad F and c1 as 1-D expectations E[h(a + b eps)], eps ~ N(0, 1),
    a = u^T wtilde, b = ||wtilde||_S, by the trapezoid rule on ``n_nodes`` equispaced points of
    [-10, 10] (geometrically convergent for analytic integrands; Gauss-Hermite, with nodes ~0.2
    apart, cannot resolve phi(a + b eps) once b ~ 10); grad F by Stein's lemma."""

    def __init__(self, u: Tensor, S: Tensor, n_nodes: int = 2001) -> None:
        super().__init__(u, S)
        self.nodes = torch.linspace(-10, 10, n_nodes, dtype=DTYPE, device=S.device)
        dens = torch.exp(-self.nodes ** 2 / 2) / np.sqrt(2 * np.pi)
        self.weights = dens * (self.nodes[1] - self.nodes[0])

    def expect(self, h: Callable[[Tensor], Tensor], wt: Tensor) -> Tensor:
        """E[h(z^T wtilde)] for z ~ N(u, S)."""
        return self.weights @ h(self.u @ wt + s_norm(wt, self.S) * self.nodes)

    def loss(self, wt: Tensor) -> Tensor:
        return self.expect(phi, wt)

    def mean_dphi(self, wt: Tensor) -> Tensor:
        return self.expect(dphi, wt)

    def grad(self, wt: Tensor) -> Tensor:
        return self.expect(dphi, wt) * self.u + self.expect(d2phi, wt) * (self.S @ wt)


class SampleHalfspace(Halfspace):
    """F(wtilde) = mean_i phi(z_i^T wtilde) over the rows z_i of Z; u and S are Z's mean and
    (biased) covariance, so the BN reparametrisation uses the full-batch statistics."""

    def __init__(self, Z: Tensor) -> None:
        super().__init__(Z.mean(0), empirical_cov(Z))
        self.Z = Z

    def loss(self, wt: Tensor) -> Tensor:
        return phi(self.Z @ wt).mean()

    def mean_dphi(self, wt: Tensor) -> Tensor:
        return dphi(self.Z @ wt).mean()

    def grad(self, wt: Tensor) -> Tensor:
        return self.Z.T @ dphi(self.Z @ wt) / self.Z.shape[0]


def gaussian_halfspace(d: int, kappa: float, seed: int = 0, snr: float = 1.0,
                       device: torch.device | str = "cpu") -> GaussianHalfspace:
    """z ~ N(u, S): S from :func:`bnutils.measure.linalg.spd_matrix` (spectrum [1, kappa]), u random
    and scaled so that u^T S^{-1} u = snr^2 (the classes overlap, so the minimiser is bounded)."""
    validate.positive_number("snr", snr)
    gen = torch.Generator().manual_seed(seed)
    S = spd_matrix(d, kappa, gen)
    u = torch.randn(d, generator=gen, dtype=DTYPE)
    u = u * snr / torch.sqrt(u @ torch.linalg.solve(S, u))
    return GaussianHalfspace(u.to(device), S.to(device))


def sample_halfspace(d: int, kappa: float, n: int, nu: float | None = None, seed: int = 0,
                     device: torch.device | str = "cpu") -> SampleHalfspace:
    """n samples z = u + S^{1/2} t, u and S as in :func:`gaussian_halfspace`, t with i.i.d.
    N(0, 1) coordinates (``nu=None``) or Student-t(nu) coordinates scaled to unit variance (heavy
    tailed and, unlike a multivariate t, not elliptical)."""
    if nu is not None and not nu > 2:
        raise ValueError(f"nu must be > 2 (finite variance) or None (Gaussian), got {nu!r}")
    p = gaussian_halfspace(d, kappa, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    if nu is None:
        T = torch.randn(n, d, generator=gen, dtype=DTYPE)
    else:  # t = N / sqrt(chi2_nu / nu), chi2_nu = 2 Gamma(nu/2), from the seeded generator
        chi2 = torch.from_numpy(np.random.default_rng(seed + 1).chisquare(nu, (n, d)))
        T = torch.randn(n, d, generator=gen, dtype=DTYPE) / torch.sqrt(chi2 / nu)
        T = T / np.sqrt(nu / (nu - 2))
    lam, V = torch.linalg.eigh(p.S.cpu())
    Z = p.u.cpu() + T @ (V * lam.sqrt()) @ V.T
    return SampleHalfspace(Z.to(device))


def digits_halfspace(n_components: int = 20, device: torch.device | str = "cpu"
                     ) -> SampleHalfspace:
    """sklearn's 8x8 digits (1,797 images), even (y = +1) against odd digits, pixels projected on
    their top ``n_components`` principal components (the raw pixels have a singular covariance);
    z = -y x."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    X, digit = load_digits(return_X_y=True)
    X = PCA(n_components, random_state=0).fit_transform(X / 16.0)
    y = np.where(digit % 2 == 0, 1.0, -1.0)
    return SampleHalfspace(torch.tensor(-y[:, None] * X, dtype=DTYPE, device=device))


# ------------------------------------------------------------------------------------------------
# The BN parametrisation of any objective with a gradient
# ------------------------------------------------------------------------------------------------


def bn_grads(problem, w: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """(grad_w f, df/dg) for f(w, g) = F(g w / ||w||_S) by the chain rule from grad F:
    df/dg = grad F . w/||w||_S and grad_w f = (g/||w||_S)(grad F - (df/dg) S w/||w||_S);
    row by row when w holds one unit per row."""
    n = s_norm(w, problem.S)[..., None]
    G = problem.grad(bn_weight(w, g, problem.S))
    v = w / n
    dg = (G * v).sum(-1)
    return g[..., None] / n * (G - dg[..., None] * (v @ problem.S)), dg


def bisection(fn: Callable[[float], float], a: float, b: float, T_s: int) -> float:
    """Classical bisection ([KDL+19] Alg. 1, "Bisection(T_s, ...)") for a root of an increasing
    ``fn`` on [a, b]: T_s halvings, then the midpoint, so |result - root| <= (b - a) 2^-(T_s+1).
    If ``fn`` does not change sign on [a, b], the endpoint towards which f decreases is returned
    (the length is then held at the box)."""
    validate.positive_int("T_s", T_s)
    if not a < b:
        raise ValueError(f"need a < b, got [{a}, {b}]")
    if fn(a) >= 0:
        return a
    if fn(b) <= 0:
        return b
    for _ in range(T_s):
        mid = (a + b) / 2
        a, b = (mid, b) if fn(mid) < 0 else (a, mid)
    return (a + b) / 2


def halfspace_step(problem: Halfspace, w: Tensor, g: Tensor) -> Tensor:
    """s_t = ||w||_S^3 / (L |g| c1 |u^T w|): the GDNP step ([KDL+19] Alg. 1, form
    ||w||_S^3 / (L g h(w, g)); h read as c1 |u^T w|, UNSURE) that turns the direction update into
    the Rayleigh step of Chapter 4."""
    n = s_norm(w, problem.S)
    c1 = problem.mean_dphi(bn_weight(w, g, problem.S))
    return n ** 3 / (problem.L * g.abs() * c1 * (problem.u @ w).abs())


@dataclass
class Trace:
    """Per-iteration records of a run: the loss F and ||grad F||_{S^{-1}} at the effective weight;
    ``final`` is the last effective weight wtilde."""

    grad_norm: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    final: Tensor | None = None

    def record(self, problem, wt: Tensor) -> None:
        self.grad_norm.append(problem.grad_norm(wt))
        self.loss.append(float(problem.loss(wt)))

    def tensor(self, key: str = "grad_norm") -> Tensor:
        return torch.tensor(getattr(self, key), dtype=DTYPE)


def gdnp(problem, w0: Tensor, T_d: int, T_s: int, *, step: str | float = "paper",
         g_max: float = 20.0, eps: float = 0.0) -> tuple[Tensor, Tensor, Trace]:
    """GDNP ([KDL+19] Alg. 1) for one unit; returns (w, g, history) after T_d direction steps.

    ``step="paper"``: s_t from :func:`halfspace_step` (halfspace problems only); a number eta:
    the scale-free step s_t = eta ||w_t||_S^2 / |g_t|, under which the direction moves by
    eta ||P grad F|| whatever ||w_t|| and g_t are. The direction loop stops early once
    ||w_t||_S^2 ||grad_w f(w_t, g_t)||^2_{S^{-1}} <= eps (our reading of the stopping rule).
    """
    validate.positive_int("T_d", T_d)
    validate.positive_int("T_s", T_s)
    validate.positive_number("g_max", g_max)
    if step != "paper":
        validate.positive_number("step", step)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    w, hist = w0.clone(), Trace()
    for _ in range(T_d):
        g = _length(problem, w, T_s, g_max)
        dw, _ = bn_grads(problem, w, g)
        hist.record(problem, bn_weight(w, g, problem.S))
        if float(s_norm(w, problem.S)) ** 2 * dual_norm(dw, problem.S) ** 2 <= eps:
            break
        s = halfspace_step(problem, w, g) if step == "paper" \
            else step * s_norm(w, problem.S) ** 2 / g.abs()
        w = w - s * dw
    g = _length(problem, w, T_s, g_max)
    hist.final = bn_weight(w, g, problem.S)
    return w, g, hist


def _length(problem, w: Tensor, T_s: int, g_max: float) -> Tensor:
    """g = Bisection(T_s) on df/dg(w, .) over [-g_max, g_max]."""
    v = w / s_norm(w, problem.S)
    g = bisection(lambda g: float(problem.grad(g * v) @ v), -g_max, g_max, T_s)
    return torch.tensor(g, dtype=DTYPE, device=w.device)


# ------------------------------------------------------------------------------------------------
# Baselines: GD, GD with BN, Adam; tuned on a grid of step sizes
# ------------------------------------------------------------------------------------------------


def gd(problem, wt0: Tensor, steps: int, lr: float) -> Trace:
    """Plain gradient descent on F(wtilde)."""
    validate.positive_int("steps", steps)
    validate.positive_number("lr", lr)
    wt, hist = wt0.clone(), Trace()
    for _ in range(steps):
        hist.record(problem, wt)
        wt = wt - lr * problem.grad(wt)
    hist.final = wt
    return hist


def gd_bn(problem, w0: Tensor, g0: float, steps: int, lr: float) -> Trace:
    """Gradient descent on f(w, g) = F(g w / ||w||_S), the same step for w and g: what training
    a BN unit with GD does ([IS15] Alg. 1 with full-batch statistics)."""
    validate.positive_int("steps", steps)
    validate.positive_number("lr", lr)
    w = w0.clone()
    g = torch.full(w.shape[:-1], float(g0), dtype=DTYPE, device=w.device)
    hist = Trace()
    for _ in range(steps):
        hist.record(problem, bn_weight(w, g, problem.S))
        dw, dg = bn_grads(problem, w, g)
        w, g = w - lr * dw, g - lr * dg
    hist.final = bn_weight(w, g, problem.S)
    return hist


def adam(problem, wt0: Tensor, steps: int, lr: float) -> Trace:
    """Adam (Kingma & Ba 2015, default betas) on F(wtilde) with exact gradients."""
    validate.positive_int("steps", steps)
    validate.positive_number("lr", lr)
    param = torch.nn.Parameter(wt0.clone())
    opt = torch.optim.Adam([param], lr=lr)
    hist = Trace()
    for _ in range(steps):
        with torch.no_grad():
            hist.record(problem, param.data)
            param.grad = problem.grad(param.data)
        opt.step()
    hist.final = param.data.clone()
    return hist


def tune(run: Callable[[float], Trace], lrs: list[float], key: str = "grad_norm"
         ) -> tuple[float, Trace, dict]:
    """Run ``run(lr)`` for every step size and keep the best: the smallest mean of log10 of the
    record ``key`` (gradient norm, or loss when the optimum is 0) over the last quarter of the
    run (a diverged run counts as infinite). Returns (best lr, its history, {lr: score})."""
    scores, runs = {}, {}
    for lr in lrs:
        runs[lr] = run(lr)
        e = runs[lr].tensor(key)
        tail = e[-max(1, len(e) // 4):]
        scores[lr] = float(tail.log10().mean()) if torch.isfinite(tail).all() and (tail > 0).all() \
            else float("inf")
    best = min(lrs, key=lambda lr: scores[lr])
    return best, runs[best], scores


# ------------------------------------------------------------------------------------------------
# One hidden layer of tanh units ([KDL+19] Sec. 5)
# ------------------------------------------------------------------------------------------------


class TanhMLP:
    """F(x) = sum_i theta_i tanh(x^T wtilde_i) with fixed output weights theta, squared loss
    (1/2n) sum (F(x_j) - y_j)^2 over a data set X (rows x_j), input weights wtilde (one row per
    unit). S is X's (biased) covariance: the BN statistics of the full batch."""

    def __init__(self, X: Tensor, y: Tensor, theta: Tensor) -> None:
        self.X, self.y, self.theta = X, y, theta
        self.S = empirical_cov(X)
        check_spd(self.S)

    def loss(self, Wt: Tensor) -> Tensor:
        return 0.5 * ((torch.tanh(self.X @ Wt.T) @ self.theta - self.y) ** 2).mean()

    def grad(self, Wt: Tensor) -> Tensor:
        """dloss/dwtilde_i = mean_j r_j theta_i (1 - tanh^2(x_j^T wtilde_i)) x_j, r = F - y."""
        h = torch.tanh(self.X @ Wt.T)
        r = h @ self.theta - self.y
        return ((r[:, None] * (1 - h ** 2)) * self.theta).T @ self.X / self.X.shape[0]

    def grad_norm(self, Wt: Tensor) -> float:
        return dual_norm(self.grad(Wt), self.S)

    def unit(self, Wt: Tensor, i: int) -> "_Unit":
        """The objective as a function of unit i's weights alone, the others held at Wt."""
        return _Unit(self, Wt, i)


class _Unit:
    def __init__(self, net: TanhMLP, Wt: Tensor, i: int) -> None:
        self.net, self.Wt, self.i, self.S = net, Wt, i, net.S

    def _with(self, wt: Tensor) -> Tensor:
        Wt = self.Wt.clone()
        Wt[self.i] = wt
        return Wt

    def grad(self, wt: Tensor) -> Tensor:
        return self.net.grad(self._with(wt))[self.i]


def teacher_mlp(d: int, m: int, n: int, kappa: float, seed: int = 0,
                device: torch.device | str = "cpu") -> tuple[TanhMLP, Tensor]:
    """A realisable problem: x ~ N(0, S) (spectrum [1, kappa]), y from a teacher with m tanh
    units of S-norm 1 and output weights theta = +-1; the student shares theta. Returns the
    problem and the teacher's weights."""
    gen = torch.Generator().manual_seed(seed)
    S = spd_matrix(d, kappa, gen)
    X = gaussian_samples(n, S, gen)
    W = torch.randn(m, d, generator=gen, dtype=DTYPE)
    W = W / s_norm(W, S)[:, None]
    theta = torch.where(torch.arange(m) % 2 == 0, 1.0, -1.0).to(DTYPE)
    y = torch.tanh(X @ W.T) @ theta
    return TanhMLP(X.to(device), y.to(device), theta.to(device)), W.to(device)


def gdnp_mlp(net: TanhMLP, W0: Tensor, rounds: int, T_s: int, eta: float,
             g_max: float = MLP_G_MAX) -> Trace:
    """GDNP unit by unit ([KDL+19] Sec. 5): each round visits the units in turn; a visit sets the
    unit's length by bisection (T_s steps on [-g_max, g_max]) and takes one direction step with
    the scale-free step eta ||w_i||_S^2 / |g_i|, the other units fixed. Records the whole network's
    loss and ||grad||_{S^{-1}} before every round (one update of every unit), from g = 1."""
    validate.positive_int("rounds", rounds)
    validate.positive_int("T_s", T_s)
    validate.positive_number("eta", eta)
    W = W0.clone()
    g = torch.ones(W.shape[0], dtype=DTYPE, device=W.device)
    hist = Trace()
    for _ in range(rounds):
        hist.record(net, bn_weight(W, g, net.S))
        for i in range(W.shape[0]):
            unit = net.unit(bn_weight(W, g, net.S), i)
            g[i] = _length(unit, W[i], T_s, g_max)
            dw, _ = bn_grads(unit, W[i], g[i])
            W[i] = W[i] - eta * s_norm(W[i], net.S) ** 2 / g[i].abs() * dw
    hist.final = bn_weight(W, g, net.S)
    return hist


# ------------------------------------------------------------------------------------------------


def mlp_round_cost(k: int, T_s: int) -> int:
    """Gradient evaluations of the network in one round of :func:`gdnp_mlp` (k units): per unit,
    T_s + 2 for the bisection (both ends and T_s midpoints) and 1 for the direction step."""
    return k * (T_s + 3)


def compare(problem, w0: Tensor, steps: int, T_s: int, lrs: list[float],
            g_max: float = MLP_G_MAX) -> dict:
    """GDNP against GD, GD with BN and Adam, from the same start (wtilde_0 = w_0 / ||w_0||_S row
    by row, g_0 = 1). On a halfspace: ``steps`` gradient steps for the baselines and ``steps``
    direction steps for GDNP (step "paper"). On a :class:`TanhMLP`, ``steps`` is a budget of
    gradient evaluations shared by all methods: ``steps`` iterations of each baseline and
    steps // :func:`mlp_round_cost` rounds of :func:`gdnp_mlp` (bisection on [-g_max, g_max]).
    Each baseline, and GDNP's eta on a network, runs at its best step size from ``lrs``
    (:func:`tune`; scored by the gradient norm, by the loss on a network, whose optimum is 0).
    Returns {"curves": {method: Trace}, "tuned": {method: (lr, scores)},
    "cost": {method: gradient evaluations per recorded step}}."""
    wt0 = w0 / s_norm(w0, problem.S)[..., None]
    runs = {"gd": lambda lr: gd(problem, wt0, steps, lr),
            "bn": lambda lr: gd_bn(problem, w0, 1.0, steps, lr),
            "adam": lambda lr: adam(problem, wt0, steps, lr)}
    network = isinstance(problem, TanhMLP)
    cost = {"gd": 1, "bn": 1, "adam": 1, "gdnp": 1}
    if network:
        cost["gdnp"] = mlp_round_cost(w0.shape[0], T_s)
        if steps < cost["gdnp"]:
            raise ValueError(f"a budget of {steps} gradient evaluations is less than one GDNP "
                             f"round ({cost['gdnp']})")
        runs["gdnp"] = lambda eta: gdnp_mlp(problem, w0, steps // cost["gdnp"], T_s, eta, g_max)
    curves, tuned = {}, {}
    for name, run in tqdm(runs.items(), desc="methods"):
        lr, curves[name], scores = tune(run, lrs, key="loss" if network else "grad_norm")
        tuned[name] = (lr, scores)
    if not network:
        curves["gdnp"] = gdnp(problem, w0, steps, T_s)[2]
    return {"curves": curves, "tuned": tuned, "cost": cost}


def critical_point(problem: Halfspace, wt0: Tensor, steps: int) -> Tensor:
    """A critical point of F found without using its structure: ``steps`` of plain GD at
    lr = 4 / lambda_max(S + u u^T), one over the smoothness bound
    E[phi''(z^T wtilde) z z^T] <= E[z z^T] / 4."""
    lr = 4 / float(torch.linalg.eigvalsh(problem.S + torch.outer(problem.u, problem.u))[-1])
    return gd(problem, wt0, steps, lr).final


def bisection_floor(T_s: list[int], hists: list[Trace], tail: float = 0.2) -> RateFit:
    """The floor of GDNP's gradient norm (median over the last ``tail`` of each run) against the
    number of bisection steps: the slope of log2(floor) per bisection step, with a 95% t CI.
    [KDL+19]'s bound predicts a floor proportional to 2^(-T_s): slope -1."""
    floors = [float(h.tensor()[-max(1, int(tail * len(h.grad_norm))):].median()) for h in hists]
    return RateFit(*slope_ci(np.array(T_s), np.log2(floors)), min(T_s), max(T_s), len(T_s), 0.95)


def linear_rate(hist: Trace, upper: float = 1e-2, lower: float = 1e-10,
                key: str = "grad_norm") -> RateFit | None:
    """:func:`bnutils.measure.stats.fit_linear_rate` of the record ``key``, or None when the run
    never gets below ``upper`` times its start (no linear phase to fit)."""
    try:
        return fit_linear_rate(hist.tensor(key), upper=upper, lower=lower)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------
# The experiments of Chapter 5: every run fully described by its arguments (cached by them)
# ------------------------------------------------------------------------------------------------

METHODS = ("gdnp", "gd", "bn", "adam")


def _start(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu") -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=DTYPE).to(device)


def halfspace_problems(n_dim: int, kappa: float, n_seeds: int, seed: int = 0,
                       device: torch.device | str = "cpu"
                       ) -> list[tuple[GaussianHalfspace, Tensor]]:
    """(problem, w_0) for the seeds seed..seed+n_seeds-1: :func:`gaussian_halfspace` and a start
    w_0 ~ N(0, I) drawn with seed START_SEED + s."""
    validate.positive_int("n_seeds", n_seeds)
    return [(gaussian_halfspace(n_dim, kappa, seed=s, device=device),
             _start((n_dim,), START_SEED + s, device)) for s in range(seed, seed + n_seeds)]


@cached_driver
def critical_sines(n_dim: int, kappa: float, n_seeds: int, seed: int, steps: int,
                   device: torch.device | str = "cpu") -> list[float]:
    """|sin| of the S-angle between S^{-1}u and the critical point found by ``steps`` of GD
    (:func:`critical_point`), one per problem of :func:`halfspace_problems` ([KDL+19] Sec. 4)."""
    return [sin_to_line(p.S, p.u, critical_point(p, w0, steps))
            for p, w0 in halfspace_problems(n_dim, kappa, n_seeds, seed, device)]


@cached_driver
def ts_sweep(n_dim: int, kappa: float, seed: int, steps: int, bisect_steps: list[int],
             device: torch.device | str = "cpu") -> list[Trace]:
    """GDNP for ``steps`` direction steps on the first problem, once per T_s in ``bisect_steps``."""
    (p, w0), = halfspace_problems(n_dim, kappa, 1, seed, device)
    return [gdnp(p, w0, steps, T_s)[2] for T_s in bisect_steps]


@cached_driver
def gaussian_comparisons(n_dim: int, kappa: float, n_seeds: int, seed: int, steps: int, T_s: int,
                         lrs: list[float], device: torch.device | str = "cpu") -> list[dict]:
    """:func:`compare` on every problem of :func:`halfspace_problems`."""
    return [compare(p, w0, steps, T_s, lrs)
            for p, w0 in halfspace_problems(n_dim, kappa, n_seeds, seed, device)]


@cached_driver
def mlp_comparison(n_dim: int, n_units: int, n_samples: int, kappa: float, seed: int,
                   n_evals: int, T_s: int, lrs: list[float], g_max: float = MLP_G_MAX,
                   device: torch.device | str = "cpu") -> dict:
    """:func:`compare` on :func:`teacher_mlp` (seed ``seed``) from W_0 ~ N(0, I) (seed
    seed + MLP_START_SEED), all methods with the same budget of ``n_evals`` gradient evaluations."""
    net, _ = teacher_mlp(n_dim, n_units, n_samples, kappa, seed=seed, device=device)
    W0 = _start((n_units, n_dim), seed + MLP_START_SEED, device)
    return compare(net, W0, n_evals, T_s, lrs, g_max)


@cached_driver
def off_gaussian(n_dim: int, kappa: float, n_samples: int, seed: int, steps: int,
                 critical_steps: int, T_s: int, lrs: list[float], nu: float = T_NU,
                 n_pca: int = 20) -> dict[str, dict]:
    """:func:`compare` on three finite samples: Gaussian (control), Student-t(nu) coordinates
    (:func:`sample_halfspace`) and the digits on ``n_pca`` principal components. For each:
    {"res": compare's result, "sin": :func:`bnutils.measure.rayleigh.sin_to_line` of the sample
    minimiser (``critical_steps`` of GD), "theta": the Gaussian theory's log10 rate
    log10(1 - theta_1/L) from the sample S, u}."""
    sets = {"Gaussian sample": sample_halfspace(n_dim, kappa, n_samples, seed=seed),
            f"Student-t({nu:g}) sample": sample_halfspace(n_dim, kappa, n_samples, nu=nu,
                                                          seed=seed),
            f"digits (PCA {n_pca})": digits_halfspace(n_pca)}
    out = {}
    for name, p in sets.items():
        w0 = _start((p.S.shape[0],), seed + OFF_START_SEED)
        out[name] = dict(res=compare(p, w0, steps, T_s, lrs),
                         sin=sin_to_line(p.S, p.u, critical_point(p, w0, critical_steps)),
                         theta=float(np.log10(rayleigh_local_rate(p.S, p.u))))
    return out


def rate_table(results: list[dict], names: list[str], lrs: list[float], labels: dict[str, str],
               key: str = "grad_norm") -> pd.DataFrame:
    """One row per (problem, method) of :func:`compare` results: the tuned step size (and whether
    it sits at the edge of the grid ``lrs``), the final gradient norm and loss, the gradient
    evaluations spent, the :func:`linear_rate` of record ``key`` with its CI, and
    :func:`bnutils.measure.stats.is_linear`."""
    rows = []
    for name, res in zip(names, results):
        for m in METHODS:
            h = res["curves"][m]
            fit = linear_rate(h, upper=1e-2, lower=1e-9, key=key)
            lr = res["tuned"][m][0] if m in res["tuned"] else None
            rows.append({"problem": name, "method": labels[m],
                         "step size": "derived" if lr is None else f"{lr:g}",
                         "at grid edge": lr is not None and lr in (min(lrs), max(lrs)),
                         "gradient evals": len(h.loss) * res["cost"][m],
                         "final grad norm": h.grad_norm[-1], "final loss": h.loss[-1],
                         "slope": None if fit is None else fit.slope,
                         "95% CI": "-" if fit is None else f"[{fit.lo:.3g}, {fit.hi:.3g}]",
                         "linear": is_linear(h.tensor(key), fit)})
    return pd.DataFrame(rows)


def table_row(table: pd.DataFrame, problem: str, label: str) -> pd.Series:
    """The row of :func:`rate_table` for one problem and method label."""
    return table[(table["problem"] == problem) & (table["method"] == label)].iloc[0]


def plot_compare(ax, res: dict, title: str, labels: dict[str, str], colors: dict[str, str],
                 key: str = "grad_norm") -> None:
    """Curves of :func:`compare` against gradient evaluations (GDNP and GD with BN share a colour;
    GDNP is drawn thick, BN dashed)."""
    style = {"gdnp": dict(lw=2.2), "bn": dict(ls="--"), "gd": {}, "adam": {}}
    for m in METHODS:
        lr = res["tuned"].get(m, (None,))[0]
        y = getattr(res["curves"][m], key)
        ax.semilogy(np.arange(len(y)) * res["cost"][m], y, color=colors[m],
                    label=labels[m] + ("" if lr is None else f" (lr {lr:g})"), **style[m])
    ax.set_title(title)
    ax.set_xlabel("gradient evaluations")
    ax.legend(fontsize="small")


def steeper(table: pd.DataFrame, problem: str, a: str, b: str) -> bool:
    """True when method label ``a`` has a steeper fitted slope than ``b`` on ``problem`` in a
    :func:`rate_table` (a method with no linear phase counts as slope 0)."""
    slope = [table_row(table, problem, m)["slope"] for m in (a, b)]
    sa, sb = (0.0 if pd.isna(x) else x for x in slope)
    return sa < sb


def rate_summary(row: pd.Series) -> str:
    """'slope s [lo, hi]' of a :func:`rate_table` row, or 'no linear phase'."""
    if pd.isna(row["slope"]):
        return "no linear phase"
    return f'slope {row["slope"]:.3g} {row["95% CI"]}'


# ------------------------------------------------------------------------------------------------
# The sections of the chapter
# ------------------------------------------------------------------------------------------------

NAMES = {**LABELS, "bn": "GD with BN"}
BASELINES = ("gd", "bn", "adam")
#: Thresholds of the claims, written once.
ON_LINE = Below(1e-8)     # sin of the angle between a critical point and the line S^-1 u
RATE_RTOL = 0.10          # a fitted rate "agrees" when its CI overlaps the prediction +- 10%
TABLE_FORMAT = {"final grad norm": "{:.2e}", "final loss": "{:.4g}", "slope": "{:.4f}",
                "predicted (Gaussian theory)": "{:.4f}"}


def setup(namespace: dict[str, Any]):
    """Configure the chapter from its notebook's parameters (:func:`bnutils.infra.report.setup`);
    the problems are tiny, so one thread."""
    cfg = report.setup(PROFILES, namespace)
    torch.set_num_threads(1)
    return cfg


def _problem(cfg) -> dict[str, Any]:
    return dict(n_dim=cfg.n_dim, kappa=cfg.kappa, seed=cfg.seed, device=str(cfg.device))


def styled(table: pd.DataFrame):
    """A rate table as the chapter shows it."""
    return table.style.format(TABLE_FORMAT, na_rep="-").hide(axis="index")


def critical_section(cfg) -> dict[str, Any]:
    """:func:`critical_sines` on the chapter's Gaussian problems."""
    sines = critical_sines(n_seeds=cfg.n_seeds, steps=cfg.critical_steps, **_problem(cfg))
    seeds = range(cfg.seed, cfg.seed + cfg.n_seeds)
    return {"sines": sines, "max_sin": max(sines),
            "table": pd.DataFrame({"seed": list(seeds), "sin(angle to S^-1 u)": sines})}


def ts_section(cfg) -> dict[str, Any]:
    """:func:`ts_sweep` on the first problem; the fitted rate at the largest T_s, the rates
    predicted from theta_1 and from mu, and the bisection floor's slope."""
    sweep = ts_sweep(steps=cfg.steps, bisect_steps=cfg.bisect_steps, **_problem(cfg))
    p0 = halfspace_problems(n_seeds=1, **_problem(cfg))[0][0]
    return {"sweep": sweep, "theta_rate": np.log10(rayleigh_local_rate(p0.S, p0.u)),
            "bound_rate": np.log10(1 - p0.mu / p0.L),
            "fit_best": linear_rate(sweep[-1], upper=1e-2, lower=1e-9),
            "floor": bisection_floor(cfg.bisect_steps, sweep)}


def ts_figure(cfg, ts: dict[str, Any]):
    best, fit = ts["sweep"][-1], ts["fit_best"]
    fig, ax = subplots(width=5.0, height=3.2)
    cmap = matplotlib.colormaps["viridis"]
    for i, (T_s, h) in enumerate(zip(cfg.bisect_steps, ts["sweep"])):
        ax.semilogy(h.grad_norm, color=cmap(i / max(1, len(ts["sweep"]) - 1)),
                    label=f"$T_s$ = {T_s}")
    t = np.arange(cfg.steps)
    ax.semilogy(t, best.grad_norm[fit.first] * 10 ** (ts["theta_rate"] * (t - fit.first)), ":",
                color=COLORS["theory"], label=r"slope $\log_{10}(1-\theta_1/L)$")
    ax.set_ylim(max(1e-16, min(best.grad_norm) / 10), 2 * max(best.grad_norm))
    ax.set_xlabel("direction steps $T_d$")
    ax.set_ylabel(r"$\|\nabla F(\tilde w)\|_{S^{-1}}$")
    ax.legend(fontsize="small", ncol=2)
    return done(fig)


def gaussian_section(cfg) -> dict[str, Any]:
    """:func:`gaussian_comparisons` with GDNP at the largest T_s, and their rate table."""
    T_s = max(cfg.bisect_steps)
    comparisons = gaussian_comparisons(n_seeds=cfg.n_seeds, steps=cfg.steps, T_s=T_s,
                                       lrs=cfg.lr, **_problem(cfg))
    seeds = range(cfg.seed, cfg.seed + cfg.n_seeds)
    names = [f"Gaussian, seed {s}" for s in seeds]
    table = rate_table(comparisons, names, cfg.lr, NAMES)
    mean_slope = table.groupby("method", sort=False)["slope"].mean()
    problems = [p for p, _ in halfspace_problems(n_seeds=cfg.n_seeds, **_problem(cfg))]
    thetas = [np.log10(rayleigh_local_rate(p.S, p.u)) for p in problems]
    fits = [linear_rate(res["curves"]["gdnp"], upper=1e-2, lower=1e-9) for res in comparisons]
    return {"comparisons": comparisons, "names": names, "table": table, "T_s": T_s,
            "mean_slope": mean_slope, "base": mean_slope.drop(NAMES["gdnp"]),
            "agree": [f is not None and f.agrees_with(th, rtol=RATE_RTOL)
                      for f, th in zip(fits, thetas)],
            "faster_than": {m: sum(steeper(table, n, NAMES["gdnp"], NAMES[m]) for n in names)
                            for m in BASELINES}}


def gaussian_figure(cfg, g: dict[str, Any]):
    fig, axes = subplots(1, min(3, len(g["comparisons"])), width=3.6, height=3.0, sharey=True)
    axes = np.ravel(axes)
    for ax, res, s in zip(axes, g["comparisons"], range(cfg.seed, cfg.seed + cfg.n_seeds)):
        plot_compare(ax, res, f"Gaussian halfspace, seed {s}", NAMES, COLORS)
    axes[0].set_ylabel(r"$\|\nabla F(\tilde w)\|_{S^{-1}}$")
    return done(fig)


def mlp_section(cfg) -> dict[str, Any]:
    """:func:`mlp_comparison` with the chapter's parameters, and its rate table (on the loss)."""
    res = mlp_comparison(n_dim=cfg.n_dim, n_units=cfg.n_units, n_samples=cfg.n_mlp_samples,
                         kappa=cfg.kappa, seed=cfg.seed, n_evals=cfg.n_mlp_evals,
                         T_s=cfg.mlp_bisect_steps, lrs=cfg.lr, g_max=MLP_G_MAX,
                         device=str(cfg.device))
    table = rate_table([res], ["tanh network"], cfg.lr, NAMES, key="loss")
    best = min(BASELINES, key=lambda m: table_row(table, "tanh network", NAMES[m])["final loss"])
    return {"res": res, "table": table, "best_base": best,
            "gdnp_row": table_row(table, "tanh network", NAMES["gdnp"]),
            "best_row": table_row(table, "tanh network", NAMES[best])}


def mlp_figure(m: dict[str, Any]):
    fig, axes = subplots(1, 2, width=4.2, height=3.2)
    axes = np.ravel(axes)
    plot_compare(axes[0], m["res"], "training loss (optimum 0)", NAMES, COLORS, key="loss")
    plot_compare(axes[1], m["res"], "gradient norm", NAMES, COLORS)
    axes[0].set_ylabel(r"$\mathcal{L}(\tilde W)$")
    axes[1].set_ylabel(r"$\|\nabla \mathcal{L}\|_{S^{-1}}$")
    return done(fig)


def off_section(cfg) -> dict[str, Any]:
    """:func:`off_gaussian` with the chapter's parameters and its rate table, with GDNP's rate as
    the Gaussian theory would predict it from the sample moments."""
    off = off_gaussian(n_dim=cfg.n_dim, kappa=cfg.kappa, n_samples=cfg.n_samples, seed=cfg.seed,
                       steps=cfg.steps, critical_steps=cfg.critical_steps,
                       T_s=max(cfg.bisect_steps), lrs=cfg.lr, nu=T_NU, n_pca=cfg.n_pca)
    table = rate_table([v["res"] for v in off.values()], list(off), cfg.lr, NAMES)
    table["predicted (Gaussian theory)"] = [
        off[n]["theta"] if m == NAMES["gdnp"] else np.nan
        for n, m in zip(table["problem"], table["method"])]
    gauss, t_name, d_name = off
    fits = {name: linear_rate(off[name]["res"]["curves"]["gdnp"], upper=1e-2, lower=1e-9)
            for name in (t_name, d_name)}
    return {"off": off, "table": table, "names": (gauss, t_name, d_name), "fits": fits}


def off_figure(o: dict[str, Any]):
    fig, axes = subplots(1, 3, width=3.6, height=3.0)
    axes = np.ravel(axes)
    for ax, (name, v) in zip(axes, o["off"].items()):
        plot_compare(ax, v["res"], name, NAMES, COLORS)
    axes[0].set_ylabel(r"$\|\nabla F(\tilde w)\|_{S^{-1}}$")
    return done(fig)


def numbers(cfg, crit: dict, ts: dict, g: dict, m: dict, o: dict) -> dict[str, Any]:
    """Every number the prose quotes, for :func:`bnutils.infra.report.glue_all`."""
    off, (gauss, t_name, d_name) = o["off"], o["names"]
    base = g["base"]
    gdnp_slope = g["mean_slope"][NAMES["gdnp"]]
    out = {
        "n_seeds": cfg.n_seeds, "critical_steps": cfg.critical_steps, "max_sin": crit["max_sin"],
        "steps": cfg.steps, "n_dim": cfg.n_dim, "kappa": f"{cfg.kappa:g}",
        "ts_list": ", ".join(map(str, cfg.bisect_steps)), "fit_best": str(ts["fit_best"]),
        "theta_rate": f"{ts['theta_rate']:.3g}", "bound_rate": f"{ts['bound_rate']:.3g}",
        "floor_slope": str(ts["floor"]), "ts_max": g["T_s"],
        "lr_grid": ", ".join(f"{x:g}" for x in cfg.lr),
        "gdnp_slope": f"{gdnp_slope:.3g}", "best_base_slope": f"{base.min():.3g}",
        "best_base_name": base.idxmin(),
        "faster_phrase": "is faster than" if gdnp_slope < base.min() else "is not faster than",
        "mlp_ts": cfg.mlp_bisect_steps, "mlp_gmax": f"{MLP_G_MAX:g}",
        "round_cost": m["res"]["cost"]["gdnp"], "n_mlp_evals": cfg.n_mlp_evals,
        "mlp_rounds": len(m["res"]["curves"]["gdnp"].loss),
        "n_mlp_samples": cfg.n_mlp_samples, "n_units": cfg.n_units,
        "nu": f"{T_NU:g}", "n_pca": cfg.n_pca, "n_samples": cfg.n_samples,
        "sin_gauss": f'{off[gauss]["sin"]:.2g}', "sin_t": f'{off[t_name]["sin"]:.2g}',
        "sin_digits": f'{off[d_name]["sin"]:.2g}', "rate_rtol": f"{RATE_RTOL:.0%}",
    }
    for key, name in (("t", t_name), ("d", d_name)):
        fit = o["fits"][name]
        out[f"off_{key}_fit"] = "none (no linear phase)" if fit is None else str(fit)
        out[f"off_{key}_pred"] = f'{off[name]["theta"]:.3g}'
    return out


def key_table(cfg, crit: dict, ts: dict, g: dict, m: dict, o: dict) -> MarkdownTable:
    ft = g["faster_than"]
    return key_numbers({
        f"max sin(minimiser, S^-1 u), Gaussian, {ON_LINE}": ON_LINE(crit["max_sin"]),
        "GDNP slope (seed 0, max T_s)": ts["fit_best"].slope,
        "predicted log10(1-theta/L)": ts["theta_rate"],
        "bound log10(1-mu/L)": ts["bound_rate"],
        "bisection floor: log2 slope per T_s": ts["floor"].slope,
        "GDNP fits agreeing with theta-rate": f"{sum(g['agree'])}/{len(g['agree'])}",
        "seeds where GDNP beats tuned GD / GD+BN / Adam":
            f"{ft['gd']} / {ft['bn']} / {ft['adam']} of {cfg.n_seeds}",
        "tanh net, equal gradient evals: GDNP final loss": fmt(m["gdnp_row"]["final loss"], 2),
        f"tanh net, equal gradient evals: best baseline ({NAMES[m['best_base']]}) final loss":
            fmt(m["best_row"]["final loss"], 2),
        "sin to line: Gaussian / t / digits sample":
            " / ".join(fmt(o["off"][n]["sin"], 2) for n in o["off"]),
    }, digits=3)


def claims(cfg, crit: dict, ts: dict, g: dict, m: dict, o: dict) -> MarkdownTable:
    """The claims table of Chapter 5, every verdict computed from the measurements."""
    fit_best, bound_rate, floor = ts["fit_best"], ts["bound_rate"], ts["floor"]
    agree, ft = g["agree"], g["faster_than"]
    mlp_g, mlp_b = m["gdnp_row"], m["best_row"]
    off, (gauss, t_name, d_name), off_rates = o["off"], o["names"], o["table"]
    rows = [
        Claim("Critical points of the halfspace problem lie on the line through S^-1 u "
              "(Gaussian z)", "[KDL+19] Sec. 4", "all critical points on the line",
              f"max sin {ON_LINE.show(crit['max_sin'])} over {cfg.n_seeds} problems",
              verdict(ON_LINE(crit["max_sin"])), seeds=cfg.n_seeds),
        Claim("GDNP: gradient norm falls linearly in T_d", "[KDL+19] Thm. (halfspaces)",
              f"(1-mu/L)^T_d: slope <= {fmt(bound_rate)}",
              f"{fit_best} (seed {cfg.seed}); derived theta-rate {fmt(ts['theta_rate'])}; "
              f"{sum(agree)}/{len(agree)} seeds agree",
              verdict(all(agree) and fit_best.hi <= bound_rate * 0.99), seeds=cfg.n_seeds),
        Claim("Bisection leaves a floor proportional to 2^-T_s", "[KDL+19] Thm. (halfspaces)",
              "log2 slope -1", f"log2 slope {floor}",
              verdict(floor.agrees_with(-1.0, rtol=RATE_RTOL)), seeds=1),
    ]
    for b in BASELINES:
        rows.append(Claim(f"GDNP converges faster than tuned {NAMES[b]} (Gaussian halfspaces)",
                          "[KDL+19] Sec. 6 (experiments)", "GDNP faster",
                          f"GDNP steeper on {ft[b]}/{cfg.n_seeds} problems",
                          verdict(ft[b] == cfg.n_seeds), seeds=cfg.n_seeds))
    rows.append(Claim("Unit-by-unit GDNP on a tanh network converges linearly",
                      "[KDL+19] Sec. 5", "linear",
                      f"loss {rate_summary(mlp_g)}; final loss {fmt(mlp_g['final loss'], 2)}",
                      verdict(mlp_g["linear"]), seeds=1))
    rows.append(Claim("GDNP beats the tuned baselines on the tanh network (equal gradient "
                      "evaluations)", "[KDL+19] Sec. 6 (experiments)", "GDNP faster",
                      f"final loss after {cfg.n_mlp_evals} gradient evals: GDNP "
                      f"{fmt(mlp_g['final loss'], 2)} vs best baseline "
                      f"({NAMES[m['best_base']]}) {fmt(mlp_b['final loss'], 2)}",
                      verdict(mlp_g["final loss"] < mlp_b["final loss"]), seeds=1))
    for name in (t_name, d_name):
        r = table_row(off_rates, name, NAMES["gdnp"])
        beats = [steeper(off_rates, name, NAMES["gdnp"], NAMES[b]) for b in BASELINES]
        rows.append(Claim(f"GDNP converges linearly and faster than the tuned baselines on "
                          f"non-Gaussian inputs: {name}", "[KDL+19] Sec. 6 (experiments)",
                          "acceleration beyond Gaussian inputs",
                          f"GDNP {rate_summary(r)}, linear: {'yes' if r['linear'] else 'no'}; "
                          f"steeper than {sum(beats)}/{len(beats)} tuned baselines",
                          verdict(bool(r["linear"]) and all(beats)), seeds=1))
    rows.append(Claim("Heavy tails move the minimiser off the line through S^-1 u",
                      "this chapter (Stein's lemma needs Gaussian z)", "-",
                      f'sin {fmt(off[t_name]["sin"], 2)} (t) vs {fmt(off[gauss]["sin"], 2)} '
                      "(Gaussian sample)", verdict(off[t_name]["sin"] > 2 * off[gauss]["sin"]),
                      seeds=1))
    return claims_table(rows)
