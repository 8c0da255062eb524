"""Chapter 1, The batch normalization transform ([IS15] Alg. 1, Sec. 3, Sec. 3.3, Alg. 2, Fig. 1).

What the chapter measures, each as a function of its parameters:

- :func:`backward_differences`: the hand-written backward pass of [IS15] Sec. 3 against autograd
  and PyTorch;
- :func:`inference_estimates` and :func:`alg2_check`: the two estimates of the population
  statistics (PyTorch's moving averages, [IS15] Alg. 2) and the affine map of inference;
- :func:`scale_invariance_check`: [IS15] Sec. 3.3;
- :func:`fig1_runs`: the MNIST experiment of [IS15] Fig. 1 (cached), :func:`fig1_figure` and
  :func:`fig1_summary`;
- :func:`claims`: the chapter's claims table, from the measurements.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from ..core.bn import BatchNorm, batch_norm, batch_norm_formula, population_statistics
from ..core.data import Data, load_digits_data
from ..core.models import MLP
from ..core.probes import ActivationProbe
from ..core.train import History, cached_train, steps_to
from ..infra import validate
from ..infra.config import ChapterProfiles
from ..infra.plotting import COLORS, LABELS, done, subplots
from ..infra.report import (Below, Claim, MarkdownTable, claims_table, fmt, key_numbers,
                            verdict)
from ..infra import report
from ..measure.shift import percentile_drift

PROFILES = ChapterProfiles(
    "01", "The batch normalization transform",
    quick=dict(dataset="digits", steps=2000, batch_size=60, lr=0.5, eval_every=50),
    full=dict(dataset="auto", steps=50_000, batch_size=60, lr=0.5, eval_every=500),
    choices=dict(dataset=("auto", "mnist", "digits")),
)

#: Thresholds of the claims, written once: rounding level in float64.
EXACT = Below(1e-10)
AFFINE = Below(1e-12)
UNBIASED = 0.02  # |Var / truth - 1| of Alg. 2's estimate, after the stream of batches
#: The layers of the backward check: a dense (m, C) batch and a conv (m, C, H, W) batch.
DENSE, CONV = (60, 100), (16, 8, 6, 6)
#: The stream of :func:`inference_estimates`: batch size, batches, channels, N(mean, var).
STREAM = dict(batch_size=8, n_batches=500, n_channels=100, mean=2.0, var=4.0)
SCALES = (0.01, 0.5, 2.0, 100.0)


def setup(namespace: dict[str, Any]):
    """Configure the chapter from its notebook's parameters (:func:`bnutils.infra.report.setup`)."""
    return report.setup(PROFILES, namespace)


def scale_invariance_check(W: Tensor, u: Tensor, a: float, eps: float = 0.0) -> dict[str, float]:
    """[IS15] Sec. 3.3: BN((aW)u) = BN(Wu), d/du unchanged, d/d(aW) = (1/a) d/dW.

    Passes the batch ``u`` (m, n_in) through the linear map ``W`` (n_out, n_in) and the BN
    transform (gamma = 1, beta = 0, batch statistics), once with W and once with aW, and
    back-propagates the same random upstream gradient. Returns the maximum absolute differences
    ``output`` |BN(aWu) - BN(Wu)|, ``grad_u`` between the two d/du, and ``grad_W``
    |a d/d(aW) - d/dW|. They vanish up to rounding when eps = 0 (eps breaks the invariance
    slightly).
    """
    validate.positive_number("the scale a", a)
    dy = torch.randn(u.shape[0], W.shape[0], dtype=u.dtype,
                     generator=torch.Generator().manual_seed(0))
    ones, zeros = torch.ones(W.shape[0], dtype=W.dtype), torch.zeros(W.shape[0], dtype=W.dtype)
    results = []
    for scale in (1.0, a):
        Ws = (scale * W).detach().requires_grad_()
        us = u.detach().clone().requires_grad_()
        y = batch_norm(us @ Ws.T, ones, zeros, eps)
        y.backward(dy)
        results.append((y.detach(), us.grad, Ws.grad))
    (y1, du1, dW1), (ya, dua, dWa) = results
    return {"output": (ya - y1).abs().max().item(), "grad_u": (dua - du1).abs().max().item(),
            "grad_W": (a * dWa - dW1).abs().max().item()}


