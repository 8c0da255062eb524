"""Length-direction decoupling ([KDL+19] Sec. 2-3): BN as a reparametrisation, OLS with BN and the
generalised Rayleigh quotient, and the slope fit that turns a convergence curve into a rate.

Notation follows [KDL+19]: inputs x with E[x] = 0 and covariance S (symmetric positive definite,
spectrum in [mu, L]); a BN unit computes x^T wtilde with

    wtilde = g * w / ||w||_S,        ||w||_S^2 = w^T S w               ([KDL+19] Eq. 3)

so g is the length and w only carries a direction. Ordinary least squares, with u = E[-y x],

    f_OLS(wtilde) = 2 u^T wtilde + wtilde^T S wtilde    (+ const)      ([KDL+19] Eq. 5)
    f(w, g)       = 2 g u^T w / ||w||_S + g^2                          ([KDL+19] Eq. 6)

The length minimising f for a fixed w is g*(w) = -u^T w / ||w||_S, which leaves
f(w, g*(w)) = -rho(w), rho(w) = (w^T u u^T w) / (w^T S w) the generalised Rayleigh quotient of
(u u^T, S). Everything is float64 torch so the curves reach 1e-28 before rounding bites.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from scipy import stats
from torch import Tensor
from tqdm import tqdm

DTYPE = torch.float64


# ------------------------------------------------------------------------------------------------
# Problems with a chosen spectrum
# ------------------------------------------------------------------------------------------------


def check_spd(S: Tensor) -> None:
    """Raise ValueError unless S is a symmetric positive-definite matrix."""
    if not isinstance(S, Tensor) or S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square matrix (torch.Tensor), got {type(S).__name__} "
                         f"of shape {getattr(S, 'shape', None)}")
    if not torch.allclose(S, S.T, rtol=1e-10, atol=1e-12):
        raise ValueError("S must be symmetric")
    if torch.linalg.eigvalsh(S).min() <= 0:
        raise ValueError("S must be positive definite (its smallest eigenvalue is <= 0)")


def check_positive(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` is a finite positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def spd_matrix(d: int, kappa: float, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Tensor:
    """S = Q diag(lambda) Q^T with eigenvalues geometrically spaced in [mu, L] = [1, kappa] and a
    random orthogonal Q (QR of a Gaussian matrix drawn from ``generator``, on the CPU)."""
    if isinstance(d, bool) or not isinstance(d, int) or d < 2:
        raise ValueError(f"d must be an integer >= 2, got {d!r}")
    check_positive("kappa", kappa)
    if kappa < 1:
        raise ValueError(f"kappa (condition number L/mu) must be >= 1, got {kappa!r}")
    Q, R = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=DTYPE))
    Q = Q * torch.sign(torch.diagonal(R))
    lam = torch.logspace(0, float(np.log10(kappa)), d, dtype=DTYPE)
    S = (Q * lam) @ Q.T
    return ((S + S.T) / 2).to(device)


@dataclass(frozen=True)
class OLS:
    """An OLS problem in population form: S = E[x x^T], u = E[-y x] ([KDL+19] Eq. 5)."""

    S: Tensor
    u: Tensor

    def __post_init__(self) -> None:
        check_spd(self.S)
        if self.u.shape != self.S.shape[:1]:
            raise ValueError(f"u must have shape ({self.S.shape[0]},), got {tuple(self.u.shape)}")

    @cached_property
    def mu(self) -> float:
        return float(torch.linalg.eigvalsh(self.S)[0])

    @cached_property
    def L(self) -> float:
        return float(torch.linalg.eigvalsh(self.S)[-1])

    @classmethod
    def random(cls, d: int, kappa: float, seed: int = 0,
               device: torch.device | str = "cpu") -> "OLS":
        """S from :func:`spd_matrix`, u ~ N(0, I_d), all from one seeded generator."""
        gen = torch.Generator().manual_seed(seed)
        S = spd_matrix(d, kappa, gen, device)
        return cls(S, torch.randn(d, generator=gen, dtype=DTYPE).to(device))


# ------------------------------------------------------------------------------------------------
# The reparametrisation and a BN unit
# ------------------------------------------------------------------------------------------------


def s_norm(w: Tensor, S: Tensor) -> Tensor:
    """||w||_S = sqrt(w^T S w), of a vector or of each row of a matrix; w is rescaled by its
    largest entry first, so a tiny or huge w neither underflows nor overflows."""
    scale = w.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    v = w / scale
    return scale[..., 0] * torch.sqrt(((v @ S) * v).sum(-1))


def bn_weight(w: Tensor, g: float | Tensor, S: Tensor) -> Tensor:
    """wtilde = g w / ||w||_S, the weight a BN unit effectively applies ([KDL+19] Eq. 3); for a
    matrix, row by row (one unit per row, g one length per row)."""
    return (g / s_norm(w, S))[..., None] * w


def bn_unit(X: Tensor, w: Tensor, g: float | Tensor) -> Tensor:
    """A linear unit followed by BN over the whole batch ([IS15] Alg. 1, eps = 0, beta = 0):
    g * (Xw - mean) / std, with the biased standard deviation."""
    a = X @ w
    return g * (a - a.mean()) / a.std(correction=0)


def gaussian_samples(n: int, S: Tensor, generator: torch.Generator) -> Tensor:
    """n rows x ~ N(0, S), as x = L e with S = L L^T (Cholesky) and e ~ N(0, I) from
    ``generator``."""
    return torch.randn(n, S.shape[0], generator=generator, dtype=DTYPE) @ torch.linalg.cholesky(S).T


def empirical_cov(X: Tensor) -> Tensor:
    """The biased covariance (1/n) sum (x - xbar)(x - xbar)^T of the rows of X."""
    Xc = X - X.mean(0)
    return Xc.T @ Xc / X.shape[0]


def decoupling_checks(X: Tensor, y: Tensor, w: Tensor, g: float,
                      scales: list[float]) -> list[dict[str, float]]:
    """Scale invariance of a BN unit under the squared loss mean((y - BN(Xw))^2) ([IS15] Sec. 3.3,
    [KDL+19] Sec. 2), by autograd at c*w for every c in ``scales``. Each row holds

    - ``max |out(cw) - out(w)|``: the output depends on w only through its direction;
    - ``|out - X wtilde|``: the BN unit equals the reparametrised unit (S = batch covariance);
    - ``cos(w, grad)``: the Euclidean cosine, zero because the loss is 0-homogeneous in w;
    - ``cos_S(w, grad)``: the cosine in the S inner product, w^T S grad / (||w||_S ||grad||_S),
      *not* zero in general; the S-orthogonal one is the S-gradient S^{-1} grad (cos_S(w, S^{-1}
      grad) = cos(w, grad) = 0);
    - ``c * ||grad||``: constant, since the gradient scales as 1/c.
    """
    S = empirical_cov(X)
    Xc = X - X.mean(0)
    out0 = bn_unit(X, w, g).detach()
    rows = []
    for c in scales:
        check_positive("every scale", c)
        v = (c * w).detach().requires_grad_(True)
        out = bn_unit(X, v, g)
        loss = ((y - out) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, v)
        v = v.detach()
        rows.append({
            "c": c,
            "max |out(cw) - out(w)|": float((out.detach() - out0).abs().max()),
            "|out - X wtilde|": float((out.detach() - Xc @ bn_weight(v, g, S)).abs().max()),
            "cos(w, grad)": float(v @ grad / (v.norm() * grad.norm())),
            "cos_S(w, grad)": float(v @ S @ grad / (s_norm(v, S) * s_norm(grad, S))),
            "c * ||grad||": float(c * grad.norm()),
        })
    return rows


# ------------------------------------------------------------------------------------------------
# OLS, its BN form and the Rayleigh quotient: objectives, gradients, closed-form optima
# ------------------------------------------------------------------------------------------------


def ols_loss(p: OLS, wt: Tensor) -> Tensor:
    """f_OLS(wtilde) = 2 u^T wtilde + wtilde^T S wtilde ([KDL+19] Eq. 5, constant dropped); the
    closed form that the unit tests check the gradients and the BN form against."""
    return 2 * p.u @ wt + wt @ p.S @ wt


def ols_grad(p: OLS, wt: Tensor) -> Tensor:
    """grad f_OLS = 2 u + 2 S wtilde."""
    return 2 * p.u + 2 * p.S @ wt


def ols_solution(p: OLS) -> Tensor:
    """wtilde* = -S^{-1} u, the unique minimiser; f_OLS(wtilde*) = -u^T S^{-1} u."""
    return -torch.linalg.solve(p.S, p.u)


def bn_ols_loss(p: OLS, w: Tensor, g: float | Tensor) -> Tensor:
    """f(w, g) = 2 g u^T w / ||w||_S + g^2 = f_OLS(g w / ||w||_S) ([KDL+19] Eq. 6)."""
    return 2 * g * (p.u @ w) / s_norm(w, p.S) + g ** 2


def bn_ols_grad(p: OLS, w: Tensor, g: float | Tensor) -> tuple[Tensor, Tensor]:
    """(df/dw, df/dg) of :func:`bn_ols_loss` (the closed form the unit tests check autograd and
    the optimal length against):
    df/dw = (2g / ||w||_S) (u - (u^T w / ||w||_S^2) S w),  df/dg = 2 u^T w / ||w||_S + 2g."""
    n = s_norm(w, p.S)
    uw = p.u @ w
    return 2 * g / n * (p.u - uw / n ** 2 * (p.S @ w)), 2 * uw / n + 2 * g


def optimal_length(p: OLS, w: Tensor) -> Tensor:
    """g*(w) = -u^T w / ||w||_S, the root of df/dg for a fixed direction w."""
    return -(p.u @ w) / s_norm(w, p.S)


def rayleigh(p: OLS, w: Tensor) -> Tensor:
    """rho(w) = (w^T u)^2 / (w^T S w) = -f(w, g*(w)) ([KDL+19] Eq. 7 with B = u u^T)."""
    return (p.u @ w) ** 2 / (w @ p.S @ w)


def rayleigh_grad(p: OLS, w: Tensor) -> Tensor:
    """grad rho(w) = (2 / ||w||_S^2) (B w - rho(w) S w), B = u u^T; orthogonal to w."""
    n2 = w @ p.S @ w
    return 2 / n2 * (p.u * (p.u @ w) - rayleigh(p, w) * (p.S @ w))


def rayleigh_gap(p: OLS, w: Tensor) -> Tensor:
    """rho* - rho(w) = rho* sin^2 of the S-angle between w and S^{-1}u, computed from the S-norm
    of w's component S-orthogonal to S^{-1}u (no cancellation, unlike rho* - rho(w))."""
    w_star, rho_star = rayleigh_max(p)
    e = w - (w @ p.u) / rho_star * w_star
    return rho_star * (e @ p.S @ e) / (w @ p.S @ w)


