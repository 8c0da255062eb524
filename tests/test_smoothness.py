"""Tests of the measurements of Chapter 3 (bnutils.chapters.smoothness)."""
import math

import numpy as np
import pytest
import torch
from helpers import randn

from bnutils.chapters import smoothness as ch
from bnutils.core.bn import batch_norm_formula

# --------------------------------------------------------------------------------------------
# Section 1: the convex case
# --------------------------------------------------------------------------------------------


def _problem(kind, n=60, d=5, seed=0, ridge=0.0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d)) * np.linspace(0.3, 2.0, d)
    b = np.sign(A @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n))
    return ch.ConvexProblem("toy", kind, A, b, ridge=ridge)


def test_beta_and_minimiser():
    q = _problem("quadratic")
    assert abs(q.beta - np.linalg.eigvalsh(q.A.T @ q.A / len(q.b))[-1]) < 1e-12
    assert np.linalg.norm(q.grad(q.x_star)) < 1e-12
    lg = _problem("logistic", ridge=1e-2)
    top = np.linalg.eigvalsh(lg.A.T @ lg.A)[-1] / (4 * len(lg.b)) + 1e-2
    assert abs(lg.beta - top) < 1e-12
    assert np.linalg.norm(lg.grad(lg.x_star)) < 1e-12
    # beta bounds the Hessian everywhere; at x = 0 (all sigmoids at 1/2) it is attained
    assert np.linalg.eigvalsh(lg.hessian(np.zeros(5)))[-1] == pytest.approx(lg.beta, rel=1e-12)
    x = np.random.default_rng(1).standard_normal(5)
    assert np.linalg.eigvalsh(lg.hessian(x))[-1] < lg.beta
    # the gap and the gradient against their definitions
    assert q.gap(x) == pytest.approx(q.f(x) - q.f(q.x_star), rel=1e-10)
    assert lg.gap(x) == pytest.approx(lg.f(x) - lg.f(lg.x_star), rel=1e-10)
    fd = np.array([(lg.f(x + 1e-6 * e) - lg.f(x - 1e-6 * e)) / 2e-6 for e in np.eye(5)])
    assert np.allclose(lg.grad(x), fd, atol=1e-8)


@pytest.mark.parametrize("kind, ridge", [("quadratic", 0.0), ("logistic", 1e-2)])
def test_convex_bound_holds_at_step_one_over_beta(kind, ridge):
    p = _problem(kind, ridge=ridge)
    x0 = np.full(5, 3.0)
    gaps, eff = ch.gd_run(p, x0, 1 / p.beta, 300)
    assert len(gaps) == 301 and ch.monotone(gaps, 300)
    r = ch.bound_ratios(gaps, p.beta, np.linalg.norm(x0 - p.x_star))
    assert r.max() <= 1.0
    # the ratio at t = 0 is (f(x0) - f*) / (beta ||x0 - x*||^2 / 2) <= 1 by smoothness
    assert r[0] == pytest.approx(gaps[0] / (p.beta * np.linalg.norm(x0 - p.x_star) ** 2 / 2))
    assert 0 < eff <= p.beta * (1 + 1e-12)


def test_planted_violation_is_detected():
    """A step of 2.5/beta on a quadratic diverges: the bound check must see it."""
    p = _problem("quadratic")
    x0 = np.full(5, 3.0)
    gaps, _ = ch.gd_run(p, x0, ch.PLANTED / p.beta, 300)
    assert not ch.monotone(gaps, 300)
    assert ch.bound_ratios(gaps, p.beta, np.linalg.norm(x0 - p.x_star)).max() > 1e3
    # the run stops once the gap has blown up
    short, _ = ch.gd_run(p, x0, 3.0 / p.beta, 10_000, blow_up=1e6)
    assert len(short) < 10_001 and short[-1] > 1e6 * short[0]


