"""Chapter 3, Smoothness of the loss landscape ([STIM18] Sec. 3-4).

The chapter is written in sections; each keeps its constants, drivers, tables and figures under
its own heading below, and feeds the chapter-wide :func:`numbers`, :func:`key_table` and
:func:`claims` at the end of the module.

1. *Beta-smoothness, the convex case* (seed 002; Nesterov 2004, Cor. 2.1.2; Bubeck 2015,
   Thm. 3.3): gradient descent with step 1/beta on least squares and on ridge-regularised
   logistic regression (breast-cancer data, standardised) against the bound
   f(x_t) - f* <= 2 beta ||x_0 - x*||^2 / (t + 4), and a sweep of the step size.
   :class:`ConvexProblem`, :func:`gd_run`, :func:`bound_ratios`, :func:`largest_stable_step`,
   :func:`convex_runs` (cached), :func:`convex_table`, :func:`convex_figure`.
2. *The theory of [STIM18] Sec. 4, checked numerically*: every statement as a function of one BN
   unit (:func:`bn_grad_formula`, :func:`thm41_rhs`, :func:`thm42_rhs`,
   :func:`thm42_variant_rhs`, :func:`thm44_derived_rhs`, :func:`thm44_printed_rhs`,
   :func:`lemma45`), evaluated on random small networks and batches (:class:`Net`,
   :func:`random_net`, :func:`theory_draw`, :func:`theory_checks` (cached)), summarised by
   :func:`theory_table`, :func:`thm42_table`, :func:`worst_draws` and three figures.

Both sections run on the CPU in float64 whatever ``cfg.device``, and take seconds. A later section
goes in a block of its own after Section 2 (its knobs in ``PROFILES``, prefixed when they are
specific to it), and adds its results as arguments of :func:`numbers`, :func:`key_table` and
:func:`claims`. Generic second-order tools (Hessian-vector products, the top Hessian eigenvalue)
live in :mod:`bnutils.measure.hessian`.

Notation of [STIM18] Sec. 4: a layer y = W x over a batch of m examples; for unit j, y_j in R^m,
its batch mean mu_j and (biased) standard deviation sigma_j, yhat_j = (y_j - mu_j) / sigma_j (so
<1, yhat_j> = 0 and ||yhat_j||^2 = m), z_j = gamma yhat_j + beta with gamma, beta constant, eps = 0.
The BN network's loss is Lhat(y) = F(z(y)) for a downstream function F; the "identical non-BN
network" applies F to y directly, and the comparison is made at the same downstream point, so
that grad_{y_j} L = ghat_j = dF/dz_j and H_jj = d^2 F / dz_j dz_j.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from scipy import stats

from ..core.bn import batch_norm_formula
from ..core.train import History
from ..infra import report, validate
from ..infra.cache import cached_driver
from ..infra.config import ChapterProfiles
from ..infra.plotting import COLORS, LABELS, done, running_mean, subplots
from ..infra.report import Below, Claim, MarkdownTable, claims_table, fmt, key_numbers, verdict
from ..measure.hessian import HessianOperator, top_eigenvalue
from ..measure.landscape import summarise
from ..measure.runs import (DLN_FACTORS, DLN_PROTOCOL, VGG_FACTORS, VGG_PROTOCOL, DLNRun, VGGRun,
                            cost_record, train_all)
from ..measure.shift import unit_shifts
from ..measure.stats import Interval, all_agree, at_least, decide, equivalent, mean_ci

PROFILES = ChapterProfiles(
    "03", "Smoothness of the loss landscape",
    quick=dict(convex_steps=2000, convex_starts=3, n_draws=300, **VGG_PROTOCOL["quick"], lr=0.1,
               lr_large=0.5, window_steps=50, **DLN_PROTOCOL["quick"], dln_lr=1e-6),
    full=dict(convex_steps=20_000, convex_starts=10, n_draws=3000, **VGG_PROTOCOL["full"],
              lr=0.1, lr_large=0.5, window_steps=1000, **DLN_PROTOCOL["full"], dln_lr=1e-6),
    long=dict(convex_steps=20_000, convex_starts=10, n_draws=3000, **VGG_PROTOCOL["long"],
              lr=0.1, lr_large=0.5, window_steps=1000, **DLN_PROTOCOL["long"], dln_lr=1e-6),
    choices=dict(width=(0.0625, 0.125, 0.25, 0.5, 1.0)),
    rules=dict(convex_starts=validate.positive_int),
)

DTYPE = torch.float64
#: Rounding level of float64 identities, written once: a relative residual below it is an
#: equality, and an inequality holds on a draw when its relative slack is above -EXACT.bound.
EXACT = Below(1e-10)


def setup(namespace: dict[str, Any]):
    """Configure the chapter from its notebook's parameters (:func:`bnutils.infra.report.setup`:
    one thread in the quick profile on a CPU)."""
    return report.setup(PROFILES, namespace)


# ================================================================================================
# Section 1. Beta-smoothness, the convex case
# ================================================================================================

#: Ridge of the logistic regression (it makes the minimiser exist on near-separable data).
RIDGE = 1e-3
#: The convex bound holds when the worst ratio gap / bound over every t and start is <= this.
BOUND = 1.0
#: |largest stable step x beta / 2 - 1| on the quadratic: 2/beta is the divergence threshold.
STEP_TOL = Below(0.01)
#: The step (times 1/beta) of the planted violation, beyond 2/beta.
PLANTED = 2.5
#: The variables are also measured in units this many times smaller (features divided by it), a
#: change of units under which a correct bound keeps its verdict.
UNIT_SCALE = 100.0
#: Step sizes of the sweep, in units of 1/beta; refined by bisection at the first failure.
SWEEP = tuple(float(x) for x in np.geomspace(0.25, 64.0, 24))
NEWTON_TOL = 1e-13


@dataclass(frozen=True)
class ConvexProblem:
    """A convex, beta-smooth objective on data (A, b), in float64 numpy.

    ``kind="quadratic"``: least squares f(x) = ||A x - b||^2 / (2n), Hessian A^T A / n, so beta is
    its top eigenvalue. ``kind="logistic"``: f(x) = mean log(1 + exp(-b_i a_i^T x)) +
    ridge ||x||^2 / 2, Hessian A^T D A / n + ridge I with D = diag(s(1 - s)) <= 1/4, so
    beta = lambda_max(A^T A) / (4n) + ridge. The minimiser ``x_star`` is computed by least squares
    or by Newton's method to ||grad|| < :data:`NEWTON_TOL`.
    """

    name: str
    kind: str
    A: np.ndarray
    b: np.ndarray
    ridge: float = 0.0
    x_star: np.ndarray = field(init=False, repr=False)
    beta: float = field(init=False)

    def __post_init__(self) -> None:
        validate.one_of("kind", self.kind, ("quadratic", "logistic"))
        n = self.A.shape[0]
        top = float(np.linalg.eigvalsh(self.A.T @ self.A / n)[-1])
        beta = top if self.kind == "quadratic" else top / 4 + self.ridge
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "_AT", np.ascontiguousarray(self.A.T))
        object.__setattr__(self, "_f_star", 0.0)
        x_star = self._minimise()
        object.__setattr__(self, "x_star", x_star)
        object.__setattr__(self, "_r_star", self.A @ x_star)
        object.__setattr__(self, "_f_star", self.f(x_star))

    def f(self, x: np.ndarray) -> float:
        r = self.A @ x
        if self.kind == "quadratic":
            return float(np.sum((r - self.b) ** 2) / (2 * len(self.b)))
        return float(np.mean(np.logaddexp(0.0, -self.b * r)) + self.ridge * (x @ x) / 2)

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.gap_and_grad(x, gap=False)[1]

    def gap_and_grad(self, x: np.ndarray, gap: bool = True) -> tuple[float, np.ndarray]:
        """(f(x) - f*, grad f(x)) from one product A x; for least squares the gap is
        ||A (x - x*)||^2 / (2n), free of cancellation."""
        r, n = self.A @ x, len(self.b)
        if self.kind == "quadratic":
            value = 0.0
            if gap:
                e = r - self._r_star
                value = float(e @ e / (2 * n))
            return value, self._AT @ (r - self.b) / n
        margin = self.b * r
        value = float(np.mean(np.logaddexp(0.0, -margin)) + self.ridge * (x @ x) / 2
                      - self._f_star) if gap else 0.0
        s = 0.5 * (1 - np.tanh(margin / 2))  # sigmoid(-margin), without overflow
        return value, -self._AT @ (self.b * s) / n + self.ridge * x

    def hessian(self, x: np.ndarray) -> np.ndarray:
        n = len(self.b)
        if self.kind == "quadratic":
            return self.A.T @ self.A / n
        s = 0.5 * (1 - np.tanh(self.b * (self.A @ x) / 2))
        return (self.A.T * (s * (1 - s))) @ self.A / n + self.ridge * np.eye(self.A.shape[1])

    def torch_loss(self):
        """f as a function of a torch float64 vector (for Hessian-vector products)."""
        A, b = torch.as_tensor(self.A), torch.as_tensor(self.b)
        if self.kind == "quadratic":
            return lambda x: ((A @ x - b) ** 2).sum() / (2 * len(b))
        return lambda x: F.softplus(-b * (A @ x)).mean() + self.ridge * (x @ x) / 2

    def _minimise(self) -> np.ndarray:
        if self.kind == "quadratic":
            return np.linalg.lstsq(self.A, self.b, rcond=None)[0]
        x = np.zeros(self.A.shape[1])
        for _ in range(100):
            g = self.grad(x)
            if np.linalg.norm(g) < NEWTON_TOL:
                break
            step, fx = np.linalg.solve(self.hessian(x), g), self.f(x)
            t = 1.0
            while self.f(x - t * step) > fx and t > 1e-12:  # backtracking (damped Newton)
                t /= 2
            x = x - t * step
        return x

    @property
    def f_star(self) -> float:
        return self.f(self.x_star)

    def gap(self, x: np.ndarray) -> float:
        """f(x) - f* (see :meth:`gap_and_grad`)."""
        return self.gap_and_grad(x)[0]

    def rescaled(self, s: float) -> "ConvexProblem":
        """The same problem with x measured in units ``s`` times smaller: x' = s x, A' = A / s (the
        ridge scales as 1/s^2). Gradient descent with step 1/beta' visits the same points."""
        return ConvexProblem(f"{self.name} (x in units 1/{s:g})", self.kind, self.A / s, self.b,
                             self.ridge / s ** 2)


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """The breast-cancer data of scikit-learn (569 x 30), standardised, with a column of ones
    for the intercept; labels +-1."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return np.hstack([X, np.ones((len(X), 1))]), 2.0 * y - 1.0


def convex_problems() -> dict[str, ConvexProblem]:
    A, b = breast_cancer()
    return {"least squares": ConvexProblem("least squares", "quadratic", A, b),
            "logistic": ConvexProblem("logistic", "logistic", A, b, ridge=RIDGE)}


def gd_run(p: ConvexProblem, x0: np.ndarray, lr: float, steps: int,
           blow_up: float = 1e100) -> tuple[np.ndarray, float]:
    """Gradient descent x_{t+1} = x_t - lr grad f(x_t) for ``steps`` steps. Returns the gaps
    f(x_t) - f* for t = 0..steps and the effective beta-smoothness along the run, the largest
    ||grad f(x_{t+1}) - grad f(x_t)|| / ||x_{t+1} - x_t|| ([STIM18] Sec. 3.2's measure, along
    the steps taken). Stops early (shorter array) once the gap exceeds ``blow_up`` times its
    start."""
    validate.positive_int("steps", steps)
    validate.positive_number("lr", lr)
    x = np.array(x0, dtype=float)
    gap, g = p.gap_and_grad(x)
    gaps, eff = [gap], 0.0
    for _ in range(steps):
        step = lr * g
        x = x - step
        gap, g_new = p.gap_and_grad(x)
        gaps.append(gap)
        if not np.isfinite(gap) or gap > blow_up * max(gaps[0], 1e-300):
            break
        moved = np.linalg.norm(step)
        if moved > 0:
            eff = max(eff, float(np.linalg.norm(g_new - g) / moved))
        g = g_new
    return np.array(gaps), eff


def bound_ratios(gaps: np.ndarray, beta: float, r0: float) -> np.ndarray:
    """(f(x_t) - f*) / (2 beta ||x_0 - x*||^2 / (t + 4)) for every t: the bound holds while
    every ratio is <= 1 (Nesterov 2004, Cor. 2.1.2)."""
    t = np.arange(len(gaps))
    return gaps / (2 * beta * r0 ** 2 / (t + 4))


def seed_bound_ratios(gaps: np.ndarray, beta: float, r0: float) -> np.ndarray:
    """The bound as printed in seed 002, f(x_t) - f* <= 2 beta ||x_1 - x*|| / (t - 1) with the
    start x_1 (no square on the norm): ratios for our steps k = t - 1 >= 1."""
    k = np.arange(1, len(gaps))
    return gaps[1:] / (2 * beta * r0 / k)


def monotone(gaps: np.ndarray, steps: int, rtol: float = 1e-9, atol: float = 1e-14) -> bool:
    """True when the run lasted ``steps`` steps and f never rose, beyond rounding: a rise counts
    when it exceeds ``rtol`` of the gap plus ``atol`` of the initial gap (the gap of logistic
    regression, f - f*, cannot be resolved below ~1e-17)."""
    floor = atol * gaps[0]
    return len(gaps) == steps + 1 and bool(np.all(gaps[1:] <= gaps[:-1] * (1 + rtol) + floor))


def largest_stable_step(p: ConvexProblem, x0: np.ndarray, steps: int,
                        grid: tuple[float, ...] = SWEEP, bisections: int = 10) -> dict[str, Any]:
    """Sweep the step lr = k / beta over ``grid`` (ascending k) and find the first k whose run is
    not :func:`monotone` over ``steps`` steps; refine by bisection between it and the previous
    k. Returns ``k_max`` (the largest stable k found; ``inf`` if none failed), ``beta_eff``, the
    effective beta-smoothness along the run at k_max (:func:`gd_run`), the ``grid`` and, per grid
    point, the gap at the end of the run over the gap at the start (``final``; a run that blew
    up ends early, above 1e100)."""
    finals, k_fail = [], None
    for k in grid:
        gaps, _ = gd_run(p, x0, k / p.beta, steps)
        finals.append(float(gaps[-1] / gaps[0]))
        if k_fail is None and not monotone(gaps, steps):
            k_fail = k
    out = {"grid": np.array(grid), "final": np.array(finals)}
    if k_fail is None:
        return {**out, "k_max": math.inf, "beta_eff": math.nan}
    i = grid.index(k_fail)
    lo, hi = (grid[i - 1] if i else 0.0), k_fail
    for _ in range(bisections):
        mid = (lo + hi) / 2
        if monotone(gd_run(p, x0, mid / p.beta, steps)[0], steps):
            lo = mid
        else:
            hi = mid
    return {**out, "k_max": lo, "beta_eff": gd_run(p, x0, lo / p.beta, steps)[1]}


def starts(d: int, n: int, seed: int) -> list[np.ndarray]:
    """x_0 = 0 and n - 1 standard Gaussian starts."""
    rng = np.random.default_rng(seed)
    return [np.zeros(d)] + [rng.standard_normal(d) for _ in range(n - 1)]


@cached_driver
def convex_runs(steps: int, n_starts: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Section 1's measurements, per problem of :func:`convex_problems`: beta; f*, its gradient
    norm; the top Hessian eigenvalue at x_0 = 0 and at x* by power iteration
    (:func:`bnutils.measure.hessian.top_eigenvalue`); GD with step 1/beta from ``n_starts``
    starts for ``steps`` steps (gaps, worst ratio to the bound, and to seed 002's printed bound,
    also with x in units :data:`UNIT_SCALE` times smaller); the run at step
    :data:`PLANTED`/beta; the sweep of :func:`largest_stable_step` from x_0 = 0. Cached."""
    out = {}
    for name, p in convex_problems().items():
        xs = starts(p.A.shape[1], n_starts, seed)
        runs = []
        for x0 in xs:
            gaps, eff = gd_run(p, x0, 1 / p.beta, steps)
            r0 = float(np.linalg.norm(x0 - p.x_star))
            runs.append({"gaps": gaps, "r0": r0, "beta_eff": eff,
                         "ratio": float(bound_ratios(gaps, p.beta, r0).max()),
                         "seed_ratio": float(seed_bound_ratios(gaps, p.beta, r0).max())})
        q = p.rescaled(UNIT_SCALE)
        scaled = []
        for x0 in xs:
            x0s = UNIT_SCALE * x0
            gaps, _ = gd_run(q, x0s, 1 / q.beta, steps)
            r0 = float(np.linalg.norm(x0s - q.x_star))
            scaled.append({"ratio": float(bound_ratios(gaps, q.beta, r0).max()),
                           "seed_ratio": float(seed_bound_ratios(gaps, q.beta, r0).max())})
        f = p.torch_loss()
        at = {k: top_eigenvalue(f, torch.as_tensor(x), tol=1e-12, iters=5000).value
              for k, x in (("start", np.zeros(p.A.shape[1])), ("solution", p.x_star))}
        planted, _ = gd_run(p, xs[0], PLANTED / p.beta, steps)
        r00 = float(np.linalg.norm(xs[0] - p.x_star))
        out[name] = {
            "n": p.A.shape[0], "d": p.A.shape[1], "beta": p.beta, "f_star": p.f_star,
            "grad_star": float(np.linalg.norm(p.grad(p.x_star))), "ridge": p.ridge,
            "top_start": at["start"], "top_solution": at["solution"], "runs": runs,
            "ratio": max(r["ratio"] for r in runs),
            "seed_ratio": max(r["seed_ratio"] for r in runs),
            "scaled_ratio": max(r["ratio"] for r in scaled),
            "scaled_seed_ratio": max(r["seed_ratio"] for r in scaled),
            "planted": planted,
            "planted_ratio": float(bound_ratios(planted, p.beta, r00).max()),
            "sweep": largest_stable_step(p, xs[0], steps),
        }
    return out