def rayleigh_max(p: OLS) -> tuple[Tensor, Tensor]:
    """(w*, rho*) = (S^{-1} u, u^T S^{-1} u): the top generalised eigenpair of (u u^T, S).
    By Cauchy-Schwarz in the S inner product, (u^T w)^2 = <S^{-1}u, w>_S^2 <= rho* ||w||_S^2."""
    w = torch.linalg.solve(p.S, p.u)
    return w, p.u @ w


# ------------------------------------------------------------------------------------------------
# The two algorithms and their rates
# ------------------------------------------------------------------------------------------------


def gd_ols(p: OLS, wt0: Tensor, steps: int, lr: float | None = None) -> Tensor:
    """Plain gradient descent on f_OLS with step ``lr`` (default 1/(2L), one over the smoothness
    constant of f_OLS, whose Hessian is 2S). Returns the excess loss f_OLS(wtilde_t) - f_OLS* =
    ||wtilde_t - wtilde*||_S^2 for t = 0..steps (computed this way: no cancellation)."""
    check_int("steps", steps)
    lr = 1 / (2 * p.L) if lr is None else lr
    check_positive("lr", lr)
    star = ols_solution(p)
    wt, out = wt0.clone(), torch.empty(steps + 1, dtype=DTYPE)
    for t in range(steps + 1):
        e = wt - star
        out[t] = e @ p.S @ e
        wt = wt - lr * ols_grad(p, wt)
    return out