def test_largest_stable_step_of_a_quadratic_is_two_over_beta():
    p = _problem("quadratic")
    sweep = ch.largest_stable_step(p, np.zeros(5), 2000)
    assert abs(sweep["k_max"] / 2 - 1) < 0.01
    assert sweep["beta_eff"] <= p.beta * (1 + 1e-12)
    grid, final = sweep["grid"], sweep["final"]
    assert np.all(final[grid < 1.9] < 1) and np.all(final[grid > 2.1] > 1)


def test_seed_bound_is_not_invariant_under_a_change_of_units():
    p = _problem("quadratic")
    x0 = np.full(5, 3.0)
    q = p.rescaled(10.0)
    g1, _ = ch.gd_run(p, x0, 1 / p.beta, 100)
    g2, _ = ch.gd_run(q, 10.0 * x0, 1 / q.beta, 100)
    assert np.allclose(g1, g2, rtol=1e-9)  # GD visits the same points
    r1, r2 = (np.linalg.norm(x - pr.x_star) for x, pr in ((x0, p), (10.0 * x0, q)))
    assert np.allclose(ch.bound_ratios(g1, p.beta, r1), ch.bound_ratios(g2, q.beta, r2))
    # seed 002's bound, without the square, changes by the factor of the units
    assert np.allclose(ch.seed_bound_ratios(g2, q.beta, r2),
                       10.0 * ch.seed_bound_ratios(g1, p.beta, r1))


# --------------------------------------------------------------------------------------------
# Section 2: the statements of [STIM18] Sec. 4
# --------------------------------------------------------------------------------------------


def _hand_case():
    """y = (0, 1, 2): mu = 1, sigma^2 = 2/3, yhat = (-1, 0, 1)/sqrt(2/3); g = (1, 0, 0)."""
    y = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    g = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    yhat, mu, sigma = ch.standardize(y)
    return y, g, yhat, float(sigma)


def test_standardize_and_gradient_formula_by_hand():
    y, g, yhat, sigma = _hand_case()
    assert sigma == pytest.approx(math.sqrt(2 / 3))
    assert torch.allclose(yhat, torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) / sigma)
    # (1/(3 sigma)) (3g - 1 - yhat <g, yhat>) = (0.5, -1, 0.5) / (3 sigma)
    v = ch.bn_grad_formula(g, yhat, 1.0, sigma)
    assert torch.allclose(v, torch.tensor([0.5, -1.0, 0.5], dtype=torch.float64) / (3 * sigma))
    assert float(v @ v) == pytest.approx(0.25)


def test_gradient_formula_matches_autograd():
    for seed, (m, n) in enumerate([(3, 1), (7, 3), (32, 5)]):
        y, t = randn(m, n, seed=seed), randn(m, n, seed=seed + 10)
        gamma = torch.rand(n, dtype=torch.float64) + 0.5
        beta = randn(n, seed=seed + 20)

        def loss(y):
            return (torch.tanh(batch_norm_formula(y, gamma, beta, 0.0)) * t).sum()

        z = batch_norm_formula(y, gamma, beta, 0.0).requires_grad_()
        g = torch.autograd.grad((torch.tanh(z) * t).sum(), z)[0]
        yy = y.clone().requires_grad_()
        auto = torch.autograd.grad(loss(yy), yy)[0]
        for j in range(n):
            yhat, _, sigma = ch.standardize(y[:, j])
            v = ch.bn_grad_formula(g[:, j], yhat, float(gamma[j]), float(sigma))
            assert torch.allclose(v, auto[:, j], atol=1e-12)


def test_thm41_coefficients_by_hand():
    _, g, yhat, sigma = _hand_case()
    # ||grad Lhat||^2 = 1/4 (above); with c = 1/m: 1.5 (1 - 1/3 - 1.5/3) = 1/4, an equality
    assert ch.thm41_rhs(g, yhat, 1.0, sigma, 1 / 3) == pytest.approx(0.25)
    # with the printed c = 1/sqrt(3): 1.5 (2/3 - 1.5/sqrt(3)) < 0, below a squared norm
    printed = ch.thm41_rhs(g, yhat, 1.0, sigma, 1 / math.sqrt(3))
    assert printed == pytest.approx(1.5 * (2 / 3 - 1.5 / math.sqrt(3))) and printed < 0


