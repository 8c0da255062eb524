"""Chapter 2, Internal covariate shift: the critique of [STIM18] Sec. 2.

- :func:`fig1_runs`: VGG on CIFAR-10 with and without BN at two learning rates ([STIM18] Fig. 1),
  with activation samples at conv layers #3 and #11 (cached);
- :func:`accuracy_figure`, :func:`activation_figure` and their numbers;
- :func:`claims`: the chapter's claims table, from the measurements.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.data import Data, class_balanced_subset, load_cifar10
from ..core.models import VGG
from ..core.probes import ActivationProbe
from ..core.train import History, cached_train, final_accuracy
from ..infra import report
from ..infra.config import ChapterProfiles
from ..infra.plotting import COLORS, LABELS, done, percentile_bands, running_mean, subplots
from ..infra.report import Claim, MarkdownTable, claims_table, fmt, key_numbers, verdict
from ..measure.shift import distribution_shift

PROFILES = ChapterProfiles(
    "02", "Internal covariate shift",
    quick=dict(width=0.125, n_train_per_class=500, n_test_per_class=100, steps=250,
               batch_size=128, lr=0.1, lr_large=0.5, eval_every=25, window_steps=50),
    full=dict(width=1.0, n_train_per_class=5000, n_test_per_class=1000, steps=15_000,
              batch_size=128, lr=0.1, lr_large=0.5, eval_every=500, window_steps=1000),
    choices=dict(width=(0.125, 0.25, 0.5, 1.0)),
)

LAYERS = (3, 11)  # the conv layers of [STIM18] Fig. 1, numbered as in VGG-16 (config D)
NORMS = {"standard": "none", "bn": "bn"}
PROBE = dict(batch=256, units=8, values=256)
#: [STIM18] Fig. 1(c) reproduced when BN's conv outputs shift at least this fraction as much.
SHIFT_FRACTION = 0.5
PANELS = [("standard", "pre", "Standard: conv output"), ("bn", "pre", "+ BN: conv output"),
          ("bn", "post", "+ BN: BN output")]


def setup(namespace: dict[str, Any]):
    """Configure the chapter from its notebook's parameters (:func:`bnutils.infra.report.setup`)."""
    return report.setup(PROFILES, namespace)


def load_data(cfg) -> Data:
    """The class-balanced CIFAR-10 subset of the profile."""
    return class_balanced_subset(load_cifar10(), cfg.n_train_per_class, cfg.n_test_per_class,
                                 seed=cfg.seed)


def fig1_runs(cfg, data: Data) -> dict[tuple[str, float], History]:
    """[STIM18] Fig. 1: VGG-16 (config D) with and without BN at ``cfg.lr`` and ``cfg.lr_large``.
    At every evaluation the probe samples activations of :data:`LAYERS` on a fixed batch of
    training images in training mode (batch statistics, as the step sees them). Cached."""
    pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(cfg.seed))
    probe = ActivationProbe(data.inputs(data.x_train[pick[:PROBE["batch"]]]).to(cfg.device),
                            layers=LAYERS, units=PROBE["units"], values=PROBE["values"],
                            train_mode=True, seed=cfg.seed)
    runs = {}
    for lr in (cfg.lr, cfg.lr_large):
        for method, norm in NORMS.items():
            runs[method, lr] = cached_train(
                "ch02-fig1", dict(vgg="D", width=cfg.width, norm=norm,
                                  probe=(LAYERS, PROBE["units"], PROBE["values"], PROBE["batch"]),
                                  per_class=(cfg.n_train_per_class, cfg.n_test_per_class)),
                lambda: VGG("D", width=cfg.width, norm=norm), data, steps=cfg.steps, lr=lr,
                batch_size=cfg.batch_size, seed=cfg.seed, eval_every=cfg.eval_every,
                probe=probe, device=cfg.device)
    return runs


def accuracies(cfg, runs: dict) -> dict[str, dict]:
    """Training and test accuracy averaged over the last ``cfg.window_steps`` steps."""
    w = cfg.window_steps
    return {"train": {k: final_accuracy(h, w, "train") for k, h in runs.items()},
            "test": {k: final_accuracy(h, w, "test") for k, h in runs.items()}}