def rayleigh_step_size(p: OLS, w: Tensor) -> Tensor:
    """s_t = ||w_t||_S^2 / (2 L rho(w_t)): the step of [KDL+19] Thm. 3 as we read it (UNSURE in
    our sources). With it, w_{t+1} = w_t + s_t grad rho(w_t) = (I - S/L) w_t + (u^T w_t / (L rho))
    u, whose error in direction contracts by (I - S/L) compressed to the complement of S^{-1}u."""
    return (w @ p.S @ w) / (2 * p.L * rayleigh(p, w))


def gd_bn_ols(p: OLS, w0: Tensor, steps: int) -> Tensor:
    """Gradient descent on the BN form of OLS ([KDL+19] Sec. 3): ascent on rho in the direction w
    with the step :func:`rayleigh_step_size`, the length set to g*(w) (exact for OLS). Returns the
    excess loss f(w_t, g*(w_t)) - f* = rho* - rho(w_t) (:func:`rayleigh_gap`) for t = 0..steps."""
    check_int("steps", steps)
    if float(p.u @ w0) == 0.0:
        raise ValueError("w0 must not be orthogonal to u (rho(w0) = 0 is a critical point)")
    w, out = w0.clone(), torch.empty(steps + 1, dtype=DTYPE)
    for t in range(steps + 1):
        out[t] = rayleigh_gap(p, w)
        w = w + rayleigh_step_size(p, w) * rayleigh_grad(p, w)
        w = w / s_norm(w, p.S)  # rho is scale invariant; keep ||w||_S = 1 for tidiness
    return out