def convex_table(convex: dict) -> MarkdownTable:
    rows = []
    for name, c in convex.items():
        sw = c["sweep"]
        rows.append([name, f"{c['n']} x {c['d']}", fmt(c["beta"], 4), fmt(c["top_start"], 4),
                     fmt(c["top_solution"], 4), f"{c['f_star']:.6f}", f"{c['grad_star']:.0e}",
                     fmt(c["ratio"], 2), fmt(sw["k_max"] / 2, 3),
                     fmt(sw["beta_eff"] / c["beta"], 2)])
    return MarkdownTable(["problem", "n x d", "beta", "top eigenvalue at x = 0",
                          "top eigenvalue at x*", "f*", "||grad f(x*)||", "worst gap / bound",
                          "largest stable step x beta/2", "beta_eff / beta at that step"], rows)


def convex_figure(convex: dict):
    fig, axes = subplots(1, 3, width=3.5, height=3.0)
    axes = axes[0]
    for ax, c in zip(axes[:2], convex.values()):
        for i, r in enumerate(c["runs"]):
            t = np.arange(len(r["gaps"]))
            ax.loglog(t + 1, r["gaps"], color=COLORS["gd"], lw=1.2,
                      label="GD, step 1/$\\beta$" if i == 0 else None)
            ax.loglog(t + 1, 2 * c["beta"] * r["r0"] ** 2 / (t + 4), "--",
                      color=COLORS["theory"], lw=0.9,
                      label=r"$2\beta\|x_0-x^*\|^2/(t+4)$" if i == 0 else None)
        ax.set(xlabel="step $t$ + 1", ylabel=r"$f(x_t) - f^*$")
    axes[0].set_title("(a) least squares")
    axes[1].set_title("(b) logistic regression")
    axes[1].legend(fontsize="small", loc="lower left")
    ax = axes[2]
    floor, top = 1e-17, 1e6
    for (name, c), color in zip(convex.items(), (COLORS["gd"], COLORS["bn"])):
        s = c["sweep"]
        ax.loglog(s["grid"], np.clip(s["final"], floor, top), "o-", ms=3, color=color,
                  label=name)
    ax.axvline(2.0, color=COLORS["theory"], ls=":", lw=1)
    ax.axhline(1.0, color=COLORS["theory"], lw=0.6)
    ax.set(xlabel=r"step size $\times\,\beta$",
           ylabel=r"$(f(x_T) - f^*)\,/\,(f(x_0) - f^*)$", ylim=(floor / 3, top * 3),
           title="(c) step-size sweep")
    ax.legend(fontsize="small", loc="lower left")
    return done(fig)


# ================================================================================================
# Section 2. The theory of [STIM18] Sec. 4, checked numerically
# ================================================================================================

#: Batch sizes of the draws (m = 2 is left out: yhat is then +-1 whatever y, and every gradient
#: through BN vanishes).
BATCH_SIZES = (3, 4, 5, 8, 16, 32, 64)
#: Downstream functions F of the BN output: a squared loss (H_jj a multiple of the identity),
#: softmax cross-entropy on a linear read-out (H_jj PSD, diagonal), through a tanh first
#: (indefinite, diagonal), and through tanh, a second BN layer and the read-out (indefinite,
#: dense: the second BN couples the examples).
DOWNSTREAM = ("squared", "softmax", "tanh_softmax", "tanh_bn_softmax")
#: Ranges of the log-uniform draws: gamma, the scale of the inputs (hence of sigma_j), and a
#: factor multiplying the loss.
GAMMA_RANGE, INPUT_SCALE, LOSS_SCALE = (0.1, 10.0), (0.1, 10.0), (0.01, 100.0)
#: A block H_jj counts as PSD when its smallest eigenvalue is >= -PSD_TOL x its largest |.|.
PSD_TOL = 1e-12