def accuracy_figure(cfg, runs: dict):
    w = cfg.window_steps
    fig, axes = subplots(1, 2, width=4.3, height=3.1)
    axes = axes[0]
    for (method, lr), h in runs.items():
        style = dict(color=COLORS[method], ls="-" if lr == cfg.lr else "--",
                     label=f"{LABELS[method]}, lr {lr:g}")
        axes[0].plot(np.arange(1, h.steps + 1), running_mean(h.train_acc, max(1, w // 5)),
                     **style)
        axes[1].plot(h.eval_steps, h.test_acc, **style)
        if h.diverged:
            axes[0].plot(h.diverged_at, 0.1, "x", color=COLORS[method], ms=8)
    for ax, name in zip(axes, ("training accuracy (running mean)", "test accuracy")):
        ax.set(xlabel="step", ylabel=name, ylim=(0, 1))
    axes[0].axhline(0.1, color="0.6", lw=0.8, ls=":")
    axes[1].axhline(0.1, color="0.6", lw=0.8, ls=":")
    axes[1].legend(fontsize="small")
    return done(fig)


def shifts(cfg, runs: dict) -> dict[tuple[str, str, int], float]:
    """:func:`bnutils.measure.shift.distribution_shift` of every panel of the activation figure,
    at the default learning rate."""
    return {(method, where, layer):
            distribution_shift(runs[method, cfg.lr].probes[f"{where}{layer}"])
            for method, where, _ in PANELS for layer in LAYERS}


def activation_figure(cfg, runs: dict, shift: dict):
    fig, axes = subplots(2, 3, width=3.0, height=2.3, sharex=True)
    for row, layer in enumerate(LAYERS):
        for col, (method, where, title) in enumerate(PANELS):
            h, ax = runs[method, cfg.lr], axes[row, col]
            percentile_bands(ax, h.eval_steps, h.probes[f"{where}{layer}"], COLORS[method])
            ax.set_title(f"layer #{layer}, {title}\nshift {shift[method, where, layer]:.2f}")
            ax.set(xlabel="step" if row == 1 else None,
                   ylabel="activation" if col == 0 else None)
    return done(fig)


def _tag(cfg, lr: float) -> str:
    return "large" if lr == cfg.lr_large else "default"


def numbers(cfg, data: Data, runs: dict, acc: dict, shift: dict) -> dict[str, Any]:
    """Every number the prose quotes, for :func:`bnutils.infra.report.glue_all`."""
    out = {"n_train": len(data.x_train), "n_test": len(data.x_test), "steps": cfg.steps,
           "width": cfg.width, "lr": cfg.lr, "lr_large": cfg.lr_large,
           "window": cfg.window_steps, "profile": cfg.profile,
           "shift_fraction": f"{SHIFT_FRACTION:g}"}
    for (method, lr), h in runs.items():
        tag = f"{method}_{_tag(cfg, lr)}"
        out[f"train_{tag}"] = acc["train"][method, lr]
        out[f"test_{tag}"] = acc["test"][method, lr]
        out[f"status_{tag}"] = (f"diverged at step {h.diverged_at}" if h.diverged
                                else "did not diverge")
    for (method, where, layer), value in shift.items():
        out[f"shift_{method}_{where}{layer}"] = value
    return out


def acc_text(x: float) -> str:
    return "diverged" if np.isnan(x) else fmt(x, 2)


def key_table(cfg, acc: dict, shift: dict) -> MarkdownTable:
    lrs = (cfg.lr, cfg.lr_large)
    return key_numbers({
        **{f"train accuracy, {LABELS[m]}, lr {lr:g}": acc_text(acc["train"][m, lr])
           for lr in lrs for m in NORMS},
        **{f"test accuracy, {LABELS[m]}, lr {lr:g}": acc_text(acc["test"][m, lr])
           for lr in lrs for m in NORMS},
        **{f"shift at layer #{layer}, {title}": fmt(shift[m, where, layer], 2)
           for m, where, title in PANELS for layer in LAYERS},
    })


def claims(cfg, data: Data, runs: dict, acc: dict, shift: dict) -> MarkdownTable:
    """The claims table of Chapter 2, every verdict computed from the measurements."""
    D, L, W = cfg.lr, cfg.lr_large, cfg.window_steps
    train, test = acc["train"], acc["test"]
    std_large = runs["standard", L]
    return claims_table([
        Claim("BN makes training faster", "[STIM18] Fig. 1(a)",
              "higher training accuracy throughout, lr 0.1",
              f"train acc (last {W} steps), lr {D:g}: BN {acc_text(train['bn', D])}, "
              f"standard {acc_text(train['standard', D])}",
              verdict(train["bn", D] > train["standard", D]), seeds=1),
        Claim("BN tolerates a larger learning rate", "[STIM18] Fig. 1(a)",
              "at lr 0.5 BN trains well, the standard network worse",
              f"lr {L:g}: BN {acc_text(train['bn', L])}, standard "
              + (f"diverged at step {std_large.diverged_at}" if std_large.diverged
                 else acc_text(train["standard", L])),
              verdict(std_large.diverged or train["standard", L] < train["bn", L]), seeds=1),
        Claim("BN improves test accuracy", "[STIM18] App. A, Fig. 1(b)",
              "83% with BN, 80% without (15,000 steps, full CIFAR-10)",
              f"{acc_text(test['bn', D])} with BN, {acc_text(test['standard', D])} without "
              f"(lr {D:g}, {len(data.x_train)} JPEG-recompressed images, width x{cfg.width:g}"
              + (": direction only)" if cfg.profile == "quick" else ")"),
              verdict(test["bn", D] > test["standard", D]), seeds=1),
        Claim("Activation distributions evolve much alike with and without BN",
              "[STIM18] Fig. 1(c)", "difference 'much less pronounced' than in accuracy (visual)",
              "shift of conv outputs, BN vs standard: " + ", ".join(
                  f"#{layer} {fmt(shift['bn', 'pre', layer], 2)} vs "
                  f"{fmt(shift['standard', 'pre', layer], 2)}" for layer in LAYERS),
              verdict(all(shift["bn", "pre", layer] >= shift["standard", "pre", layer]
                          * SHIFT_FRACTION for layer in LAYERS)), seeds=1),
    ])