def rayleigh_local_rate(p: OLS) -> float:
    """The exact asymptotic contraction of the direction error under :func:`gd_bn_ols`:
    1 - theta/L, theta the smallest eigenvalue of S compressed to the orthogonal complement of
    a = S^{-1/2} u (in whitened coordinates). By Cauchy interlacing mu <= theta <= lambda_2, so it
    is never slower than the bound 1 - mu/L. The excess loss contracts by its square."""
    lam, V = torch.linalg.eigh(p.S)
    a = V @ ((V.T @ p.u) / lam.sqrt())
    a = a / a.norm()
    basis = torch.linalg.svd(torch.eye(len(a), dtype=DTYPE, device=a.device)
                             - torch.outer(a, a))[0][:, :-1]
    theta = torch.linalg.eigvalsh(basis.T @ p.S @ basis)[0]
    return float(1 - theta / p.L)


@dataclass(frozen=True)
class RateFit:
    """A linear rate: the slope of log10(error) per iteration, with a t-based confidence interval
    (``level``), fitted over iterations ``first..last`` (``n`` points)."""

    slope: float
    lo: float
    hi: float
    first: int
    last: int
    n: int
    level: float

    @property
    def factor(self) -> float:
        """The per-iteration contraction factor 10**slope."""
        return 10 ** self.slope

    def agrees_with(self, predicted: float, rtol: float = 0.05) -> bool:
        """True when the CI overlaps predicted * [1 - rtol, 1 + rtol] (slopes are negative)."""
        a, b = sorted((predicted * (1 - rtol), predicted * (1 + rtol)))
        return self.lo <= b and a <= self.hi

    def __str__(self) -> str:
        return f"{self.slope:.3g} [{self.lo:.3g}, {self.hi:.3g}]"