#: The statements checked on every draw: key -> (label, kind). "identity": |relative residual|
#: below EXACT; "inequality": relative slack (rhs - lhs) / scale above -EXACT.bound.
STATEMENTS = {
    "grad": ("BN gradient formula", "identity"),
    "thm41_proof": ("Thm. 4.1 with c = 1/m (proof)", "identity"),
    "thm41_printed": ("Thm. 4.1 with c = 1/sqrt(m) (printed)", "inequality"),
    "thm42": ("Thm. 4.2", "inequality"),
    "thm42_variant": ("Thm. 4.2, relative-norm variant", "inequality"),
    "obs43": ("Obs. 4.3 (gamma = sigma_j, beta = mu_j)", "identity"),
    "thm44_derived": ("Thm. 4.4, derived reading", "inequality"),
    "thm44_max": ("Thm. 4.4, worst case over ||X|| <= lambda attained", "identity"),
    "thm44_printed": ("Thm. 4.4 as printed", "inequality"),
    "lemma45": ("Lemma 4.5", "inequality"),
    "lemma45_invariance": ("Lemma 4.5: BN loss constant along the ray", "identity"),
    "lemma45_seed": ("Lemma 4.5 as printed in seed 002", "inequality"),
}


# -- The statements, for one unit j: vectors of length m ----------------------------------------