def test_thm42_is_an_identity_against_explicit_hessians():
    m = 6
    y, t = randn(m, seed=1), randn(m, seed=2)
    gamma, beta = 1.7, 0.3
    gvec, bvec = torch.tensor([gamma], dtype=torch.float64), torch.tensor([beta],
                                                                         dtype=torch.float64)

    def downstream(z):
        return (torch.tanh(z) * t).sum() + 0.3 * (z ** 3).sum()  # indefinite Hessian

    def lhat(u):
        return downstream(batch_norm_formula(u[:, None], gvec, bvec, 0.0)[:, 0])

    z = batch_norm_formula(y[:, None], gvec, bvec, 0.0)[:, 0]
    g = torch.autograd.functional.jacobian(downstream, z)
    H = torch.autograd.functional.hessian(downstream, z)
    assert torch.linalg.eigvalsh(H)[0] < 0
    v = torch.autograd.functional.jacobian(lhat, y)
    Q = float(v @ torch.autograd.functional.hessian(lhat, y) @ v)
    yhat, _, sigma = ch.standardize(y)
    rhs = ch.thm42_rhs(float(v @ H @ v), g, yhat, v, gamma, float(sigma))
    assert Q == pytest.approx(rhs, rel=1e-10, abs=1e-12)
    # the variant replaces v^T H v by g^T H g in the first term
    var = ch.thm42_variant_rhs(float(g @ H @ g), g, yhat, v, gamma, float(sigma))
    assert var - rhs == pytest.approx(gamma ** 2 / float(sigma) ** 2
                                      * float(g @ H @ g - v @ H @ v), rel=1e-10)


def test_thm44_readings_by_hand():
    _, g, yhat, sigma = _hand_case()
    lam = 2.0
    v = ch.bn_grad_formula(g, yhat, 1.0, sigma)
    # derived: lambda^2 ||grad_{y_j} Lhat||^2 = 4 * 1/4
    assert ch.thm44_derived_rhs(g, yhat, 1.0, sigma, lam) == pytest.approx(1.0)
    # printed: 1.5 (g_j^2 - 3 (1/3)^2 - 4 * 1.5) with g_j = 4
    assert ch.thm44_printed_rhs(g, yhat, 1.0, sigma, lam) == pytest.approx(
        1.5 * (16 - 1 / 3 - 6))
    X = ch.worst_input(v, 4, lam)
    assert float(torch.linalg.matrix_norm(X, ord=2)) == pytest.approx(lam)
    assert float((X.T @ v).norm() ** 2) == pytest.approx(lam ** 2 * float(v @ v))


def test_lemma45_by_hand():
    W0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    out = ch.lemma45(W0, torch.tensor([2.0, 2.0], dtype=torch.float64))
    # c = 2/8, closest point (0.5, 0.5): ||W0 - c W*||^2 = 0.5 = 5 - (8 - 2)^2 / 8
    assert out["c"] == pytest.approx(0.25)
    assert out["lhs"] == pytest.approx(0.5) and out["rhs"] == pytest.approx(0.5)
    assert out["rhs_seed"] == pytest.approx(5 - 6 / 8)
    # at a small scale the seed's version (no square) claims too much
    small = ch.lemma45(0.1 * W0, torch.tensor([0.1, 0.1], dtype=torch.float64))
    assert small["lhs"] == pytest.approx(small["rhs"]) and small["rhs_seed"] < small["lhs"]
    with pytest.raises(ValueError, match="> 0"):
        ch.lemma45(W0, torch.tensor([-1.0, 1.0], dtype=torch.float64))


