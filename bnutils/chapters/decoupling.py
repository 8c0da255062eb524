"""Chapter 4, Length-direction decoupling ([KDL+19] Sec. 2-3): BN as a reparametrisation, OLS with
BN and the generalised Rayleigh quotient, and the rates of gradient descent on both forms.

Notation follows [KDL+19]: inputs x with E[x] = 0 and covariance S (spectrum in [mu, L]); a BN
unit computes x^T wtilde with wtilde = g w / ||w||_S (:func:`bnutils.measure.linalg.bn_weight`).
Ordinary least squares, with u = E[-y x],

    f_OLS(wtilde) = 2 u^T wtilde + wtilde^T S wtilde    (+ const)      ([KDL+19] Eq. 5)
    f(w, g)       = 2 g u^T w / ||w||_S + g^2                          ([KDL+19] Eq. 6)

The length minimising f for a fixed w is g*(w) = -u^T w / ||w||_S, which leaves
f(w, g*(w)) = -rho(w), the generalised Rayleigh quotient of (u u^T, S)
(:mod:`bnutils.measure.rayleigh`). Everything is float64 torch so the curves reach 1e-28 before
rounding bites.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from ..infra import report, validate
from ..infra.cache import cached_driver
from ..infra.config import ChapterProfiles
from ..infra.plotting import COLORS, done, subplots
from ..infra.report import Below, Claim, MarkdownTable, claims_table, fmt, key_numbers, verdict
from ..measure.linalg import (DTYPE, bn_weight, check_spd, empirical_cov, gaussian_samples,
                              s_norm, spd_matrix)
from ..measure.rayleigh import (rayleigh, rayleigh_gap, rayleigh_grad, rayleigh_local_rate,
                                rayleigh_max)
from ..measure.stats import (Interval, equivalent, fit_linear_rate, is_linear, paired_log_ratio,
                             slope_ci)

PROFILES = ChapterProfiles(
    "04", "Length-direction decoupling",
    quick=dict(n_dim=20, kappas=[10, 30, 100, 300], n_seeds=3, n_samples=512, kappa=30.0),
    full=dict(n_dim=100, kappas=[10, 30, 100, 300, 1000, 3000], n_seeds=10, n_samples=4096,
              kappa=30.0),
)

#: Thresholds of the claims, written once.
EXACT = Below(1e-10)
CONSTANT = Below(1e-9)   # relative spread of c ||grad(cw)||
RATE_RTOL = 0.05         # a fitted rate "agrees" when its CI overlaps the prediction +- 5%
ORDER_MARGIN = 0.2       # "same order": the exponents a of |slope| ~ kappa^-a agree within 0.2
NOT_SLOWER = 0.10        # "not slower": the BN/GD speed ratio's interval is not below 1/(1 + 10%)
BOUND_FLOOR = 1e-26      # the bound is checked at every t where it is above this times the start
ON_BOUND = Below(1e-9)   # how far (relative) a curve may rise above the bound (rounding)
SCALES = [1e-3, 1e-1, 1.0, 1e1, 1e3]
LENGTH = 1.5             # the length g of the scale-invariance check


def setup(namespace: dict[str, Any]):
    """Configure the chapter from its notebook's parameters (:func:`bnutils.infra.report.setup`);
    the problems are tiny, so one thread."""
    cfg = report.setup(PROFILES, namespace)
    torch.set_num_threads(1)
    return cfg


# ------------------------------------------------------------------------------------------------
# OLS, a BN unit, and the BN form of OLS
# ------------------------------------------------------------------------------------------------


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
        """S from :func:`bnutils.measure.linalg.spd_matrix`, u ~ N(0, I_d), all from one seeded
        generator."""
        gen = torch.Generator().manual_seed(seed)
        S = spd_matrix(d, kappa, gen, device)
        return cls(S, torch.randn(d, generator=gen, dtype=DTYPE).to(device))


def bn_unit(X: Tensor, w: Tensor, g: float | Tensor) -> Tensor:
    """A linear unit followed by BN over the whole batch ([IS15] Alg. 1, eps = 0, beta = 0):
    g * (Xw - mean) / std, with the biased standard deviation."""
    a = X @ w
    return g * (a - a.mean()) / a.std(correction=0)


def decoupling_checks(X: Tensor, y: Tensor, w: Tensor, g: float,
                      scales: list[float]) -> list[dict[str, float]]:
    """Scale invariance of a BN unit under the squared loss mean((y - BN(Xw))^2) ([IS15] Sec. 3.3,
    [KDL+19] Sec. 2), by autograd at c*w for every c in ``scales``. Each row holds

    - ``max |out(cw) - out(w)|``: the output depends on w only through its direction;
    - ``|out - X wtilde|``: the BN unit equals the reparametrised unit (S = batch covariance);
    - ``cos(w, grad)``: the Euclidean cosine, zero because the loss is 0-homogeneous in w;
    - ``cos_S(w, grad)``: the cosine in the S inner product, w^T S grad / (||w||_S ||grad||_S),
      *not* zero in general;
    - ``cos_S(w, S^-1 grad)``: the S-cosine of the S-gradient S^{-1} grad, zero, since
      <w, S^{-1} grad>_S = w^T grad (the chapter's own derived statement);
    - ``c * ||grad||``: constant, since the gradient scales as 1/c.
    """
    S = empirical_cov(X)
    Xc = X - X.mean(0)
    out0 = bn_unit(X, w, g).detach()
    rows = []
    for c in scales:
        validate.positive_number("every scale", c)
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
            "cos_S(w, S^-1 grad)": float(v @ grad / (s_norm(v, S)
                                                     * s_norm(torch.linalg.solve(S, grad), S))),
            "c * ||grad||": float(c * grad.norm()),
        })
    return rows


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
    """g*(w) = -u^T w / ||w||_S, the root of df/dg for a fixed direction w; it leaves
    f(w, g*(w)) = -rho(w) ([KDL+19] Eq. 7 with B = u u^T)."""
    return -(p.u @ w) / s_norm(w, p.S)


# ------------------------------------------------------------------------------------------------
# The two algorithms and their rates
# ------------------------------------------------------------------------------------------------


def gd_ols(p: OLS, wt0: Tensor, steps: int, lr: float | None = None) -> Tensor:
    """Plain gradient descent on f_OLS with step ``lr`` (default 1/(2L), one over the smoothness
    constant of f_OLS, whose Hessian is 2S). Returns the excess loss f_OLS(wtilde_t) - f_OLS* =
    ||wtilde_t - wtilde*||_S^2 for t = 0..steps (computed this way: no cancellation)."""
    validate.positive_int("steps", steps)
    lr = 1 / (2 * p.L) if lr is None else validate.positive_number("lr", lr)
    star = ols_solution(p)
    wt, out = wt0.clone(), torch.empty(steps + 1, dtype=DTYPE)
    for t in range(steps + 1):
        e = wt - star
        out[t] = e @ p.S @ e
        wt = wt - lr * ols_grad(p, wt)
    return out


def rayleigh_step_size(p: OLS, w: Tensor) -> Tensor:
    """s_t = ||w_t||_S^2 / (2 L rho(w_t)), the direction step of the chapter (we could not
    confirm the exact step of the paper's theorem from its text; this one makes the update below
    exact). With it, w_{t+1} = w_t + s_t grad rho(w_t) = (I - S/L) w_t + (u^T w_t / (L rho)) u,
    whose error in direction contracts by (I - S/L) compressed to the complement of S^{-1}u."""
    return (w @ p.S @ w) / (2 * p.L * rayleigh(p.S, p.u, w))


def gd_bn_ols(p: OLS, w0: Tensor, steps: int) -> Tensor:
    """Gradient descent on the BN form of OLS ([KDL+19] Sec. 3): ascent on rho in the direction w
    with the step :func:`rayleigh_step_size`, the length set to g*(w) (exact for OLS). Returns the
    excess loss f(w_t, g*(w_t)) - f* = rho* - rho(w_t)
    (:func:`bnutils.measure.rayleigh.rayleigh_gap`) for t = 0..steps."""
    validate.positive_int("steps", steps)
    if float(p.u @ w0) == 0.0:
        raise ValueError("w0 must not be orthogonal to u (rho(w0) = 0 is a critical point)")
    w, out = w0.clone(), torch.empty(steps + 1, dtype=DTYPE)
    for t in range(steps + 1):
        out[t] = rayleigh_gap(p.S, p.u, w)
        w = w + rayleigh_step_size(p, w) * rayleigh_grad(p.S, p.u, w)
        w = w / s_norm(w, p.S)  # rho is scale invariant; keep ||w||_S = 1 for tidiness
    return out


def bound_excess(curve: Tensor | np.ndarray, log10_rate: float,
                 floor: float = BOUND_FLOOR) -> float:
    """max over t >= 1 of curve_t / (curve_0 10^(t log10_rate)) - 1, over the iterations where the
    bound 10^(t log10_rate) is above ``floor`` (below, the float64 floor of the curve takes
    over): at most 0 when the non-asymptotic bound curve_t <= rate^t curve_0 holds at every such
    t."""
    e = np.asarray(curve, dtype=float)
    t = np.arange(1, len(e))
    keep = t * log10_rate > np.log10(floor)
    if not keep.any():
        raise ValueError("the bound falls below the floor at once; nothing to check")
    return float(np.max(e[1:][keep] / (e[0] * 10.0 ** (t[keep] * log10_rate))) - 1)


@cached_driver
def condition_sweep(kappas: list[float], d: int, n_seeds: int, seed: int = 0,
                    device: torch.device | str = "cpu", decades: float = 30.0) -> list[dict]:
    """GD on OLS (step 1/(2L), and 1/(mu + L) for reference) and GD on its BN form
    (:func:`gd_bn_ols`) from the same w_0 on ``n_seeds`` random problems per condition number
    kappa = L/mu. Each run lasts long enough for the bound (1 - mu/L)^(2t) to fall by ``decades``
    orders of magnitude. Returns one dict per (kappa, seed) with the excess-loss curves, their
    :func:`bnutils.measure.stats.fit_linear_rate` fits (window [1e-26, 1e-12] x error_0, the
    asymptotic phase), the predicted log10 slopes: ``bound`` = 2 log10(1 - mu/L) and
    ``local`` = 2 log10 :func:`bnutils.measure.rayleigh.rayleigh_local_rate`, and
    :func:`bound_excess` of both curves against the bound. Cached."""
    for k in kappas:
        validate.positive_number("every kappa", k)
        if k <= 1:
            raise ValueError(f"every kappa must be > 1, got {k!r}")
    validate.positive_int("n_seeds", n_seeds)
    rows = []
    for kappa in tqdm(kappas, desc="condition numbers"):
        for s in range(seed, seed + n_seeds):
            p = OLS.random(d, kappa, seed=s, device=device)
            w0 = torch.randn(d, generator=torch.Generator().manual_seed(10_000 + s),
                             dtype=DTYPE).to(device)
            bound = 2 * np.log10(1 - p.mu / p.L)
            steps = int(np.ceil(decades / -bound))
            gd, bn = gd_ols(p, w0, steps).cpu(), gd_bn_ols(p, w0, steps).cpu()
            gd_opt = gd_ols(p, w0, steps, lr=1 / (p.mu + p.L)).cpu()
            rows.append(dict(kappa=kappa, seed=s, gd=gd, bn=bn, bound=bound,
                             local=2 * np.log10(rayleigh_local_rate(p.S, p.u)),
                             fit_gd=fit_linear_rate(gd, upper=1e-12, lower=1e-26),
                             fit_bn=fit_linear_rate(bn, upper=1e-12, lower=1e-26),
                             fit_gd_opt=fit_linear_rate(gd_opt, upper=1e-12, lower=1e-26),
                             excess_gd=bound_excess(gd, bound),
                             excess_bn=bound_excess(bn, bound)))
    return rows


# ------------------------------------------------------------------------------------------------
# The sections of the chapter
# ------------------------------------------------------------------------------------------------


def scale_checks(cfg) -> dict[str, Any]:
    """:func:`decoupling_checks` on a batch of ``cfg.n_samples`` correlated Gaussian inputs
    (condition number ``cfg.kappa``), a random target and w, at every c of :data:`SCALES`."""
    gen = torch.Generator().manual_seed(cfg.seed)
    S_x = spd_matrix(cfg.n_dim, cfg.kappa, gen)
    X = gaussian_samples(cfg.n_samples, S_x, gen)
    y = torch.randn(cfg.n_samples, generator=gen, dtype=DTYPE)
    w = torch.randn(cfg.n_dim, generator=gen, dtype=DTYPE)
    checks = pd.DataFrame(decoupling_checks(X, y, w, g=LENGTH, scales=SCALES))
    return {"table": checks,
            "max_out": float(checks["max |out(cw) - out(w)|"].max()),
            "max_rep": float(checks["|out - X wtilde|"].max()),
            "max_cos": float(checks["cos(w, grad)"].abs().max()),
            "min_cos_s": float(checks["cos_S(w, grad)"].abs().min()),
            "max_cos_sgrad": float(checks["cos_S(w, S^-1 grad)"].abs().max()),
            "spread": float(checks["c * ||grad||"].max() / checks["c * ||grad||"].min() - 1)}


def closed_form_checks(cfg) -> dict[str, float]:
    """The BN form's optimum against -S^{-1}u, and f(w, g*(w)) + rho(w) at a random w."""
    p = OLS.random(cfg.n_dim, cfg.kappa, seed=cfg.seed)
    w_star, _ = rayleigh_max(p.S, p.u)
    bn_opt = bn_weight(w_star, optimal_length(p, w_star), p.S)
    w = torch.randn(cfg.n_dim, generator=torch.Generator().manual_seed(cfg.seed + 1),
                    dtype=DTYPE)
    return {"bn_opt_err": float((bn_opt - ols_solution(p)).norm()),
            "length_err": float((bn_ols_loss(p, w, optimal_length(p, w))
                                 + rayleigh(p.S, p.u, w)).abs())}


def sweep(cfg) -> list[dict]:
    """:func:`condition_sweep` with the chapter's parameters."""
    return condition_sweep(cfg.kappas, cfg.n_dim, cfg.n_seeds, cfg.seed, cfg.device)


def rates_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([dict(kappa=r["kappa"], seed=r["seed"],
                              gd_fit=r["fit_gd"].slope,
                              gd_ci=f'[{r["fit_gd"].lo:.4g}, {r["fit_gd"].hi:.4g}]',
                              gd_theory=r["bound"], bn_fit=r["fit_bn"].slope,
                              bn_ci=f'[{r["fit_bn"].lo:.4g}, {r["fit_bn"].hi:.4g}]',
                              bn_local=r["local"], bound=r["bound"]) for r in rows])


def first_problems(rows: list[dict], seed: int) -> list[dict]:
    """The first problem (seed ``seed``) of each condition number."""
    return [r for r in rows if r["seed"] == seed]


def curves_figure(rows: list[dict], seed: int):
    first = first_problems(rows, seed)
    fig, axes = subplots(1, len(first), width=3.0, height=2.7, sharey=True)
    axes = np.ravel(axes)
    for ax, r in zip(axes, first):
        t = np.arange(len(r["gd"]))
        ax.semilogy(t, r["gd"] / r["gd"][0], color=COLORS["gd"], label="GD on $f_{OLS}$")
        ax.semilogy(t, r["bn"] / r["bn"][0], color=COLORS["bn"], label="GD on BN form")
        ax.semilogy(t, 10 ** (r["bound"] * t), ":", color=COLORS["theory"],
                    label=r"$(1-\mu/L)^{2t}$")
        ax.set_title(rf"$\kappa$ = {r['kappa']:g}")
        ax.set_xlabel("iteration $t$")
        ax.set_ylim(1e-30, 1e3)
    axes[0].set_ylabel("excess loss / its start")
    axes[0].legend(fontsize="small")
    return done(fig)


def rates_figure(rows: list[dict], kappas: list[float]):
    kap = np.array([r["kappa"] for r in rows], dtype=float)
    fig, ax = subplots(width=4.6, height=3.2)
    ax.loglog(kap, [-r["fit_gd"].slope for r in rows], "o", color=COLORS["gd"], mfc="none",
              label="GD on $f_{OLS}$, fitted")
    ax.loglog(kap * 1.06, [-r["fit_bn"].slope for r in rows], "s", color=COLORS["bn"],
              mfc="none", label="GD on BN form, fitted")
    ax.loglog(kap * 1.06, [-r["local"] for r in rows], "x", color=COLORS["bn"],
              label=r"BN, predicted $2\log_{10}(1-\theta_1/L)$")
    grid = np.geomspace(min(kappas), max(kappas), 100)
    ax.loglog(grid, -2 * np.log10(1 - 1 / grid), "-", color=COLORS["theory"],
              label=r"$-2\log_{10}(1-\mu/L)$")
    ax.set_xlabel(r"condition number $\kappa = L/\mu$")
    ax.set_ylabel(r"decades per iteration ($-$slope)")
    ax.legend(fontsize="small")
    return done(fig)


def kappa_exponent(rows: list[dict], key: str) -> Interval:
    """The exponent a of |slope| ~ kappa^-a, fitted by least squares of log10 |slope| on
    log10 kappa over every problem, with its 95% t interval: the order of the rate's dependence
    on the condition number (a = 1 for (1 - 1/kappa)^t)."""
    x = np.log10([r["kappa"] for r in rows])
    y = np.log10([-r[key].slope for r in rows])
    slope, lo, hi = slope_ci(x, y)
    return Interval(-slope, -hi, -lo, len(rows))


def rate_summary(rows: list[dict], cfg) -> dict[str, Any]:
    """Per problem: does each fit agree with its prediction, is each curve linear, does each
    curve stay under the bound (1 - mu/L)^(2t) at every t; the exponents of kappa of both
    methods and whether they are the same order; the speed ratio BN/GD over all problems and
    whether the BN form is not slower; and the reference problem (the first of the largest
    condition number)."""
    ref = [r for r in first_problems(rows, cfg.seed) if r["kappa"] == max(cfg.kappas)][0]
    a_gd, a_bn = kappa_exponent(rows, "fit_gd"), kappa_exponent(rows, "fit_bn")
    ratio = paired_log_ratio([-r["fit_bn"].slope for r in rows],
                             [-r["fit_gd"].slope for r in rows])
    limit = -np.log10(1 + NOT_SLOWER)  # the BN form is slower when its speed ratio is below
    kmin = [r for r in first_problems(rows, cfg.seed) if r["kappa"] == min(cfg.kappas)][0]
    return {
        "ref": ref, "kmin": kmin,
        "gd_ok": [r["fit_gd"].agrees_with(r["bound"], RATE_RTOL) for r in rows],
        "bn_ok": [r["fit_bn"].agrees_with(r["local"], RATE_RTOL) for r in rows],
        "bn_bound_ok": [r["fit_bn"].hi <= r["bound"] * 0.99
                        or r["fit_bn"].agrees_with(r["bound"], RATE_RTOL) for r in rows],
        "gd_linear": [is_linear(r["gd"], r["fit_gd"]) for r in rows],
        "bn_linear": [is_linear(r["bn"], r["fit_bn"]) for r in rows],
        "a_gd": a_gd, "a_bn": a_bn, "same_order": equivalent(a_bn, a_gd, ORDER_MARGIN),
        "ratio": ratio,
        "not_slower": True if ratio.lo > limit else False if ratio.hi < limit else None,
        "excess_bn": max(r["excess_bn"] for r in rows),
        "excess_gd": max(r["excess_gd"] for r in rows),
    }


def scale(cfg) -> str:
    """What this execution ran (for the top of the page)."""
    kappas = ", ".join(f"{k:g}" for k in cfg.kappas)
    return (f"OLS problems in dimension {cfg.n_dim} with condition numbers {kappas}, "
            f"{cfg.n_seeds} random problems each (the paper states its rates without a "
            "benchmark; the full profile goes to dimension 100 and condition number 3,000)")


def numbers(cfg, checks: dict, summary: dict) -> dict[str, Any]:
    """Every number the prose quotes, for :func:`bnutils.infra.report.glue_all`."""
    ref, kmin = summary["ref"], summary["kmin"]
    return {"profile": cfg.profile, "scale": scale(cfg),
            "n_samples": cfg.n_samples, "n_dim": cfg.n_dim, "kappa": f"{cfg.kappa:g}",
            "max_out": checks["max_out"], "max_cos": checks["max_cos"],
            "min_cos_s": checks["min_cos_s"], "max_cos_sgrad": checks["max_cos_sgrad"],
            "spread": checks["spread"],
            "kappas": ", ".join(str(k) for k in cfg.kappas), "n_seeds": cfg.n_seeds,
            "n_problems": len(summary["gd_ok"]),
            "kref": f'{ref["kappa"]:g}', "gd_ref": str(ref["fit_gd"]),
            "bn_ref": str(ref["fit_bn"]), "bound_ref": f'{ref["bound"]:.3g}',
            "speedup": float(ref["fit_bn"].slope / ref["fit_gd"].slope),
            "rate_rtol": f"{RATE_RTOL:.0%}", "order_margin": f"{ORDER_MARGIN:g}",
            "not_slower": f"{NOT_SLOWER:.0%}", "bound_floor": f"{BOUND_FLOOR:.0e}",
            "on_bound": ON_BOUND.value,
            "a_gd": summary["a_gd"].show(3), "a_bn": summary["a_bn"].show(3),
            "ratio": f'{10 ** summary["ratio"].estimate:.3f} '
                     f'[{10 ** summary["ratio"].lo:.3f}, {10 ** summary["ratio"].hi:.3f}]',
            "max_ratio_bn": f'{1 + summary["excess_bn"]:.3f}',
            "max_ratio_gd": f'{1 + summary["excess_gd"]:.3f}',
            "kmin": f'{kmin["kappa"]:g}', "gd_kmin": f'{kmin["fit_gd"].slope:.3g}',
            "gd_opt_kmin": f'{kmin["fit_gd_opt"].slope:.3g}',
            "opt_ratio": f'{kmin["fit_gd_opt"].slope / kmin["fit_gd"].slope:.2g}'}


def key_table(checks: dict, closed: dict, rows: list[dict], summary: dict) -> MarkdownTable:
    ref, n = summary["ref"], len(rows)
    k = f"kappa={ref['kappa']:g}"
    kmin = summary["kmin"]
    return key_numbers({
        f"max |BN(cw) - BN(w)| {EXACT}": EXACT(checks["max_out"]),
        f"max |BN(w) - X wtilde| {EXACT}": EXACT(checks["max_rep"]),
        f"max |cos(w, grad)| {EXACT}": EXACT(checks["max_cos"]),
        "min |cos_S(w, grad)|": float(checks["min_cos_s"]),
        f"max |cos_S(w, S^-1 grad)| {EXACT}": EXACT(checks["max_cos_sgrad"]),
        f"c ||grad(cw)|| constant to {CONSTANT.value}": CONSTANT(checks["spread"]),
        f"||BN optimum - (-S^-1 u)|| {EXACT}": EXACT(closed["bn_opt_err"]),
        f"GD slope, {k}": ref["fit_gd"].slope,
        f"BN slope, {k}": ref["fit_bn"].slope,
        f"predicted 2log10(1-mu/L), {k}": ref["bound"],
        f"predicted 2log10(1-theta/L), {k}": ref["local"],
        f"GD slope at step 1/(mu+L), kappa={kmin['kappa']:g}": kmin["fit_gd_opt"].slope,
        "exponent of kappa: GD / BN form": f'{summary["a_gd"].estimate:.3f} / '
                                           f'{summary["a_bn"].estimate:.3f}',
        f"above the bound at any t, GD / BN form {ON_BOUND}":
            f'{ON_BOUND(max(0.0, summary["excess_gd"]))} / '
            f'{ON_BOUND(max(0.0, summary["excess_bn"]))}',
        "GD fits agreeing with theory": f"{sum(summary['gd_ok'])}/{n}",
        "BN fits agreeing with theta-rate": f"{sum(summary['bn_ok'])}/{n}",
        "GD / BN-form curves linear":
            f"{sum(summary['gd_linear'])}/{n} / {sum(summary['bn_linear'])}/{n}",
    })


def claims(cfg, checks: dict, closed: dict, rows: list[dict], summary: dict) -> MarkdownTable:
    """The claims table of Chapter 4, every verdict computed from the measurements."""
    max_out, max_cos, spread = checks["max_out"], checks["max_cos"], checks["spread"]
    n = len(rows)
    rows_claims = [
        Claim("A BN unit's output depends on w only through its direction",
              "[KDL+19] Sec. 2; [IS15] Sec. 3.3", "BN(x^T (cw)) = BN(x^T w)",
              f"max change {EXACT.show(max_out)} over c in [1e-3, 1e3]", verdict(EXACT(max_out))),
        Claim("The gradient in w is orthogonal to w (Euclidean)", "[KDL+19] Sec. 2",
              "orthogonal", f"max |cos| {EXACT.show(max_cos)}", verdict(EXACT(max_cos))),
        Claim("The S-gradient S^-1 grad is orthogonal to w in the S inner product (the plain "
              "gradient is not)", "this chapter (derived from the row above)",
              "-", f"max |cos_S(w, S^-1 grad)| {EXACT.show(checks['max_cos_sgrad'])}; plain "
              f"gradient: min |cos_S| {fmt(checks['min_cos_s'], 2)}",
              verdict(EXACT(checks["max_cos_sgrad"]))),
        Claim("The gradient in w scales as 1/||w||", "[IS15] Sec. 3.3", "d/d(cw) = (1/c) d/dw",
              f"c ||grad|| relative spread {CONSTANT.show(spread)}", verdict(CONSTANT(spread))),
        Claim("Optimal length g* = -u^T w/||w||_S leaves -rho(w)", "[KDL+19] Sec. 3",
              "closed form", f"|f(w, g*) + rho(w)| {EXACT}" if EXACT(closed["length_err"])
              else f"|f(w, g*) + rho(w)| = {fmt(closed['length_err'], 2)}",
              verdict(EXACT(closed["length_err"]))),
        Claim("BN-form optimum is the OLS optimum -S^-1 u", "[KDL+19] Sec. 3", "closed form",
              f"distance {EXACT.show(closed['bn_opt_err'])}",
              verdict(EXACT(closed["bn_opt_err"]))),
    ]
    first = first_problems(rows, cfg.seed)
    for r in first:
        k = f"kappa={r['kappa']:g}"
        same = [q for q in rows if q["kappa"] == r["kappa"]]
        rows_claims.append(Claim(
            f"GD on the BN form converges linearly, at (1-mu/L)^(2t) or faster ({k})",
            "[KDL+19] Sec. 3, rate of GD on the Rayleigh quotient (step as we reconstruct it)",
            f"slope <= {fmt(r['bound'])}",
            f"{r['fit_bn']}; theta-rate {fmt(r['local'])}; "
            f"{sum(q['fit_bn'].agrees_with(q['local'], RATE_RTOL) for q in same)}/{len(same)} "
            "agree",
            verdict(all(summary["bn_bound_ok"][rows.index(q)] for q in same)),
            seeds=len(same)))
    rows_claims.append(Claim(
        "Non-asymptotic: rho* - rho(w_t) <= (1-mu/L)^(2t) (rho* - rho(w_0)) at every t",
        "[KDL+19] Sec. 3 (bound as we reconstruct it)", "holds for all t",
        f"max over t >= 1 of excess / bound (t with bound > {BOUND_FLOOR:.0e}): "
        f"{fmt(1 + summary['excess_bn'], 3)} (GD on OLS: {fmt(1 + summary['excess_gd'], 3)})",
        verdict(ON_BOUND(max(0.0, summary["excess_bn"]))), seeds=n))
    for r in first:
        k = f"kappa={r['kappa']:g}"
        same = [q for q in rows if q["kappa"] == r["kappa"]]
        rows_claims.append(Claim(
            f"Plain GD on OLS is linear at (1-mu/L)^(2t) ({k})", "classical (derived here)",
            f"slope {fmt(r['bound'])}",
            f"{r['fit_gd']}; {sum(q['fit_gd'].agrees_with(q['bound'], RATE_RTOL) for q in same)}"
            f"/{len(same)} agree",
            verdict(all(q["fit_gd"].agrees_with(q["bound"], RATE_RTOL) for q in same)),
            seeds=len(same)))
    a_gd, a_bn = summary["a_gd"], summary["a_bn"]
    rows_claims.append(Claim(
        "The rate of GD on the normalised OLS objective is of the same order as that of GD on "
        "the original objective",
        "[KDL+19] Sec. 3: 'of the same order as the rate of standard GD on the original "
        "objective'", "same order",
        f"exponent of kappa in the slope: BN form {a_bn.show(3)}, GD {a_gd.show(3)} "
        f"(margin {ORDER_MARGIN:g})", verdict(summary["same_order"]), seeds=n))
    ratio = summary["ratio"]
    rows_claims.append(Claim(
        "The non-convexity of the BN form does not slow GD down",
        "[KDL+19] Sec. 3: its non-convexity 'does not slow gradient-based optimization down'",
        "not slower",
        f"speed ratio BN form/GD {10 ** ratio.estimate:.3f} [{10 ** ratio.lo:.3f}, "
        f"{10 ** ratio.hi:.3f}] over {n} problems (not slower: interval above "
        f"1/{1 + NOT_SLOWER:g})",
        verdict(summary["not_slower"]), seeds=n))
    faster = [r["fit_bn"].slope / r["fit_gd"].slope for r in rows]
    rows_claims.append(Claim(
        "BN makes GD on OLS converge at a faster order than plain GD (linear instead of "
        "sub-linear)", "seed 001 (encyclopedia), a secondary source; it misreads [KDL+19]",
        "linear vs sub-linear",
        f"linear: GD {sum(summary['gd_linear'])}/{n}, BN form {sum(summary['bn_linear'])}/{n} "
        f"problems; exponent ratio BN/GD in [{fmt(min(faster))}, {fmt(max(faster))}]",
        verdict(all(summary["bn_linear"]) and not any(summary["gd_linear"])), seeds=n))
    return claims_table(rows_claims)