def backward_differences(shape: tuple[int, ...], seed: int = 0,
                         dtype: torch.dtype = torch.float64) -> dict[str, dict[str, float]]:
    """Max |difference| of our forward and hand-written backward ([IS15] Sec. 3) from references.

    One random batch of ``shape`` (dense (N, C) or conv (N, C, H, W)), gamma, beta and upstream
    gradient dy. Returns ``{"autograd": {...}, "torch": {...}}`` with entries ``y``, ``dx``,
    ``dgamma``, ``dbeta``: against autograd through :func:`batch_norm_formula`, and against
    ``torch.nn.functional.batch_norm`` (training mode, batch statistics).
    """
    if len(shape) not in (2, 3, 4):
        raise ValueError(f"shape must be (N, C), (N, C, L) or (N, C, H, W), got {shape}")
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = 3 * torch.randn(shape, generator=g, dtype=dtype) + 1
    gamma = torch.rand(c, generator=g, dtype=dtype) + 0.5
    beta = torch.randn(c, generator=g, dtype=dtype)
    dy = torch.randn(shape, generator=g, dtype=dtype)
    references = {
        "autograd": batch_norm_formula,
        "torch": lambda x, w, b: nn.functional.batch_norm(x, None, None, w, b, training=True),
    }

    def run(f) -> list[Tensor]:
        inputs = [t.clone().requires_grad_() for t in (x, gamma, beta)]
        y = f(*inputs)
        return [y.detach(), *torch.autograd.grad(y, inputs, dy)]

    ours = run(batch_norm)
    return {name: {k: (a - b).abs().max().item()
                   for k, a, b in zip(("y", "dx", "dgamma", "dbeta"), ours, run(f))}
            for name, f in references.items()}


@torch.no_grad()
def inference_estimates(n_batches: int, batch_size: int, n_channels: int = 100,
                        mean: float = 2.0, var: float = 4.0, momentum: float = 0.1,
                        seed: int = 0) -> dict[str, Tensor]:
    """The two estimates of the population statistics along a stream of training batches.

    Feeds ``n_batches`` batches of i.i.d. N(mean, var) values to a :class:`BatchNorm` layer in
    training mode; its ``n_channels`` channels are independent repeats of the same experiment.
    Returns, per batch seen (rows) and channel (columns): ``ema_mean``/``ema_var`` (PyTorch's
    moving averages) and ``pop_mean``/``pop_var`` ([IS15] Alg. 2), plus ``pop_var_biased``, the
    average of the biased batch variances without Alg. 2's m/(m-1) factor.
    """
    g = torch.Generator().manual_seed(seed)
    layer = BatchNorm(n_channels, momentum=momentum, inference="population").double()
    rows = []
    for _ in range(n_batches):
        layer(mean + math.sqrt(var) * torch.randn(batch_size, n_channels, generator=g,
                                                  dtype=torch.float64))
        pop_mean, pop_var = layer.population()
        rows.append((layer.running_mean.clone(), layer.running_var.clone(), pop_mean, pop_var,
                     pop_var * (batch_size - 1) / batch_size))
    names = ("ema_mean", "ema_var", "pop_mean", "pop_var", "pop_var_biased")
    return {k: torch.stack(v) for k, v in zip(names, zip(*rows))}


@torch.no_grad()
def alg2_check(batch_size: int, n_batches: int = 50, n_features: int = 5,
               seed: int = 0) -> dict[str, float]:
    """[IS15] Alg. 2: after :func:`population_statistics`, an eval-mode layer is the affine map
    y = gamma / sqrt(Var[x] + eps) * x + (beta - gamma E[x] / sqrt(Var[x] + eps)), applied to
    each example on its own.

    Estimates the statistics of a random-gamma/beta layer from ``n_batches`` batches of
    ``batch_size`` draws of N(2, 4) (double precision), then returns the max |difference| of its
    output on a fresh batch from that map computed by hand (``"affine"``: E[x] the mean of the
    batch means, Var[x] = m/(m-1) times the mean of the biased batch variances), and between an
    example's output within the batch and alone (``"alone"``).
    """
    if batch_size < 2 or n_batches < 1 or n_features < 1:
        raise ValueError(f"need batch_size >= 2, n_batches >= 1, n_features >= 1; got "
                         f"{batch_size=}, {n_batches=}, {n_features=}")
    g = torch.Generator().manual_seed(seed)
    batches = [2 + 2 * torch.randn(batch_size, n_features, generator=g, dtype=torch.float64)
               for _ in range(n_batches)]
    layer = BatchNorm(n_features, inference="population").double()
    layer.weight.uniform_(0.5, 2.0, generator=g)
    layer.bias.normal_(generator=g)
    population_statistics(layer, batches)
    layer.eval()
    m = batch_size
    mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    var = m / (m - 1) * torch.stack([b.var(0, unbiased=False) for b in batches]).mean(0)
    scale = layer.weight / torch.sqrt(var + layer.eps)
    x = 2 + 2 * torch.randn(32, n_features, generator=g, dtype=torch.float64)
    y = layer(x)
    return {"affine": (y - (scale * x + layer.bias - scale * mean)).abs().max().item(),
            "alone": (y[:1] - layer(x[:1])).abs().max().item()}