def standardize(y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(yhat, mu, sigma) of one unit's batch y (biased std, eps = 0)."""
    mu = y.mean()
    sigma = (y - mu).pow(2).mean().sqrt()
    return (y - mu) / sigma, mu, sigma


def bn_grad_formula(g: Tensor, yhat: Tensor, gamma: float, sigma: float) -> Tensor:
    """dLhat/dy_j = (gamma / (m sigma_j)) (m g - 1 <1, g> - yhat_j <g, yhat_j>), g = dLhat/dz_j
    ([STIM18] App. C, Fact C.1): gamma/sigma times the projection of g off 1 and yhat_j."""
    m = g.numel()
    return gamma / (m * sigma) * (m * g - g.sum() - yhat * (g @ yhat))


def thm41_rhs(g: Tensor, yhat: Tensor, gamma: float, sigma: float, c: float) -> float:
    """(gamma^2 / sigma^2) (||g||^2 - (1/m) <1, g>^2 - c <g, yhat>^2): [STIM18] Thm. 4.1's bound
    on ||grad_{y_j} Lhat||^2 with the coefficient c of the last term (printed: 1/sqrt(m))."""
    m = g.numel()
    return float(gamma ** 2 / sigma ** 2 * (g @ g - g.sum() ** 2 / m - c * (g @ yhat) ** 2))


def thm42_rhs(vHv: float, g: Tensor, yhat: Tensor, v: Tensor, gamma: float,
              sigma: float) -> float:
    """[STIM18] Thm. 4.2's right-hand side, (gamma^2/sigma^2) v^T H_jj v
    - (gamma / (m sigma^2)) <ghat_j, yhat_j> ||v||^2, with v = grad_{y_j} Lhat and ``vHv`` =
    v^T H_jj v."""
    m = g.numel()
    return float(gamma ** 2 / sigma ** 2 * vHv - gamma / (m * sigma ** 2) * (g @ yhat) * (v @ v))


def thm42_variant_rhs(gHg: float, g: Tensor, yhat: Tensor, v: Tensor, gamma: float,
                      sigma: float) -> float:
    """The variant of [STIM18] Thm. 4.2 ("if H_jj preserves the relative norms of ghat_j and
    grad_{y_j} Lhat"): (gamma^2/sigma^2) (ghat^T H_jj ghat - (1/(m gamma)) <ghat, yhat> ||v||^2),
    with ``gHg`` = ghat^T H_jj ghat."""
    m = g.numel()
    return float(gamma ** 2 / sigma ** 2 * (gHg - (g @ yhat) * (v @ v) / (m * gamma)))


def thm44_derived_rhs(g: Tensor, yhat: Tensor, gamma: float, sigma: float, lam: float) -> float:
    """Our reading of [STIM18] Thm. 4.4: with g_j = max_{||X|| <= lambda} ||X^T ghat_j||^2 =
    lambda^2 ||ghat_j||^2, the BN weight gradient obeys ||grad_{W_j} Lhat||^2 <= (gamma^2 /
    sigma^2) (g_j - lambda^2 m mu_g^2 - (lambda^2 / m) <ghat_j, yhat_j>^2), mu_g = mean of ghat_j
    (= lambda^2 ||grad_{y_j} Lhat||^2, the worst case over inputs of norm <= lambda)."""
    m = g.numel()
    return float(gamma ** 2 / sigma ** 2 * lam ** 2 * (g @ g - m * g.mean() ** 2
                                                       - (g @ yhat) ** 2 / m))


def thm44_printed_rhs(g: Tensor, yhat: Tensor, gamma: float, sigma: float, lam: float) -> float:
    """[STIM18] Thm. 4.4 read literally: (gamma^2 / sigma_j^2) (g_j^2 - m mu_{g_j}^2 - lambda^2
    <ghat_j, yhat_j>^2) with g_j = lambda^2 ||ghat_j||^2 and mu_{g_j} the mean of ghat_j."""
    m = g.numel()
    gj = lam ** 2 * (g @ g)
    return float(gamma ** 2 / sigma ** 2 * (gj ** 2 - m * g.mean() ** 2
                                            - lam ** 2 * (g @ yhat) ** 2))


def worst_input(a: Tensor, d: int, lam: float) -> Tensor:
    """The maximiser of ||X^T a|| over m x d inputs with ||X||_2 <= lambda (also Frobenius):
    X = lambda a e_1^T / ||a||, giving ||X^T a|| = lambda ||a||."""
    X = torch.zeros(a.numel(), d, dtype=a.dtype)
    X[:, 0] = lam * a / a.norm()
    return X


def lemma45(W0: Tensor, W_star: Tensor) -> dict[str, float]:
    """[STIM18] Lemma 4.5 for W0 with <W0, W*> > 0: the closest point of the ray {c W*, c > 0}
    (the BN network's optima through W*, by scale invariance) is the projection
    c* W* with c* = <W0, W*> / ||W*||^2. Returns ``c``, ``lhs`` = ||W0 - c* W*||^2, ``rhs`` =
    ||W0 - W*||^2 - (||W*||^2 - <W*, W0>)^2 / ||W*||^2, and ``rhs_seed``, seed 002's version
    without the square on (||W*||^2 - <W*, W0>)."""
    inner, nn = float((W0 * W_star).sum()), float((W_star * W_star).sum())
    if inner <= 0:
        raise ValueError("Lemma 4.5 needs <W0, W*> > 0")
    c = inner / nn
    d0 = float(((W0 - W_star) ** 2).sum())
    return {"c": c, "lhs": float(((W0 - c * W_star) ** 2).sum()),
            "rhs": d0 - (nn - inner) ** 2 / nn, "rhs_seed": d0 - (nn - inner) / nn, "d0": d0}


# -- Random networks and batches --------------------------------------------------------------


@dataclass
class Net:
    """One draw: inputs X (m x d), weights W (n x d), BN parameters gamma, beta (n), a downstream
    function F (``kind``, its ``head`` tensors, a ``loss_scale``) and the unit ``j`` checked."""

    X: Tensor
    W: Tensor
    gamma: Tensor
    beta: Tensor
    kind: str
    head: dict[str, Tensor]
    loss_scale: float
    j: int

    @property
    def m(self) -> int:
        return self.X.shape[0]

    def downstream(self, z: Tensor) -> Tensor:
        """F(z), the network above the BN layer, for a batch z (m x n)."""
        h = self.head
        if self.kind == "squared":
            out = ((z - h["T"]) ** 2).sum() / (2 * self.m)
        else:
            a = z if self.kind == "softmax" else torch.tanh(z)
            if self.kind == "tanh_bn_softmax":
                a = a @ h["V1"].T
                a = batch_norm_formula(a, torch.ones(a.shape[1], dtype=a.dtype),
                                       torch.zeros(a.shape[1], dtype=a.dtype), 0.0)
            out = F.cross_entropy(a @ h["V"].T + h["c"], h["labels"])
        return self.loss_scale * out

    def bn(self, y: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
        return batch_norm_formula(y, self.gamma if gamma is None else gamma,
                                  self.beta if beta is None else beta, 0.0)

    def lhat(self, y: Tensor) -> Tensor:
        """The BN network's loss as a function of the layer's outputs y (m x n)."""
        return self.downstream(self.bn(y))

    def lhat_w(self, W: Tensor) -> Tensor:
        """The BN network's loss as a function of the layer's weights."""
        return self.lhat(self.X @ W.T)


def _loguniform(gen: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    u = torch.rand(n, generator=gen, dtype=DTYPE)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def random_net(gen: torch.Generator) -> Net:
    """A random draw: m from :data:`BATCH_SIZES`, input dimension d in 1..8, width n in 1..6,
    Gaussian inputs with a random mean and a log-uniform scale (:data:`INPUT_SCALE`), Gaussian W,
    gamma log-uniform in :data:`GAMMA_RANGE`, beta ~ N(0, 1), a downstream function of
    :data:`DOWNSTREAM` with Gaussian read-out weights and random labels or targets, a log-uniform
    loss factor (:data:`LOSS_SCALE`), and a random unit j."""
    def ri(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))

    m = BATCH_SIZES[ri(0, len(BATCH_SIZES) - 1)]
    d, n = ri(1, 8), ri(1, 6)
    kind = DOWNSTREAM[ri(0, len(DOWNSTREAM) - 1)]
    scale = float(_loguniform(gen, *INPUT_SCALE))
    X = scale * (torch.randn(m, d, generator=gen, dtype=DTYPE)
                 + torch.randn(1, d, generator=gen, dtype=DTYPE))
    W = torch.randn(n, d, generator=gen, dtype=DTYPE)
    gamma = _loguniform(gen, *GAMMA_RANGE, n)
    beta = torch.randn(n, generator=gen, dtype=DTYPE)
    k = ri(2, 5)
    head = {"T": torch.randn(m, n, generator=gen, dtype=DTYPE),
            "V1": torch.randn(4, n, generator=gen, dtype=DTYPE),
            "V": torch.randn(k, 4 if kind == "tanh_bn_softmax" else n, generator=gen,
                             dtype=DTYPE),
            "c": torch.randn(k, generator=gen, dtype=DTYPE),
            "labels": torch.randint(0, k, (m,), generator=gen)}
    return Net(X, W, gamma, beta, kind, head, float(_loguniform(gen, *LOSS_SCALE)), ri(0, n - 1))


def _rel(residual: float, scale: float) -> float:
    return float(residual / scale) if scale > 0 else 0.0


def theory_draw(net: Net, gen: torch.Generator) -> dict[str, Any]:
    """Every statement of :data:`STATEMENTS` on one draw, as relative residuals (identities) or
    relative slacks (rhs - lhs) / scale (inequalities), with the draw's descriptors.

    Autograd runs through :func:`bnutils.core.bn.batch_norm_formula` (twice differentiable) with
    eps = 0; the left-hand side of Thm. 4.2 is a Hessian-vector product
    (:class:`bnutils.measure.hessian.HessianOperator`), H_jj is the explicit m x m block of F's
    Hessian at z for unit j. ``gen`` draws W* of Lemma 4.5."""
    j, m = net.j, net.m
    Y = net.X @ net.W.T
    yhat, mu, sigma = standardize(Y[:, j])
    gamma, sigma_f = float(net.gamma[j]), float(sigma)
    Z = net.bn(Y).detach()
    # the downstream gradient ghat = dF/dz_j and the block H_jj, at the BN network's point z
    Zg = Z.clone().requires_grad_(True)
    ghat = torch.autograd.grad(net.downstream(Zg), Zg)[0][:, j].detach()

    def f_j(u: Tensor) -> Tensor:
        return net.downstream(torch.cat([Z[:, :j], u[:, None], Z[:, j + 1:]], 1))

    H = torch.autograd.functional.hessian(f_j, Z[:, j].clone(), vectorize=True)
    eig = torch.linalg.eigvalsh(H)
    # the BN network: its gradient in y_j, and the quadratic form of its Hessian along it
    op = HessianOperator(net.lhat, Y)
    v = op.grad[:, j]
    V = torch.zeros_like(Y)
    V[:, j] = v
    Q = float((op(V) * V).sum())
    vHv, gHg = float(v @ H @ v), float(ghat @ H @ ghat)
    row: dict[str, Any] = {
        "m": m, "width": net.W.shape[0], "d": net.X.shape[1], "kind": net.kind,
        "gamma": gamma, "sigma": sigma_f, "gamma_over_sigma": gamma / sigma_f,
        "loss_scale": net.loss_scale, "g_dot_yhat": float(ghat @ yhat),
        "g_dot_yhat_rel": float(ghat @ yhat) / (float(ghat.norm()) * math.sqrt(m)),
        "H_min": float(eig[0]), "H_max": float(eig[-1]),
        "psd": bool(eig[0] >= -PSD_TOL * float(eig.abs().max())),
        "isotropic": net.kind == "squared",
        "norm_ratio": float(v.norm() / ghat.norm()),
    }
    # exact gradient
    formula = bn_grad_formula(ghat, yhat, gamma, sigma_f)
    row["grad"] = _rel(float((formula - v).norm()), float(v.norm()))
    # Thm. 4.1: both coefficients; the predicted violation of the printed one
    lhs41, scale41 = float(v @ v), gamma ** 2 / sigma_f ** 2 * float(ghat @ ghat)
    row["thm41_proof"] = _rel(thm41_rhs(ghat, yhat, gamma, sigma_f, 1 / m) - lhs41, scale41)
    row["thm41_printed"] = _rel(thm41_rhs(ghat, yhat, gamma, sigma_f, 1 / math.sqrt(m)) - lhs41,
                                scale41)
    row["thm41_lhs"], row["thm41_rhs"] = lhs41 / scale41, \
        thm41_rhs(ghat, yhat, gamma, sigma_f, 1 / m) / scale41
    row["thm41_predicted"] = (1 / math.sqrt(m) - 1 / m) * gamma ** 2 / sigma_f ** 2 \
        * float(ghat @ yhat) ** 2 / scale41
    # Thm. 4.2 and its variant
    first, second = gamma ** 2 / sigma_f ** 2 * vHv, gamma / (m * sigma_f ** 2) \
        * float(ghat @ yhat) * float(v @ v)
    scale42 = abs(first) + abs(second) + abs(Q)
    rhs42 = thm42_rhs(vHv, ghat, yhat, v, gamma, sigma_f)
    row["thm42"] = _rel(rhs42 - Q, scale42)
    row["thm42_lhs"], row["thm42_rhs"] = Q / scale42, rhs42 / scale42
    row["thm42_variant"] = _rel(thm42_variant_rhs(gHg, ghat, yhat, v, gamma, sigma_f) - Q,
                                scale42 + gamma ** 2 / sigma_f ** 2 * abs(gHg))
    # Obs. 4.3: gamma = sigma_j, beta = mu_j reproduce the activations
    mus, sigmas = Y.mean(0), (Y - Y.mean(0)).pow(2).mean(0).sqrt()
    row["obs43"] = float((net.bn(Y, sigmas, mus) - Y).abs().max() / Y.abs().max())
    # Thm. 4.4: the weight gradient of the real network, lambda = ||X||_2
    lam = float(torch.linalg.matrix_norm(net.X, ord=2))
    Wg = net.W.clone().requires_grad_(True)
    grad_w = torch.autograd.grad(net.lhat_w(Wg), Wg)[0][j]
    rhs44 = thm44_derived_rhs(ghat, yhat, gamma, sigma_f, lam)
    scale44 = gamma ** 2 / sigma_f ** 2 * lam ** 2 * float(ghat @ ghat)
    row["thm44_derived"] = _rel(rhs44 - float(grad_w @ grad_w), scale44)
    Xw = worst_input(v, net.X.shape[1], lam)
    attained = float((Xw.T @ v) @ (Xw.T @ v))
    row["thm44_max"] = _rel(attained - rhs44, scale44)
    printed = thm44_printed_rhs(ghat, yhat, gamma, sigma_f, lam)
    gj = lam ** 2 * float(ghat @ ghat)
    scale_p = abs(attained) + gamma ** 2 / sigma_f ** 2 * (
        gj ** 2 + m * float(ghat.mean()) ** 2 + lam ** 2 * float(ghat @ yhat) ** 2)
    row["thm44_printed"] = _rel(printed - attained, scale_p)
    # Lemma 4.5: W0 = the draw's W, W* random (random scale, sign making <W0, W*> > 0)
    W_star = torch.randn(net.W.shape, generator=gen, dtype=DTYPE) \
        * float(_loguniform(gen, 0.1, 10.0))
    if float((net.W * W_star).sum()) < 0:
        W_star = -W_star
    lem = lemma45(net.W, W_star)
    row["lemma45"] = _rel(lem["rhs"] - lem["lhs"], lem["d0"])
    row["lemma45_seed"] = _rel(lem["rhs_seed"] - lem["lhs"],
                               lem["d0"] + abs(lem["rhs_seed"] - lem["d0"]))
    l_star = float(net.lhat_w(W_star))
    row["lemma45_invariance"] = _rel(abs(float(net.lhat_w(lem["c"] * W_star)) - l_star),
                                     abs(l_star))
    return row


@cached_driver
def theory_checks(n_draws: int, seed: int = 0) -> pd.DataFrame:
    """:func:`theory_draw` on ``n_draws`` draws of :func:`random_net` from one seeded generator:
    one row per draw. Cached."""
    validate.positive_int("n_draws", n_draws)
    gen = torch.Generator().manual_seed(seed)
    return pd.DataFrame([theory_draw(random_net(gen), gen) for _ in range(n_draws)])


# -- Summaries ----------------------------------------------------------------------------------


def holds(df: pd.DataFrame, key: str) -> pd.Series:
    """Per draw: the statement ``key`` holds (identity: |residual| < EXACT; inequality: slack
    > -EXACT.bound)."""
    if STATEMENTS[key][1] == "identity":
        return df[key].abs() < EXACT.bound
    return df[key] > -EXACT.bound


def summary(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per statement: draws, draws where it holds, worst value (largest |residual| of an
    identity, smallest slack of an inequality), and whether it held with equality."""
    out = {}
    for key, (label, kind) in STATEMENTS.items():
        ok = holds(df, key)
        worst = float(df[key].abs().max()) if kind == "identity" else float(df[key].min())
        out[key] = {"label": label, "kind": kind, "n": len(df), "holds": int(ok.sum()),
                    "worst": worst, "equality": bool((df[key].abs() < EXACT.bound).all())}
    return out


def theory_table(df: pd.DataFrame) -> MarkdownTable:
    rows = []
    for key, s in summary(df).items():
        worst = EXACT.show(s["worst"]) if s["kind"] == "identity" else fmt(s["worst"], 2)
        rows.append([s["label"], s["kind"], f"{s['holds']}/{s['n']}", worst,
                     "yes" if s["equality"] else "no"])
    return MarkdownTable(["statement", "checked as", "holds on", "worst relative residual/slack",
                          f"equality on every draw ({EXACT})"], rows)


def conditions(df: pd.DataFrame) -> dict[str, pd.Series]:
    """The subsets of draws of :func:`thm42_table`: the assumptions of Thm. 4.2 and its
    discussion."""
    pos, iso = df["g_dot_yhat"] >= 0, df["isotropic"]
    small = df["norm_ratio"] <= 1
    return {
        "all draws": pd.Series(True, index=df.index),
        "H_jj PSD": df["psd"],
        "H_jj PSD and <ghat, yhat> >= 0": df["psd"] & pos,
        "H_jj PSD and <ghat, yhat> < 0": df["psd"] & ~pos,
        "H_jj indefinite": ~df["psd"],
        "H_jj = cI (relative norms preserved)": iso,
        "H_jj = cI and ||grad Lhat|| <= ||ghat||": iso & small,
        "H_jj = cI and ||grad Lhat|| > ||ghat||": iso & ~small,
        "gamma <= sigma_j": df["gamma_over_sigma"] <= 1,
    }


def thm42_table(df: pd.DataFrame) -> MarkdownTable:
    rows = []
    for name, mask in conditions(df).items():
        sub = df[mask]
        n = len(sub)
        rows.append([name, n, f"{int(holds(sub, 'thm42').sum())}/{n}",
                     f"{int(holds(sub, 'thm42_variant').sum())}/{n}",
                     fmt(float(sub["thm42_variant"].min()), 2) if n else "-"])
    return MarkdownTable(["draws", "n", "Thm. 4.2 holds", "variant holds",
                          "worst variant slack"], rows)


FAILING = ("thm41_printed", "thm42_variant", "thm44_printed", "lemma45_seed")


def worst_draws(df: pd.DataFrame, per: int = 2) -> MarkdownTable:
    """The ``per`` worst draws of every statement that fails on some draw."""
    rows = []
    for key in STATEMENTS:
        if STATEMENTS[key][1] != "inequality" or holds(df, key).all():
            continue
        for _, r in df.nsmallest(per, key).iterrows():
            rows.append([STATEMENTS[key][0], r["m"], r["width"], r["kind"],
                         fmt(r["gamma_over_sigma"], 2), fmt(r["loss_scale"], 2),
                         fmt(r["g_dot_yhat_rel"], 2), "PSD" if r["psd"] else "indefinite",
                         fmt(r["norm_ratio"], 2), fmt(r[key], 2)])
    return MarkdownTable(["statement", "m", "width", "downstream", "gamma/sigma_j", "loss factor",
                          "cos(ghat, yhat)", "H_jj", "||grad Lhat||/||ghat||",
                          "relative slack"], rows)


def thm41_figure(df: pd.DataFrame):
    fig, axes = subplots(1, 2, width=4.0, height=3.3)
    axes = axes[0]
    ax = axes[0]
    ax.loglog(df["thm41_rhs"], df["thm41_lhs"], "o", ms=3, alpha=0.6, color=COLORS["gd"])
    lim = [min(df["thm41_lhs"].min(), df["thm41_rhs"].min()) / 2, 1.5]
    ax.loglog(lim, lim, "-", lw=0.8, color=COLORS["theory"], label="equality")
    ax.set(xlabel=r"right-hand side with $c = 1/m$",
           ylabel=r"$\|\nabla_{y_j}\hat L\|^2$", title="(a) the proof's coefficient")
    ax.legend(fontsize="small")
    ax = axes[1]
    viol = -df["thm41_printed"]
    keep = df["thm41_predicted"] > 0
    sc = ax.scatter(df["thm41_predicted"][keep], viol[keep], c=np.log2(df["m"][keep]), s=8,
                    cmap="viridis", alpha=0.8)
    lo = float(df["thm41_predicted"][keep].min()) / 2
    ax.loglog([lo, 1], [lo, 1], "-", lw=0.8, color=COLORS["theory"])
    ax.set(xscale="log", yscale="log",
           xlabel=r"predicted $(1/\sqrt{m} - 1/m)\,\langle \hat g, \hat y\rangle^2$ (scaled)",
           ylabel="violation of the printed bound (scaled)",
           title=r"(b) the printed coefficient $1/\sqrt{m}$")
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label(r"$\log_2 m$")
    return done(fig)


def thm42_figure(df: pd.DataFrame):
    fig, axes = subplots(1, 2, width=4.0, height=3.3)
    axes = axes[0]
    groups = {r"$H_{jj}$ indefinite": ~df["psd"],
              r"$H_{jj}$ PSD, not $cI$": df["psd"] & ~df["isotropic"],
              r"$H_{jj} = cI$": df["isotropic"]}
    colors = (COLORS["l1"], COLORS["bn"], COLORS["gd"])
    for (name, mask), color, ms in zip(groups.items(), colors, (3, 3, 4.5)):
        axes[0].plot(df["thm42_rhs"][mask], df["thm42_lhs"][mask], "o", ms=ms, alpha=0.6,
                     color=color, label=name)
        axes[1].plot(df["norm_ratio"][mask], df["thm42_variant"][mask], "o", ms=ms, alpha=0.6,
                     color=color, label=name)
    axes[0].plot([-1, 1], [-1, 1], "-", lw=0.8, color=COLORS["theory"])
    axes[0].set(xlabel="right-hand side of Thm. 4.2 (scaled)",
                ylabel=r"$(\nabla\hat L)^\top \nabla^2_{y_j}\hat L\,(\nabla\hat L)$ (scaled)",
                title="(a) Thm. 4.2")
    ax = axes[1]
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.axhline(0, color=COLORS["theory"], lw=0.8)
    ax.axvline(1, color=COLORS["theory"], lw=0.8, ls=":")
    ax.set(xlabel=r"$\|\nabla_{y_j}\hat L\| / \|\hat g_j\|$",
           ylabel="relative slack of the variant", title="(b) the relative-norm variant")
    axes[0].legend(fontsize="small")
    return done(fig)


def slack_figure(df: pd.DataFrame):
    keys = list(STATEMENTS)
    fig, ax = subplots(width=7.0, height=4.2)
    rng = np.random.default_rng(0)
    for i, key in enumerate(keys):
        x = df[key].to_numpy()
        if STATEMENTS[key][1] == "identity":
            x = -np.abs(x)  # a residual counts against the statement
        ok = x > -EXACT.bound
        y = i + rng.uniform(-0.25, 0.25, len(x))
        ax.plot(x[ok], y[ok], "o", ms=2.5, alpha=0.5, color=COLORS["gd"],
                label="holds" if i == 0 else None)
        ax.plot(x[~ok], y[~ok], "o", ms=2.5, alpha=0.5, color=COLORS["l1"],
                label="fails" if i == 0 else None)
    ax.set_xscale("symlog", linthresh=EXACT.bound)
    ticks = [-10.0, -1e-5, 0.0, 1e-5, 10.0]
    ax.set_xticks(ticks, [f"0 (± {EXACT.value})" if t == 0 else f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlim(-30.0, 30.0)
    ax.axvspan(-EXACT.bound, 30.0, color=COLORS["gd"], alpha=0.07, lw=0)
    ax.set_yticks(range(len(keys)), [STATEMENTS[k][0] for k in keys], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("relative slack (inequalities) or -|relative residual| (identities)")
    fig.legend(loc="outside lower right", ncols=2, fontsize="small")
    return done(fig)


def draw_counts(df: pd.DataFrame) -> dict[str, int]:
    c = conditions(df)
    return {"n_psd": int(c["H_jj PSD"].sum()), "n_indefinite": int(c["H_jj indefinite"].sum()),
            "n_pos": int((df["g_dot_yhat"] >= 0).sum()), "n_iso": int(df["isotropic"].sum()),
            "n_iso_small": int(c["H_jj = cI and ||grad Lhat|| <= ||ghat||"].sum()),
            "n_gamma_small": int(c["gamma <= sigma_j"].sum())}


# ================================================================================================
# Sections 3-6. The landscape along the gradient on VGG and the deep linear network, l_p
# normalisations, and the Hessian ([STIM18] Sec. 3, Figs. 4-6 and 10-13; the Hessian beyond it)
# ================================================================================================

#: Networks compared: the standard network, BN, and BN's l_p replacements of [STIM18] Sec. 3.3.
LANDSCAPE = ("standard", "bn")
LP = ("l1", "l2", "linf")
NORM = {"standard": "none", "bn": "bn", "l1": "l1", "l2": "l2", "linf": "linf"}
#: Thresholds, written once: a ratio within a factor 1 + SMOOTH_MARGIN of 1 decides nothing; two
#: training accuracies are "comparable" within LP_MARGIN.
SMOOTH_MARGIN = 0.10
LP_MARGIN = 0.05
#: Activations whose histograms are shown and tested for normality ([STIM18] Figs. 12-13).
HIST_LAYER = {"vgg": 3, "dln": 9}
NORMALITY_P = 0.01


@dataclass
class Runs:
    """The runs of Sections 3-6: ``vgg[method, lr]`` and ``dln[method]`` (one History per seed,
    at ``cfg.dln_lr``); shared with Chapter 2 through the cache where the configuration is the
    same."""

    vgg: dict[tuple[str, float], History]
    dln: dict[str, list[History]]

    def all(self) -> list[History]:
        return list(self.vgg.values()) + [h for hs in self.dln.values() for h in hs]



def train_runs(cfg) -> Runs:
    """Train (or load) the runs of Sections 3-6 side by side: the VGG with and without BN at
    ``cfg.lr`` and ``cfg.lr_large`` and with each l_p normalisation at ``cfg.lr``; the deep linear
    network with each of the five at ``cfg.dln_lr`` over ``cfg.dln_seeds`` seeds."""
    vgg = [(m, lr) for lr in (cfg.lr, cfg.lr_large) for m in LANDSCAPE]
    vgg += [(p, cfg.lr) for p in LP]
    dln = [(m, s) for m in (*LANDSCAPE, *LP) for s in range(cfg.seed, cfg.seed + cfg.dln_seeds)]
    specs = [VGGRun.of(cfg.knobs, NORM[m], lr, cfg.seed) for m, lr in vgg]
    specs += [DLNRun.of(cfg.knobs, NORM[m], cfg.dln_lr, s) for m, s in dln]
    histories = train_all(specs, cfg.device)
    out = Runs(vgg=dict(zip(vgg, histories[:len(vgg)])), dln={})
    for (m, _), h in zip(dln, histories[len(vgg):]):
        out.dln.setdefault(m, []).append(h)
    return out


def landscape(h: History) -> dict[str, np.ndarray]:
    """The landscape records of one run, summarised per measurement step
    (:func:`bnutils.measure.landscape.summarise`), with the steps."""
    out = summarise(h.measures)
    out["steps"] = h.measure_steps["landscape_loss"]
    out["loss_width"] = out["loss_max"] - out["loss_min"]
    return out


def paired_ratio(a: Sequence[History], b: Sequence[History], key: str) -> Interval:
    """log10 of ``a``'s landscape quantity ``key`` over ``b``'s, paired at the same measurement
    steps: the mean over steps with its t interval for one run each, else per run the mean over
    steps and then the mean over runs (seeds) with its t interval. A step where either quantity is
    zero has no ratio and is left out: late in a deep linear network's training the loss can stay
    the same to float32 precision along the whole range of step sizes (a loss range of 0)."""
    ratios = []
    for x, y in zip(a, b):
        qa, qb = landscape(x)[key], landscape(y)[key]
        keep = (qa > 0) & (qb > 0)
        ratios.append(np.log10(qa[keep] / qb[keep]))
    return mean_ci(ratios[0]) if len(ratios) == 1 else mean_ci([r.mean() for r in ratios])


def smaller(ratio: Interval, margin: float = SMOOTH_MARGIN) -> bool | None:
    """Is the quantity smaller by more than a factor 1 + margin? True when the interval of the
    log10 ratio lies below -log10(1 + margin), False when it lies at or above it, else None."""
    above = at_least(ratio, -np.log10(1 + margin))
    return None if above is None else not above


SMOOTHNESS = {"loss_width": "loss range", "pred_max": "gradient predictiveness",
              "beta": "effective beta-smoothness"}


def smoothness_tables(cfg, runs: Runs) -> dict[tuple, Interval]:
    """Every landscape comparison of the chapter, as log10 ratios (see :func:`paired_ratio`):
    BN against the standard network on the VGG at both learning rates and on the DLN, and each
    l_p normalisation against the standard network."""
    out = {}
    for lr in (cfg.lr, cfg.lr_large):
        for key in SMOOTHNESS:
            out["vgg", "bn", lr, key] = paired_ratio([runs.vgg["bn", lr]],
                                                     [runs.vgg["standard", lr]], key)
    for p in LP:
        for key in SMOOTHNESS:
            out["vgg", p, cfg.lr, key] = paired_ratio([runs.vgg[p, cfg.lr]],
                                                      [runs.vgg["standard", cfg.lr]], key)
    for m in ("bn", *LP):
        for key in SMOOTHNESS:
            out["dln", m, cfg.dln_lr, key] = paired_ratio(runs.dln[m], runs.dln["standard"], key)
    return out


def _band(ax, steps: np.ndarray, lo: np.ndarray, hi: np.ndarray, method: str) -> None:
    ax.fill_between(steps, lo, hi, color=COLORS[method], alpha=0.35, lw=0, label=LABELS[method])


def landscape_figure(columns: list[tuple[str, dict[str, list[History]]]]):
    """[STIM18] Fig. 4 / Fig. 10: per column (a title and the runs of each method), the range
    of the loss (a) and of the gradient change (b) along the gradient, and the effective
    beta-smoothness (c), over training; several runs (seeds) are averaged point by point."""
    fig, axes = subplots(3, len(columns), width=3.3, height=2.4, sharex="col", squeeze=False)
    for col, (title, methods) in enumerate(columns):
        for method, hs in methods.items():
            ls = [landscape(h) for h in hs]
            mean = {k: np.mean([x[k] for x in ls], axis=0) for k in ls[0]}
            _band(axes[0, col], mean["steps"], mean["loss_min"], mean["loss_max"], method)
            _band(axes[1, col], mean["steps"], mean["pred_min"], mean["pred_max"], method)
            axes[2, col].plot(mean["steps"], mean["beta"], color=COLORS[method],
                              label=LABELS[method])
        axes[0, col].set_title(title, fontsize="small")
        for row in (1, 2):
            axes[row, col].set_yscale("log")
        axes[2, col].set_xlabel("step")
    axes[0, 0].set_ylabel("(a) loss along the gradient")
    axes[1, 0].set_ylabel(r"(b) $\|\nabla L(w - \eta g) - g\|$")
    axes[2, 0].set_ylabel(r"(c) effective $\beta$")
    axes[0, 0].legend(fontsize="small")
    return done(fig)


def vgg_landscape_figure(cfg, runs: Runs):
    return landscape_figure([(f"VGG, lr {lr:g}", {m: [runs.vgg[m, lr]] for m in LANDSCAPE})
                             for lr in (cfg.lr, cfg.lr_large)])


def dln_landscape_figure(cfg, runs: Runs):
    return landscape_figure([(f"DLN, lr {cfg.dln_lr:g}", {m: runs.dln[m] for m in LANDSCAPE})])


def gradient_change_figure(cfg, runs: Runs, times: int = 3):
    """[STIM18] Fig. 11: the gradient change ||grad L(w - eta g) - g|| against the step size eta
    at a few measurement times, DLN with and without BN (first seed)."""
    steps = runs.dln["standard"][0].measure_steps["landscape_grad_diff"]
    picks = np.unique(np.linspace(0, len(steps) - 1, times).round().astype(int))
    fig, axes = subplots(1, len(picks), width=3.0, height=2.6, sharey=True, squeeze=False)
    etas = np.array(DLN_FACTORS) * cfg.dln_lr
    for ax, k in zip(axes[0], picks):
        for m in LANDSCAPE:
            ax.loglog(etas, runs.dln[m][0].measures["landscape_grad_diff"][k],
                      "o-", color=COLORS[m], ms=3, label=LABELS[m])
        ax.set(title=f"step {steps[k]}", xlabel=r"step size $\eta$")
    axes[0, 0].set_ylabel(r"$\|\nabla L(w - \eta g) - g\|$")
    axes[0, 0].legend(fontsize="small")
    return done(fig)


def lp_summary(cfg, runs: Runs) -> dict[str, Any]:
    """Training of the l_p networks against BN: VGG training accuracy over the last
    ``cfg.window_steps`` steps (t interval over the steps); DLN final training loss, log10 ratio
    to BN's paired by seed (t interval over seeds); and the distribution shift and normality of
    the activations the next layer sees."""
    acc = {m: mean_ci(runs.vgg[m, cfg.lr].train_acc[-cfg.window_steps:])
           for m in (*LANDSCAPE, *LP)}
    final = {m: [h.train_loss[-1] for h in hs] for m, hs in runs.dln.items()}
    loss_ratio = {m: mean_ci(np.log10(np.array(final[m]) / np.array(final["bn"])))
                  for m in LP}
    layer = HIST_LAYER["vgg"]
    shift = {m: mean_ci(unit_shifts(runs.vgg[m, cfg.lr].probes[f"post{layer}"]))
             for m in (*LANDSCAPE, *LP)}
    normal = {m: normality(runs.vgg[m, cfg.lr].probes[f"post{layer}"][-1])
              for m in (*LANDSCAPE, *LP)}
    normal.update({f"dln_{m}": normality(runs.dln[m][0].probes[f"post{HIST_LAYER['dln']}"][-1])
                   for m in (*LANDSCAPE, *LP)})
    return {"acc": acc, "final": final, "loss_ratio": loss_ratio, "shift": shift,
            "normal": normal}


def normality(samples: np.ndarray) -> float:
    """The fraction of units (rows of ``samples``) whose values a D'Agostino-Pearson test
    rejects as Gaussian at level NORMALITY_P."""
    return float(np.mean([stats.normaltest(row).pvalue < NORMALITY_P for row in samples]))


def lp_training_figure(cfg, runs: Runs):
    """[STIM18] Figs. 5 and 12: training of the VGG (accuracy, running mean) and of the DLN
    (loss, mean over seeds) with BN and with its l_p replacements."""
    fig, axes = subplots(1, 2, width=4.2, height=3.1)
    axes = axes[0]
    for m in (*LANDSCAPE, *LP):
        h = runs.vgg[m, cfg.lr]
        axes[0].plot(np.arange(1, h.steps + 1),
                     running_mean(h.train_acc, max(1, cfg.window_steps // 5)),
                     color=COLORS[m], label=LABELS[m])
        loss = np.mean([x.train_loss for x in runs.dln[m]], axis=0)
        axes[1].semilogy(np.arange(1, len(loss) + 1), loss, color=COLORS[m], label=LABELS[m])
    axes[0].set(xlabel="step", ylabel="training accuracy (running mean)", ylim=(0, 1),
                title=f"VGG, lr {cfg.lr:g}")
    axes[1].set(xlabel="step", ylabel="training loss", title=f"DLN, lr {cfg.dln_lr:g}")
    axes[0].legend(fontsize="small")
    return done(fig)


def lp_landscape_figure(cfg, runs: Runs):
    """[STIM18] Figs. 6 and 13: effective beta-smoothness over training of every normalisation,
    VGG (left) and DLN (right, mean over seeds)."""
    fig, axes = subplots(1, 2, width=4.2, height=3.1)
    axes = axes[0]
    for m in (*LANDSCAPE, *LP):
        v = landscape(runs.vgg[m, cfg.lr])
        axes[0].semilogy(v["steps"], v["beta"], color=COLORS[m], label=LABELS[m])
        d = [landscape(h) for h in runs.dln[m]]
        axes[1].semilogy(d[0]["steps"], np.mean([x["beta"] for x in d], axis=0),
                         color=COLORS[m], label=LABELS[m])
    axes[0].set(xlabel="step", ylabel=r"effective $\beta$", title=f"VGG, lr {cfg.lr:g}")
    axes[1].set(xlabel="step", title=f"DLN, lr {cfg.dln_lr:g}")
    axes[0].legend(fontsize="small")
    return done(fig)


def histogram_figure(cfg, runs: Runs):
    """[STIM18] Figs. 12-13: histograms of the activations the next layer sees at the end of
    training (4 units each), with the normal density of the same mean and spread (dashed)."""
    methods = (*LANDSCAPE, *LP)
    fig, axes = subplots(2, len(methods), width=2.3, height=2.0, squeeze=False)
    for row, (net, layer) in enumerate(HIST_LAYER.items()):
        for col, m in enumerate(methods):
            h = runs.vgg[m, cfg.lr] if net == "vgg" else runs.dln[m][0]
            ax = axes[row, col]
            for j, values in enumerate(h.probes[f"post{layer}"][-1][:4]):
                ax.hist(values, bins=30, density=True, histtype="step", color=f"C{j}")
                grid = np.linspace(values.min(), values.max(), 100)
                ax.plot(grid, stats.norm.pdf(grid, values.mean(), values.std()), ls="--",
                        color=f"C{j}", lw=0.8)
            ax.set_title(f"{'VGG' if net == 'vgg' else 'DLN'} #{layer}, {LABELS[m]}",
                         fontsize="small")
            ax.set_yticks([])
    return done(fig)


def hessian(h: History) -> dict[str, np.ndarray]:
    m = h.measures
    return {"steps": h.measure_steps["hessian_top"], "top": m["hessian_top"],
            "norm2": m["param_norm2"]}


def hessian_figure(cfg, runs: Runs):
    """Beyond the paper: the top eigenvalue of the mini-batch loss Hessian over training against
    the effective beta-smoothness (a, c), and the stability index lr x lambda_max (b, d; gradient
    descent on a quadratic diverges above 2), VGG and DLN, with and without BN."""
    columns = [(f"VGG, lr {cfg.lr:g}", {m: [runs.vgg[m, cfg.lr]] for m in LANDSCAPE}, cfg.lr),
               (f"DLN, lr {cfg.dln_lr:g}", {m: runs.dln[m] for m in LANDSCAPE}, cfg.dln_lr)]
    fig, axes = subplots(2, 2, width=3.6, height=2.6, sharex="col", squeeze=False)
    for col, (title, methods, lr) in enumerate(columns):
        for m, hs in methods.items():
            hess, land = hessian(hs[0]), landscape(hs[0])
            top = np.mean([np.abs(hessian(h)["top"]) for h in hs], axis=0)
            beta = np.mean([landscape(h)["beta"] for h in hs], axis=0)
            axes[0, col].semilogy(hess["steps"], top, "o-", color=COLORS[m],
                                  label=rf"{LABELS[m]}: $|\lambda_{{max}}|$")
            axes[0, col].semilogy(land["steps"], beta, ":", color=COLORS[m],
                                  label=rf"{LABELS[m]}: effective $\beta$")
            axes[1, col].semilogy(hess["steps"], lr * top, "o-", color=COLORS[m])
        axes[1, col].axhline(2.0, color="0.5", lw=0.8, ls="--")
        axes[0, col].set_title(title, fontsize="small")
        axes[1, col].set_xlabel("step")
    axes[0, 0].set_ylabel("curvature")
    axes[1, 0].set_ylabel(r"lr $\times |\lambda_{max}|$")
    axes[0, 0].legend(fontsize="x-small")
    return done(fig)


def hessian_summary(cfg, runs: Runs) -> dict[str, Any]:
    """Top Hessian eigenvalue with BN against without, log10 ratio paired at the measurement
    steps (VGG, one run: t interval over steps; DLN: over seeds); lr x lambda_max at the end."""
    def ratio(a: Sequence[History], b: Sequence[History]) -> Interval:
        r = [np.log10(np.abs(hessian(x)["top"]) / np.abs(hessian(y)["top"])) for x, y in zip(a, b)]
        return mean_ci(r[0]) if len(r) == 1 else mean_ci([x.mean() for x in r])

    vgg = {m: [runs.vgg[m, cfg.lr]] for m in LANDSCAPE}
    return {"vgg": ratio(vgg["bn"], vgg["standard"]),
            "dln": ratio(runs.dln["bn"], runs.dln["standard"]),
            "index": {(net, m): float(lr * np.abs(hessian(hs[0])["top"][-1]))
                      for net, group, lr in (("vgg", vgg, cfg.lr), ("dln", runs.dln, cfg.dln_lr))
                      for m, hs in ((m, group[m]) for m in LANDSCAPE)},
            "norm2": {m: hessian(runs.vgg[m, cfg.lr])["norm2"] for m in LANDSCAPE}}


def record(runs: Runs) -> dict[str, str]:
    """Rows for the run record: training time and probe cost of the chapter's runs."""
    return cost_record(runs.all())


# ================================================================================================
# The chapter's numbers, key table and claims
# ================================================================================================


def _convex_ok(convex: dict) -> dict[str, Any]:
    ls, lg = convex["least squares"], convex["logistic"]
    k_ls = ls["sweep"]["k_max"] / 2
    return {
        "bound": max(c["ratio"] for c in convex.values()) <= BOUND
        and max(c["scaled_ratio"] for c in convex.values()) <= BOUND,
        "seed": max(max(c["seed_ratio"], c["scaled_seed_ratio"]) for c in convex.values())
        <= BOUND,
        "threshold": STEP_TOL(k_ls - 1) and ls["planted_ratio"] > BOUND,
        "k_ls": k_ls, "k_lg": lg["sweep"]["k_max"] / 2,
        # eta_max beta_eff / 2 at the largest stable step: the descent lemma with beta_eff in
        # place of beta guarantees descent while it is below 1
        "eff_ls": k_ls * ls["sweep"]["beta_eff"] / ls["beta"],
        "eff_lg": lg["sweep"]["k_max"] / 2 * lg["sweep"]["beta_eff"] / lg["beta"],
    }


def _ratio_text(x: Interval) -> str:
    """A log10 ratio as the ratio itself with its interval: 'x0.31 [0.2, 0.48]'."""
    return f"x{10 ** x.estimate:.2g} [{10 ** x.lo:.2g}, {10 ** x.hi:.2g}]"


def scale(cfg) -> str:
    """What this execution ran, against the paper's scale (for the top of the page)."""
    return (f"{cfg.n_draws:,} random draws per statement of Sec. 4; the VGG on "
            f"{10 * cfg.n_train_per_class:,} CIFAR-10 training images for {cfg.steps:,} steps "
            f"at {cfg.width:g} of the full width (the paper: all 50,000 images, 15,000 steps, "
            f"full width), and the deep linear network for {cfg.dln_steps:,} steps over "
            f"{cfg.dln_seeds} seeds (the paper: 10,000 steps)")


def landscape_numbers(cfg, runs: Runs, smooth: dict, lp: dict, hess: dict) -> dict[str, Any]:
    """The numbers Sections 3-6 quote."""
    out = {"scale": scale(cfg), "smooth_margin": f"{SMOOTH_MARGIN:.0%}",
           "lp_margin": f"{LP_MARGIN:.2f}",
           "lr": cfg.lr, "lr_large": cfg.lr_large, "dln_lr": cfg.dln_lr,
           "dln_seeds": cfg.dln_seeds, "dln_steps": f"{cfg.dln_steps:,}", "steps": cfg.steps,
           "width": cfg.width, "profile": cfg.profile, "window": cfg.window_steps,
           "landscape_every": cfg.landscape_every, "hessian_every": cfg.hessian_every,
           "normality_p": f"{NORMALITY_P:g}", "hist_layer": HIST_LAYER["vgg"],
           "dln_hist_layer": HIST_LAYER["dln"],
           "factors_vgg": f"{VGG_FACTORS[0]:g} to {VGG_FACTORS[-1]:g}",
           "factors_dln": f"{DLN_FACTORS[0]:g} to {DLN_FACTORS[-1]:g}",
           "n_factors_vgg": len(VGG_FACTORS), "n_factors_dln": len(DLN_FACTORS)}
    for (net, m, lr, key), x in smooth.items():
        out[f"{net}_{m}_{'large' if net == 'vgg' and lr == cfg.lr_large else 'default'}_{key}"] \
            = f"{10 ** x.estimate:.2g}"
    for m, x in lp["acc"].items():
        out[f"acc_{m}"] = x.show()
    for m, x in lp["loss_ratio"].items():
        out[f"dln_loss_{m}"] = f"{10 ** x.estimate:.2g}"
    for m, x in lp["shift"].items():
        out[f"shift_{m}"] = f"{x.estimate:.2f}"
    for m, x in lp["normal"].items():
        out[f"normal_{m}"] = f"{x:.0%}"
    out["hess_vgg"] = f"{10 ** hess['vgg'].estimate:.2g}"
    out["hess_dln"] = f"{10 ** hess['dln'].estimate:.2g}"
    for (net, m), x in hess["index"].items():
        out[f"index_{net}_{m}"] = f"{x:.2g}"
    for m, n2 in hess["norm2"].items():
        out[f"norm2_growth_{m}"] = f"{n2[-1] / n2[0]:.2f}"
    return out


def landscape_key_table(cfg, smooth: dict, lp: dict, hess: dict) -> dict[str, str]:
    """Rows of the key table from Sections 3-6 (log10 ratios to one decimal)."""
    rows = {f"log10 {SMOOTHNESS[key]} ratio, {net.upper()} {m}/standard, lr {lr:g}":
            f"{x.estimate:.1f}" for (net, m, lr, key), x in smooth.items()}
    rows.update({f"VGG train accuracy, {LABELS[m]}, lr {cfg.lr:g}": x.show()
                 for m, x in lp["acc"].items()})
    rows["log10 top Hessian eigenvalue ratio BN/standard, VGG"] = f"{hess['vgg'].estimate:.1f}"
    rows["log10 top Hessian eigenvalue ratio BN/standard, DLN"] = f"{hess['dln'].estimate:.1f}"
    return rows


def landscape_claims(cfg, smooth: dict, lp: dict, hess: dict) -> list[Claim]:
    """The claims of Sections 3-6, every verdict computed from the measurements."""
    rows = []
    sources = {"loss_width": "(a)", "pred_max": "(b)", "beta": "(c)"}
    texts = {"loss_width": "BN makes the loss change less along the gradient",
             "pred_max": "BN makes the gradient more predictive (it changes less along the "
                         "gradient)",
             "beta": "BN lowers the effective beta-smoothness"}
    for key, text in texts.items():
        vgg = [smooth["vgg", "bn", lr, key] for lr in (cfg.lr, cfg.lr_large)]
        rows.append(Claim(
            f"{text}: VGG", f"[STIM18] Sec. 3.2, Fig. 4{sources[key]}", "smaller with BN",
            "BN/standard: " + ", ".join(f"lr {lr:g} {_ratio_text(x)}"
                                        for lr, x in zip((cfg.lr, cfg.lr_large), vgg)),
            verdict(all_agree([smaller(x) for x in vgg])), seeds=1))
        dln = smooth["dln", "bn", cfg.dln_lr, key]
        rows.append(Claim(
            f"{text}: deep linear network", f"[STIM18] App. B, Fig. 10{sources[key]}",
            "smaller with BN", f"BN/standard, lr {cfg.dln_lr:g}: {_ratio_text(dln)}",
            verdict(smaller(dln)), seeds=cfg.dln_seeds))
    acc = lp["acc"]
    rows.append(Claim(
        "l_p normalisations train comparably to BN: VGG", "[STIM18] Sec. 3.3, Fig. 5",
        "'comparable performance to BatchNorm'",
        ", ".join(f"{m} {acc[m].show()}" for m in LP) + f"; BN {acc['bn'].show()} (train acc, "
        f"margin {LP_MARGIN:.2f})",
        verdict(all_agree([equivalent(acc[m], acc["bn"], LP_MARGIN) for m in LP])), seeds=1))
    l1 = lp["loss_ratio"]["l1"]
    rows.append(Claim(
        "On the deep linear network l_1 normalisation trains better than BN",
        "[STIM18] Sec. 3.3, Fig. 12", "'performs even better than BatchNorm'",
        f"final training loss l1/BN {_ratio_text(l1)}", verdict(smaller(l1)),
        seeds=cfg.dln_seeds))
    outcomes = [smaller(smooth[net, p, lr, "beta"]) for p in LP
                for net, lr in (("vgg", cfg.lr), ("dln", cfg.dln_lr))]
    rows.append(Claim(
        "l_p normalisations smooth the landscape as BN does (lower effective beta than the "
        "standard network)", "[STIM18] Sec. 3.3, Figs. 6, 13", "'similar to the effect of "
        "BatchNorm'", "effective beta l_p/standard: " + "; ".join(
            f"{p} VGG {_ratio_text(smooth['vgg', p, cfg.lr, 'beta'])}, DLN "
            f"{_ratio_text(smooth['dln', p, cfg.dln_lr, 'beta'])}" for p in LP),
        verdict(all_agree(outcomes)), seeds=f"1 (VGG), {cfg.dln_seeds} (DLN)"))
    shift = lp["shift"]
    rows.append(Claim(
        "With l_p normalisation the activations shift more than without normalisation",
        "[STIM18] Sec. 3.3", "'larger distributional shift ... than the vanilla networks'",
        f"shift at conv #{HIST_LAYER['vgg']} (what the next layer sees): " + ", ".join(
            f"{p} {shift[p].show()}" for p in LP) + f"; standard {shift['standard'].show()}",
        verdict(all_agree([decide(shift[p], shift["standard"], 0.0) for p in LP])), seeds=1))
    normal = lp["normal"]
    rows.append(Claim(
        "The l_p-normalised activations of the VGG are not Gaussian", "[STIM18] Sec. 3.3, "
        "Figs. 12-13 (histograms)", "non-Gaussian histograms",
        f"VGG units rejected as Gaussian (p < {NORMALITY_P:g}): " + ", ".join(
            f"{p} {normal[p]:.0%}" for p in LP),
        verdict(all_agree([None if normal[p] == 0.5 else normal[p] > 0.5 for p in LP])),
        seeds=1))
    rows.append(Claim(
        "BN lowers the top eigenvalue of the Hessian of the mini-batch loss",
        "this book, beyond the paper (cf. [STIM18] Sec. 3.2)", "-",
        f"|lambda_max| BN/standard: VGG {_ratio_text(hess['vgg'])}, DLN "
        f"{_ratio_text(hess['dln'])}", verdict(all_agree([smaller(hess["vgg"]),
                                                         smaller(hess["dln"])])),
        seeds=f"1 (VGG), {cfg.dln_seeds} (DLN)"))
    return rows


def numbers(cfg, convex: dict, theory: pd.DataFrame, runs: Runs, smooth: dict, lp: dict,
            hess: dict) -> dict[str, Any]:
    """Every number the prose quotes, for :func:`bnutils.infra.report.glue_all`."""
    ls, lg = convex["least squares"], convex["logistic"]
    ok = _convex_ok(convex)
    s = summary(theory)
    out = {
        "convex_steps": cfg.convex_steps, "convex_starts": cfg.convex_starts,
        "n": ls["n"], "d": ls["d"] - 1, "ridge": f"{RIDGE:g}", "planted": f"{PLANTED:g}",
        "unit_scale": f"{UNIT_SCALE:g}", "step_tol": STEP_TOL.value, "exact": str(EXACT),
        "exact_value": EXACT.value, "psd_tol": f"{PSD_TOL:g}",
        "beta_ls": ls["beta"], "beta_lg": lg["beta"], "top_ls": ls["top_solution"],
        "top_lg_start": lg["top_start"], "top_lg_solution": lg["top_solution"],
        "grad_star_lg": lg["grad_star"], "ratio_ls": ls["ratio"], "ratio_lg": lg["ratio"],
        "scaled_ratio": max(c["scaled_ratio"] for c in convex.values()),
        "seed_ratio": max(c["seed_ratio"] for c in convex.values()),
        "scaled_seed_ratio": max(c["scaled_seed_ratio"] for c in convex.values()),
        "planted_ratio": ls["planted_ratio"], "planted_steps": len(ls["planted"]) - 1,
        "k_ls": ok["k_ls"], "k_lg": ok["k_lg"], "eff_ls": ok["eff_ls"], "eff_lg": ok["eff_lg"],
        "beta_eff_lg": lg["sweep"]["beta_eff"], "beta_eff_ls": ls["sweep"]["beta_eff"],
        "beta_eff_lg_rel": lg["sweep"]["beta_eff"] / lg["beta"],
        "n_draws": len(theory), "batch_sizes": ", ".join(map(str, BATCH_SIZES)),
        "gamma_lo": GAMMA_RANGE[0], "gamma_hi": GAMMA_RANGE[1],
        "loss_lo": LOSS_SCALE[0], "loss_hi": LOSS_SCALE[1],
        **draw_counts(theory),
    }
    for key, v in s.items():
        out[f"{key}_holds"] = v["holds"]
        out[f"{key}_worst"] = v["worst"]
        out[f"{key}_abs"] = float(theory[key].abs().max())
    out["random_starts"] = cfg.convex_starts - 1
    iso = theory[theory["isotropic"]]
    fails = iso[~holds(iso, "thm42_variant")]
    small = theory["loss_scale"] < 1
    out["p44_small"] = float(holds(theory[small], "thm44_printed").mean())
    out["p44_large"] = float(holds(theory[~small], "thm44_printed").mean())
    out["thm41_negative"] = int((theory["thm41_printed"] + theory["thm41_lhs"] < 0).sum())
    out["iso_fail"] = len(fails)
    out["iso_fail_min_ratio"] = float(fails["norm_ratio"].min()) if len(fails) else float("nan")
    out["iso_hold_max_ratio"] = float(iso[holds(iso, "thm42_variant")]["norm_ratio"].max())
    return out | landscape_numbers(cfg, runs, smooth, lp, hess)


def key_table(cfg, convex: dict, theory: pd.DataFrame, smooth: dict, lp: dict, hess: dict
              ) -> MarkdownTable:
    """The numbers the regression tests compare."""
    ls, lg = convex["least squares"], convex["logistic"]
    ok = _convex_ok(convex)
    s = summary(theory)
    values = {
        "beta, least squares": fmt(ls["beta"], 4),
        "beta, logistic (lambda_max(A^T A)/(4n) + ridge)": fmt(lg["beta"], 4),
        "worst gap / bound, least squares": fmt(ls["ratio"], 2),
        "worst gap / bound, logistic": fmt(lg["ratio"], 2),
        "largest stable step x beta/2, least squares": fmt(ok["k_ls"], 3),
        "largest stable step x beta/2, logistic": fmt(ok["k_lg"], 3),
        "effective beta / beta at that step, logistic": fmt(lg["sweep"]["beta_eff"] / lg["beta"],
                                                            2),
        "top Hessian eigenvalue at x*, logistic": fmt(lg["top_solution"], 3),
    }
    for key, v in s.items():
        values[f"{v['label']}: holds on"] = f"{v['holds']}/{v['n']}"
    return key_numbers(values | landscape_key_table(cfg, smooth, lp, hess))


def claims(cfg, convex: dict, theory: pd.DataFrame, smooth: dict, lp: dict, hess: dict
           ) -> MarkdownTable:
    """The claims table of Chapter 3, every verdict computed from the measurements."""
    ls, lg = convex["least squares"], convex["logistic"]
    ok = _convex_ok(convex)
    s = summary(theory)
    n = len(theory)
    starts = 2 * len(ls["runs"])
    c = draw_counts(theory)
    iso = theory[theory["isotropic"]]
    iso_small = iso[iso["norm_ratio"] <= 1]

    def rate(key: str, sub: pd.DataFrame | None = None) -> str:
        sub = theory if sub is None else sub
        return f"holds on {int(holds(sub, key).sum())}/{len(sub)} draws"

    scaled = max(x["scaled_ratio"] for x in convex.values())
    rows = [
        Claim("GD with step 1/beta on a convex beta-smooth f: f(x_t) - f* <= 2 beta ||x_0 - x*||^2"
              " / (t + 4) at every t", "Nesterov (2004) Cor. 2.1.2; Bubeck (2015) Thm. 3.3; "
              "seed 002 (blog, secondary)", "bound",
              f"worst ratio to the bound: {fmt(ls['ratio'], 2)} (least squares), "
              f"{fmt(lg['ratio'], 2)} (logistic); {fmt(scaled, 2)} with x in units "
              f"1/{UNIT_SCALE:g}", verdict(ok["bound"]), seeds=starts),
        Claim("The same bound as printed: 2 beta ||x_1 - x*|| / (t - 1), no square",
              "seed 002 (blog)", "bound",
              f"worst ratio {fmt(max(x['seed_ratio'] for x in convex.values()), 2)}; "
              f"{fmt(max(x['scaled_seed_ratio'] for x in convex.values()), 2)} with x in units "
              f"1/{UNIT_SCALE:g}", verdict(ok["seed"]), seeds=starts),
        Claim("On a quadratic, steps beyond 2/beta diverge", "classical (derived in the text)",
              "threshold 2/beta",
              f"largest stable step {fmt(ok['k_ls'], 4)} x 2/beta; at {PLANTED:g}/beta the gap "
              f"exceeds the bound {fmt(ls['planted_ratio'], 2)}-fold",
              verdict(ok["threshold"]), seeds=1),
        Claim("A smaller (effective) beta allows a larger step", "seed 002 (blog); [STIM18] "
              "Sec. 3.1-3.2 (paraphrase)", "larger steps",
              f"logistic: largest stable step {fmt(ok['k_lg'], 3)} x 2/beta, where the effective "
              f"beta along the run is {fmt(lg['sweep']['beta_eff'] / lg['beta'], 2)} beta "
              f"(step x beta_eff / 2 = {fmt(ok['eff_lg'], 2)}; least squares "
              f"{fmt(ok['eff_ls'], 3)})",
              verdict(ok["k_lg"] > 1 + STEP_TOL.bound
                      and max(ok["eff_lg"], ok["eff_ls"]) <= 1 + STEP_TOL.bound), seeds=2),
        Claim("dLhat/dy_j = (gamma/(m sigma_j)) (m g - 1<1, g> - yhat_j <g, yhat_j>)",
              "[STIM18] App. C, Fact C.1", "exact gradient",
              f"max relative difference to autograd {EXACT.show(s['grad']['worst'])}",
              verdict(s["grad"]["holds"] == n), seeds=n),
        Claim("||grad_{y_j} Lhat||^2 <= (gamma^2/sigma_j^2)(||grad L||^2 - (1/m)<1, grad L>^2 - "
              "(1/sqrt(m)) <grad L, yhat_j>^2)", "[STIM18] Thm. 4.1 (as printed)",
              "inequality", f"{rate('thm41_printed')}; worst relative slack "
              f"{fmt(s['thm41_printed']['worst'], 2)}",
              verdict(s["thm41_printed"]["holds"] == n), seeds=n),
        Claim("The same with 1/m in place of 1/sqrt(m), as an equality", "[STIM18] Thm. 4.1, "
              "proof (App. C)", "projection argument",
              f"equality on {s['thm41_proof']['holds']}/{n} draws (relative residual {EXACT})",
              verdict(s["thm41_proof"]["holds"] == n), seeds=n),
        Claim("(grad Lhat)^T (d2 Lhat/dy_j dy_j) (grad Lhat) <= (gamma^2/sigma^2) (grad Lhat)^T "
              "H_jj (grad Lhat) - (gamma/(m sigma^2)) <ghat_j, yhat_j> ||grad Lhat||^2",
              "[STIM18] Thm. 4.2", "inequality",
              f"{rate('thm42')}, with equality ({EXACT}); H_jj PSD on {c['n_psd']}, indefinite "
              f"on {c['n_indefinite']}; <ghat, yhat> >= 0 on {c['n_pos']}",
              verdict(s["thm42"]["holds"] == n), seeds=n),
        Claim("If H_jj preserves the relative norms of ghat_j and grad Lhat: the same with "
              "ghat_j^T H_jj ghat_j in the first term", "[STIM18] Thm. 4.2 (second part)",
              "inequality", f"H_jj = cI: {rate('thm42_variant', iso)}; all draws: "
              f"{rate('thm42_variant')}", verdict(bool(holds(iso, "thm42_variant").all())),
              seeds=len(iso)),
        Claim("The variant when also ||grad Lhat|| <= ||ghat_j|| (e.g. gamma <= sigma_j)",
              "derived here", "inequality", f"H_jj = cI: {rate('thm42_variant', iso_small)}",
              verdict(bool(holds(iso_small, "thm42_variant").all())), seeds=len(iso_small)),
        Claim("A BN configuration with gamma = sigma_j (beta = mu_j) gives the same activations, "
              "so every minimum of the standard landscape is kept", "[STIM18] Obs. 4.3",
              "existence", f"max relative |z - y| {EXACT.show(s['obs43']['worst'])}",
              verdict(s["obs43"]["holds"] == n), seeds=n),
        Claim("ghat_j <= (gamma^2/sigma_j^2)(g_j^2 - m mu_g^2 - lambda^2 <grad_{y_j} L, yhat_j>^2),"
              " g_j, ghat_j the worst squared weight-gradient norms over ||X|| <= lambda",
              "[STIM18] Thm. 4.4 (read literally)", "inequality",
              f"{rate('thm44_printed')} (loss factors {LOSS_SCALE[0]:g} to {LOSS_SCALE[1]:g})",
              verdict(s["thm44_printed"]["holds"] == n), seeds=n),
        Claim("||grad_{W_j} Lhat||^2 <= (gamma^2/sigma_j^2)(g_j - lambda^2 m mu_g^2 - "
              "(lambda^2/m) <ghat_j, yhat_j>^2), g_j = lambda^2 ||ghat_j||^2, worst case attained",
              "[STIM18] Thm. 4.4 / C.1, as derived here", "inequality",
              f"{rate('thm44_derived')}; worst case attained on {s['thm44_max']['holds']}/{n}",
              verdict(s["thm44_derived"]["holds"] == n and s["thm44_max"]["holds"] == n),
              seeds=n),
        Claim("If <W0, W*> > 0: ||W0 - What*||^2 <= ||W0 - W*||^2 - (||W*||^2 - <W*, W0>)^2 / "
              "||W*||^2", "[STIM18] Lemma 4.5", "inequality",
              f"{rate('lemma45')}, with equality for the projection on the ray "
              f"(BN loss constant along it on {s['lemma45_invariance']['holds']}/{n})",
              verdict(s["lemma45"]["holds"] == n and s["lemma45_invariance"]["holds"] == n),
              seeds=n),
        Claim("The same without the square on (||W*||^2 - <W*, W0>)", "seed 002 (blog)",
              "inequality", rate("lemma45_seed"), verdict(s["lemma45_seed"]["holds"] == n),
              seeds=n),
    ]
    return claims_table(rows + landscape_claims(cfg, smooth, lp, hess))