def test_observation43_and_draws():
    gen = torch.Generator().manual_seed(5)
    rows = [ch.theory_draw(ch.random_net(gen), gen) for _ in range(12)]
    for r in rows:
        for key, (_, kind) in ch.STATEMENTS.items():
            if kind == "identity" or key in ("thm42", "lemma45"):
                assert abs(r[key]) < 1e-10, (key, r)
        assert r["thm44_derived"] > -1e-10
        # the printed Thm. 4.1 is violated by the predicted amount
        assert -r["thm41_printed"] == pytest.approx(r["thm41_predicted"], rel=1e-8, abs=1e-14)
        # H = cI: the variant holds exactly when ||grad Lhat|| <= ||ghat||
        if r["isotropic"]:
            assert (r["thm42_variant"] > -1e-10) == (r["norm_ratio"] <= 1 + 1e-12)
    assert {r["kind"] for r in rows} <= set(ch.DOWNSTREAM)


def test_holds_and_summary():
    import pandas as pd
    df = pd.DataFrame({k: [0.0, 0.0] for k in ch.STATEMENTS})
    df["grad"] = [1e-16, 1e-3]            # an identity with one bad draw
    df["thm42_variant"] = [0.5, -1e-12]   # an inequality holding within rounding
    df["thm41_printed"] = [-0.2, 0.1]
    s = ch.summary(df)
    assert s["grad"]["holds"] == 1 and s["grad"]["worst"] == pytest.approx(1e-3)
    assert s["thm42_variant"]["holds"] == 2 and not s["thm42_variant"]["equality"]
    assert s["thm41_printed"]["holds"] == 1 and s["thm41_printed"]["worst"] == -0.2


def test_profiles_and_chapter_outputs_on_a_small_run():
    with pytest.raises(ValueError, match="convex_starts"):
        ch.PROFILES.configure(profile="quick", convex_starts=0)
    cfg = ch.PROFILES.configure(profile="quick", n_draws=8, convex_steps=60, convex_starts=2)
    convex = ch.convex_runs(cfg.convex_steps, cfg.convex_starts, cfg.seed)
    theory = ch.theory_checks(cfg.n_draws, cfg.seed)
    assert len(theory) == 8 and set(ch.STATEMENTS) <= set(theory.columns)
    assert convex["least squares"]["ratio"] <= 1 and convex["logistic"]["ratio"] <= 1
    runs = fake_runs(cfg)
    smooth, lp, hess = (ch.smoothness_tables(cfg, runs), ch.lp_summary(cfg, runs),
                        ch.hessian_summary(cfg, runs))
    nums = ch.numbers(cfg, convex, theory, runs, smooth, lp, hess)
    assert nums["n_draws"] == 8 and nums["thm41_proof_holds"] == 8
    text = repr(ch.claims(cfg, convex, theory, smooth, lp, hess)) + repr(
        ch.key_table(cfg, convex, theory, smooth, lp, hess))
    assert "[STIM18] Thm. 4.1" in text and "reproduced" in text
    for table in (ch.convex_table(convex), ch.theory_table(theory), ch.thm42_table(theory),
                  ch.worst_draws(theory)):
        assert repr(table).startswith("|")



def fake_history(rng, scale: float, steps: int = 20, points: int = 5):
    """A History with the records of the shared runs: landscape measures whose loss range,
    gradient change and effective beta are ``scale`` times a common pattern, a Hessian record,
    and activation samples."""
    from bnutils.core.train import History

    base = np.linspace(1.0, 2.0, points)[:, None] * np.linspace(1.0, 3.0, 4)[None, :]
    at = np.arange(points) * 4
    measures = {"landscape_loss": 2.0 + scale * base, "landscape_grad_diff": scale * base,
                "landscape_step_norm": np.ones((points, 4)),
                "hessian_top": scale * np.array([10.0, 12.0]), "param_norm2": np.array([1.0, 2.0])}
    steps_of = {k: (at if k.startswith("landscape") else np.array([0, 8])) for k in measures}
    samples = rng.standard_normal((3, 16, 256))
    probes = {f"post{layer}": samples for layer in (3, 9)}
    return History(train_loss=np.full(steps, 10.0 * scale), train_acc=np.full(steps, 0.5),
                   eval_steps=np.array([0, 10, 20]), test_loss=np.zeros(3),
                   test_acc=np.full(3, 0.5), probes=probes, measures=measures,
                   measure_steps=steps_of, steps=steps, seconds=1.0, probe_seconds=0.5,
                   probe_times={"LandscapeProbe": 0.5})