# --------------------------------------------------------------------------------------------
# The sections of the chapter: each returns its numbers; tables and figures from them
# --------------------------------------------------------------------------------------------


def backward_check(seed: int) -> dict[str, Any]:
    """:func:`backward_differences` on the dense and the conv batch; ``max_diff`` over all."""
    shapes = {f"dense {DENSE}": DENSE, f"conv {CONV}": CONV}
    diffs = {name: backward_differences(shape, seed=seed) for name, shape in shapes.items()}
    return {"diffs": diffs, "max_diff": max(x for d in diffs.values() for ref in d.values()
                                            for x in ref.values())}


def backward_table(check: dict[str, Any]) -> MarkdownTable:
    return MarkdownTable(["layer", "reference", "y", "dL/dx", "dL/dgamma", "dL/dbeta"],
                         [[name, ref, *(f"{x:.1e}" for x in d[ref].values())]
                          for name, d in check["diffs"].items() for ref in d])


def inference_check(seed: int) -> dict[str, Any]:
    """The estimates of :func:`inference_estimates` on :data:`STREAM` (RMS error of each
    variance estimate after every batch, over the channels; final ratios to the truth) and
    :func:`alg2_check` at the same batch size."""
    s = STREAM
    est = inference_estimates(s["n_batches"], s["batch_size"], n_channels=s["n_channels"],
                              mean=s["mean"], var=s["var"], seed=seed)
    rms = {k: (x - s["var"]).pow(2).mean(1).sqrt().numpy() for k, x in est.items() if "var" in k}
    alg2 = alg2_check(s["batch_size"], seed=seed)
    return {"rms": rms,
            "pop_ratio": est["pop_var"][-1].mean().item() / s["var"],
            "biased_ratio": est["pop_var_biased"][-1].mean().item() / s["var"],
            "alg2_diff": alg2["affine"], "alone_diff": alg2["alone"]}


def inference_figure(check: dict[str, Any]):
    rms = check["rms"]
    seen = np.arange(1, STREAM["n_batches"] + 1)
    fig, ax = subplots(width=5, height=3.2)
    for k, label, color in (("ema_var", "moving average (PyTorch)", COLORS["standard"]),
                            ("pop_var", "population, Alg. 2", COLORS["bn"]),
                            ("pop_var_biased", "population without m/(m-1)", COLORS["theory"])):
        ax.loglog(seen, rms[k], label=label, color=color)
    ax.set(xlabel="training batches seen", ylabel="RMS error of the variance estimate")
    ax.legend()
    return done(fig)