def fit_linear_rate(errors: Tensor | np.ndarray, *, upper: float = 1e-2, lower: float = 1e-10,
                    level: float = 0.95) -> RateFit:
    """Least squares of log10(error_t) on t over the linear phase, with a t-based CI for the slope.

    The linear phase runs from the first iteration whose error is at most ``upper * error_0`` to
    the last one before it first drops below ``lower * error_0`` (or the end of the run): this
    skips the transient and stops short of the float64 floor. Raises ValueError when the errors
    never reach ``upper * error_0`` or the window holds fewer than 3 points.
    """
    e = np.asarray(errors, dtype=float)
    if e.ndim != 1 or not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError("errors must be a 1-D sequence of finite positive numbers")
    if not (0 < lower < upper <= 1) or not (0 < level < 1):
        raise ValueError(f"need 0 < lower < upper <= 1 and 0 < level < 1, got lower={lower}, "
                         f"upper={upper}, level={level}")
    below_upper = np.flatnonzero(e <= upper * e[0])
    if not below_upper.size:
        raise ValueError(f"the errors never fall to upper * error_0 = {upper * e[0]:.3g}")
    first = int(below_upper[0])
    below_lower = np.flatnonzero(e[first:] < lower * e[0])
    last = first + int(below_lower[0]) - 1 if below_lower.size else len(e) - 1
    t = np.arange(first, last + 1)
    if t.size < 3:
        raise ValueError(f"only {t.size} points in the linear phase [{first}, {last}]; "
                         "run longer or widen [lower, upper]")
    return RateFit(*slope_ci(t, np.log10(e[t]), level), first, last, int(t.size), level)


def slope_ci(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(slope, lo, hi): the least-squares slope of y on x with its t-based ``level`` CI."""
    res = stats.linregress(x, y)
    half = stats.t.ppf((1 + level) / 2, len(x) - 2) * res.stderr
    return float(res.slope), float(res.slope - half), float(res.slope + half)


def is_linear(errors: Tensor | np.ndarray, fit: RateFit | None, tol: float = 2.0) -> bool:
    """True when ``fit`` (of ``errors``) is a decrease and the slopes fitted separately on the two
    halves of its window agree within a factor ``tol``: a constant rate (linear convergence), not
    a slowing (sub-linear) curve. False when there is no fit or it spans fewer than 8 points."""
    if fit is None or fit.n < 8:
        return False
    e = np.asarray(errors, dtype=float)
    mid = (fit.first + fit.last) // 2
    a = fit_linear_rate(e[fit.first:mid + 1], upper=1.0, lower=1e-300).slope
    b = fit_linear_rate(e[mid:fit.last + 1], upper=1.0, lower=1e-300).slope
    return fit.hi < 0 and a < 0 and b < 0 and max(a / b, b / a) <= tol


def check_int(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def condition_sweep(kappas: list[float], d: int, n_seeds: int, seed: int = 0,
                    device: torch.device | str = "cpu", decades: float = 30.0) -> list[dict]:
    """GD on OLS (step 1/(2L)) and GD on its BN form (:func:`gd_bn_ols`) from the same w_0 on
    ``n_seeds`` random problems per condition number kappa = L/mu. Each run lasts long enough for
    the bound (1 - mu/L)^(2t) to fall by ``decades`` orders of magnitude. Returns one dict per
    (kappa, seed) with both excess-loss curves, their :func:`fit_linear_rate` fits (window
    [1e-26, 1e-12] x error_0, the asymptotic phase) and the predicted log10 slopes:
    ``bound`` = 2 log10(1 - mu/L) and ``local`` = 2 log10 :func:`rayleigh_local_rate`."""
    for k in kappas:
        check_positive("every kappa", k)
        if k <= 1:
            raise ValueError(f"every kappa must be > 1, got {k!r}")
    check_int("n_seeds", n_seeds)
    rows = []
    for kappa in tqdm(kappas, desc="condition numbers"):
        for s in range(seed, seed + n_seeds):
            p = OLS.random(d, kappa, seed=s, device=device)
            w0 = torch.randn(d, generator=torch.Generator().manual_seed(10_000 + s),
                             dtype=DTYPE).to(device)
            bound = 2 * np.log10(1 - p.mu / p.L)
            steps = int(np.ceil(decades / -bound))
            gd, bn = gd_ols(p, w0, steps).cpu(), gd_bn_ols(p, w0, steps).cpu()
            rows.append(dict(kappa=kappa, seed=s, gd=gd, bn=bn, bound=bound,
                             local=2 * np.log10(rayleigh_local_rate(p)),
                             fit_gd=fit_linear_rate(gd, upper=1e-12, lower=1e-26),
                             fit_bn=fit_linear_rate(bn, upper=1e-12, lower=1e-26)))
    return rows