def fake_runs(cfg) -> "ch.Runs":
    """Runs in which BN and every l_p normalisation are twice as smooth as the standard network."""
    rng = np.random.default_rng(0)
    scale = {"standard": 1.0, "bn": 0.5, "l1": 0.5, "l2": 0.5, "linf": 0.5}
    vgg = {(m, lr): fake_history(rng, scale[m]) for m in ch.LANDSCAPE
           for lr in (cfg.lr, cfg.lr_large)}
    vgg.update({(p, cfg.lr): fake_history(rng, scale[p]) for p in ch.LP})
    dln = {m: [fake_history(rng, scale[m]) for _ in range(3)] for m in scale}
    return ch.Runs(vgg=vgg, dln=dln)


def test_landscape_verdicts_follow_the_ratios():
    cfg = ch.PROFILES.configure(profile="quick")
    runs = fake_runs(cfg)
    smooth = ch.smoothness_tables(cfg, runs)
    ratio = smooth["vgg", "bn", cfg.lr, "beta"]
    assert ratio.estimate == pytest.approx(np.log10(0.5)) and ch.smaller(ratio) is True
    assert ch.smaller(smooth["dln", "bn", cfg.dln_lr, "pred_max"]) is True
    hess = ch.hessian_summary(cfg, runs)
    assert hess["vgg"].estimate == pytest.approx(np.log10(0.5))
    rows = ch.landscape_claims(cfg, smooth, ch.lp_summary(cfg, runs), hess)
    by_claim = {r.claim: r.verdict for r in rows}
    assert by_claim["BN lowers the effective beta-smoothness: VGG"] == "reproduced"
    assert by_claim["BN lowers the top eigenvalue of the Hessian of the mini-batch loss"] == \
        "reproduced"
    # the same runs with BN rougher than the standard network turn the verdicts over
    runs.vgg = {k: (fake_history(np.random.default_rng(1), 2.0) if k[0] == "bn" else h)
                for k, h in runs.vgg.items()}
    smooth = ch.smoothness_tables(cfg, runs)
    assert ch.smaller(smooth["vgg", "bn", cfg.lr, "beta"]) is False
    rows = ch.landscape_claims(cfg, smooth, ch.lp_summary(cfg, runs), hess)
    assert {r.claim: r.verdict for r in rows}[
        "BN lowers the effective beta-smoothness: VGG"] == "not reproduced"


def test_smaller_needs_the_whole_interval_past_the_margin():
    from bnutils.measure.stats import Interval

    bound = -np.log10(1 + ch.SMOOTH_MARGIN)
    assert ch.smaller(Interval(-1.0, -1.2, -0.8, 3)) is True
    assert ch.smaller(Interval(0.0, -0.01, 0.01, 3)) is False
    assert ch.smaller(Interval(bound, bound - 0.1, bound + 0.1, 3)) is None


def test_paired_ratio_leaves_out_steps_without_a_ratio(monkeypatch):
    values = {"a": np.array([10.0, 100.0, 1.0]), "b": np.array([1.0, 1.0, 0.0])}
    monkeypatch.setattr(ch, "landscape", lambda h: {"loss_width": values[h]})
    r = ch.paired_ratio(["a"], ["b"], "loss_width")   # one run each: steps 1 and 2 only
    assert r.estimate == pytest.approx(1.5) and r.n == 2
    r = ch.paired_ratio(["a", "a"], ["b", "b"], "loss_width")   # two seeds
    assert r.estimate == pytest.approx(1.5) and r.n == 2