def invariance_check(seed: int) -> dict[str, Any]:
    """:func:`scale_invariance_check` of a 100 x 50 W on 60 inputs for every scale of
    :data:`SCALES`, and once with eps = 1e-5 at the smallest scale."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(100, 50, generator=g, dtype=torch.float64)
    u = torch.randn(60, 50, generator=g, dtype=torch.float64)
    by_scale = {a: scale_invariance_check(W, u, a) for a in SCALES}
    return {"by_scale": by_scale, "m": u.shape[0], "n_in": W.shape[1], "n_out": W.shape[0],
            "max": max(x for d in by_scale.values() for x in d.values()),
            "with_eps": scale_invariance_check(W, u, SCALES[0], eps=1e-5)["output"]}


def invariance_table(check: dict[str, Any]) -> MarkdownTable:
    return MarkdownTable(["a", "max |BN(aWu) - BN(Wu)|", "max |d/du difference|",
                          "max |a d/d(aW) - d/dW|"],
                         [[a, *(f"{x:.1e}" for x in d.values())]
                          for a, d in check["by_scale"].items()])


def fig1_runs(cfg) -> tuple[Data, dict[str, History]]:
    """[IS15] Fig. 1: the MLP with and without BN on the digits of ``cfg.dataset``, same seed and
    learning rate; the probe records the input of the first sigmoid of the last hidden layer on
    a fixed batch of (up to 1000) test images, in eval mode. Cached."""
    data = load_digits_data(cfg.dataset).to(cfg.device)
    probe_size = min(1000, len(data.x_test))
    probe = ActivationProbe(data.inputs(data.x_test[:probe_size]), layers=(3,), where=("post",),
                            units=1, values=probe_size)
    train_kw = dict(steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed,
                    eval_every=cfg.eval_every, device=cfg.device, probe=probe)
    arch = dict(in_features=data.in_features, hidden=(100, 100, 100), n_classes=10,
                act="sigmoid")
    histories = {
        norm: cached_train("ch01-fig1", dict(model="MLP", **arch, norm=norm,
                                             probe=("post", 3, 1, probe_size)),
                           lambda: MLP(**arch, norm=norm), data, **train_kw)
        for norm in ("none", "bn")}
    return data, histories


Q_LEVELS = (15, 50, 85)
KEY = {"none": "standard", "bn": "bn"}


def fig1_summary(histories: dict[str, History]) -> dict[str, Any]:
    """Final test accuracies, steps to 98% of the standard network's final accuracy, and the
    :func:`bnutils.measure.shift.percentile_drift` of the probed sigmoid input."""
    quantiles = {norm: np.percentile(h.probes["post3"][:, 0, :], Q_LEVELS, axis=-1)
                 for norm, h in histories.items()}
    final = {norm: float(h.test_acc[-1]) for norm, h in histories.items()}
    target = 0.98 * final["none"]
    reach = {norm: steps_to(h, target) for norm, h in histories.items()}
    drifts = {norm: percentile_drift(quantiles[norm], h.eval_steps)
              for norm, h in histories.items()}
    return {"quantiles": quantiles, "final": final, "target": target, "reach": reach,
            "drifts": drifts,
            "faster": reach["bn"] is not None and (reach["none"] is None
                                                   or reach["bn"] < reach["none"])}


def fig1_figure(histories: dict[str, History], summary: dict[str, Any]):
    fig, axes = subplots(1, 3, width=3.6, height=3.0)
    axes = axes[0]
    for norm, h in histories.items():
        axes[0].plot(h.eval_steps, h.test_acc, color=COLORS[KEY[norm]], label=LABELS[KEY[norm]])
    axes[0].set(xlabel="training step", ylabel="test accuracy", title="(a)",
                ylim=(max(0.0, min(h.test_acc[1:].min() for h in histories.values()) - 0.02),
                      1.0))
    axes[0].legend()
    for ax, norm, title in ((axes[1], "none", "(b) without BN"), (axes[2], "bn", "(c) with BN")):
        at = histories[norm].eval_steps
        for q, values, style in zip(Q_LEVELS, summary["quantiles"][norm], (":", "-", "--")):
            ax.plot(at, values, style, color=COLORS[KEY[norm]], label=f"{q}th percentile")
        ax.set(xlabel="training step", ylabel="input to a last-layer sigmoid", title=title)
    fig.legend(*axes[1].get_legend_handles_labels(), loc="outside lower right", ncols=3)
    return done(fig)


def scale(cfg, data: Data) -> str:
    """What this execution ran, against the paper's scale (for the top of the page)."""
    name = {"mnist": "MNIST", "digits": "scikit-learn's 8x8 digits"}[data.name]
    short = "" if data.name == "mnist" else " (MNIST could not be had on this machine)"
    return (f"the MNIST experiment on {name}{short}, {cfg.steps:,} steps of batch "
            f"{cfg.batch_size}; the paper trains on MNIST for 50,000 steps")


def numbers(cfg, backward: dict, inference: dict, invariance: dict, data: Data,
            summary: dict) -> dict[str, Any]:
    """Every number the prose quotes, for :func:`bnutils.infra.report.glue_all`."""
    rms = inference["rms"]
    return {
        "profile": cfg.profile, "scale": scale(cfg, data),
        "dense_m": DENSE[0], "dense_c": DENSE[1], "conv_m": CONV[0], "conv_c": CONV[1],
        "conv_hw": f"{CONV[2]} x {CONV[3]}", "max_backward_diff": backward["max_diff"],
        "exact": str(EXACT), "affine_tol": str(AFFINE),
        "m": STREAM["batch_size"], "n_batches": STREAM["n_batches"],
        "n_channels": STREAM["n_channels"], "true_mean": STREAM["mean"],
        "true_var": STREAM["var"], "ema_var_rms": float(rms["ema_var"][-1]),
        "pop_var_rms": float(rms["pop_var"][-1]), "pop_var_ratio": inference["pop_ratio"],
        "biased_var_ratio": inference["biased_ratio"], "alg2_diff": inference["alg2_diff"],
        "alone_diff": inference["alone_diff"], "max_invariance": invariance["max"],
        "inv_m": invariance["m"], "inv_in": invariance["n_in"], "inv_out": invariance["n_out"],
        "invariance_eps": invariance["with_eps"],
        "steps": cfg.steps, "lr": cfg.lr, "eval_every": cfg.eval_every,
        "n_train": f"{len(data.x_train):,}", "n_pixels": data.in_features,
        "dataset": {"mnist": "MNIST", "digits": "scikit-learn 8x8 digits"}[data.name],
        "acc_none": summary["final"]["none"], "acc_bn": summary["final"]["bn"],
        "target": summary["target"], "reach_none": summary["reach"]["none"],
        "reach_bn": summary["reach"]["bn"], "drift_none": summary["drifts"]["none"],
        "drift_bn": summary["drifts"]["bn"],
    }


def key_table(backward: dict, inference: dict, invariance: dict, data: Data,
              summary: dict) -> MarkdownTable:
    """The numbers the regression tests compare."""
    rms, final = inference["rms"], summary["final"]
    return key_numbers({
        f"backward vs references, all max |diff| {EXACT}": EXACT(backward["max_diff"]),
        "Alg. 2 Var / true variance (m = 8)": f"{inference['pop_ratio']:.2f}",
        "without m/(m-1): Var / true variance": f"{inference['biased_ratio']:.2f}",
        "EMA variance RMS error / Alg. 2 RMS error":
            f"{rms['ema_var'][-1] / rms['pop_var'][-1]:.1f}",
        f"scale invariance, all max |diff| {EXACT}": EXACT(invariance["max"]),
        "data": data.name,
        "final test accuracy, standard": fmt(final["none"], 2),
        "final test accuracy, BN": fmt(final["bn"], 2),
    }, digits=2)


def claims(backward: dict, inference: dict, invariance: dict, data: Data,
           summary: dict) -> MarkdownTable:
    """The claims table of Chapter 1, every verdict computed from the measurements."""
    final, drifts = summary["final"], summary["drifts"]
    pop, biased = inference["pop_ratio"], inference["biased_ratio"]
    affine = max(inference["alg2_diff"], inference["alone_diff"])
    return claims_table([
        Claim("The backward formulas are the gradient of the BN transform", "[IS15] Sec. 3",
              "derivation",
              f"max |diff| to autograd and PyTorch {EXACT.show(backward['max_diff'])}",
              verdict(EXACT(backward["max_diff"]))),
        Claim("Var[x] = m/(m-1) E[sigma_B^2] estimates the variance without bias",
              "[IS15] Alg. 2", "unbiased",
              f"Var / truth = {pop:.2f} ({biased:.2f} without m/(m-1))",
              verdict(abs(pop - 1) < UNBIASED < abs(biased - 1))),
        Claim("Inference with population statistics is a fixed affine map per example",
              "[IS15] Alg. 2", "y = gamma/sqrt(Var+eps) x + beta - gamma E[x]/sqrt(Var+eps)",
              f"max |diff| {AFFINE}" if AFFINE(affine) else "differs", verdict(AFFINE(affine))),
        Claim("BN(aWu) = BN(Wu), d/du unchanged, d/d(aW) = (1/a) d/dW", "[IS15] Sec. 3.3",
              "exact (eps = 0)", f"a in {list(SCALES)}: max |diff| {EXACT}"
              if EXACT(invariance["max"]) else "differs", verdict(EXACT(invariance["max"]))),
        Claim("BN reaches a higher test accuracy faster", "[IS15] Fig. 1(a)",
              "yes (MNIST, 50,000 steps)",
              f"{data.name}: final accuracy {fmt(final['bn'], 2)} with BN, "
              f"{fmt(final['none'], 2)} without; BN first to 98% of the latter: "
              f"{'yes' if summary['faster'] else 'no'}",
              verdict(summary["faster"] and final["bn"] >= final["none"] - 0.005), seeds=1),
        Claim("The distribution of a sigmoid input is more stable with BN",
              "[IS15] Fig. 1(b, c)", "yes (percentiles drift without BN)",
              f"relative percentile drift after 10% of training: {fmt(drifts['bn'], 1)} with "
              f"BN, {fmt(drifts['none'], 1)} without", verdict(drifts["bn"] < drifts["none"]),
              seeds=1),
    ])
