"""Chapter 2, Internal covariate shift: the three steps of the critique of [STIM18] Sec. 2.

1. Does BN help, and does it stabilise the activations? VGG on CIFAR-10 with and without BN at
   two learning rates ([STIM18] Fig. 1).
2. Noisy BN: BN followed by time-varying non-Gaussian noise ([STIM18] App. A.2.1, Alg. 1;
   Figs. 2 and 8).
3. ICS by [STIM18] Def. 2.1 on VGG and the 25-layer deep linear network (Figs. 3 and 7), and the
   public replication's variant with a single BN layer (seed 003).

Every network trains once, in :func:`train_runs`, through the shared runs of
:mod:`bnutils.measure.runs` (Chapter 3 reads the same runs). The rest of the module turns the
runs into figures, numbers and the claims table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.train import History
from ..infra import report
from ..infra.config import ChapterProfiles
from ..infra.plotting import COLORS, LABELS, done, percentile_bands, running_mean, subplots
from ..infra.report import Claim, MarkdownTable, claims_table, key_numbers, verdict
from ..measure.runs import (DLN_LAYERS, DLN_PROTOCOL, VGG_LAYERS, VGG_PROTOCOL, DLNRun, VGGRun,
                            cost_record, probe_costs, train_all)
from ..measure.shift import unit_shifts
from ..measure.stats import (Interval, all_agree, at_least, decide, equivalent, mean_ci,
                             proportion_ci)

PROFILES = ChapterProfiles(
    "02", "Internal covariate shift",
    quick=dict(**VGG_PROTOCOL["quick"], lr=0.1, lr_large=0.5, lr_small=0.01, window_steps=50,
               **DLN_PROTOCOL["quick"], dln_lr=1e-6, dln_lr_small=1e-7),
    full=dict(**VGG_PROTOCOL["full"], lr=0.1, lr_large=0.5, lr_small=0.01, window_steps=1000,
              **DLN_PROTOCOL["full"], dln_lr=1e-6, dln_lr_small=1e-7),
    long=dict(**VGG_PROTOCOL["long"], lr=0.1, lr_large=0.5, lr_small=0.01, window_steps=1000,
              **DLN_PROTOCOL["long"], dln_lr=1e-6, dln_lr_small=1e-7),
    choices=dict(width=(0.0625, 0.125, 0.25, 0.5, 1.0)),
)

METHODS = ("standard", "bn")
NORM = {"standard": "none", "bn": "bn", "noisy_bn": "noisy_bn", "one_bn": "bn"}
#: The public replication (seed 003): VGG configuration A, one BN layer after the 4th conv.
REPLICATION = dict(config="A", one_bn_after=4)
#: Thresholds of the claims, written once and glued into the prose.
ACC_MARGIN = 0.02     # accuracies "about the same" when they differ by less than 2 points
SHIFT_FACTOR = 2.0    # activations "markedly more stable" when their shift is under a half
ICS_MARGIN = 0.10     # ICS l2 differences "comparable" within 10% of the larger one
COS_MARGIN = 0.02     # cosines "comparable" within 0.02


def setup(namespace: dict[str, Any]):
    """Configure the chapter from its notebook's parameters (:func:`bnutils.infra.report.setup`)."""
    return report.setup(PROFILES, namespace)


# ------------------------------------------------------------------------------------------------
# The runs
# ------------------------------------------------------------------------------------------------


def vgg_spec(cfg, method: str, lr: float, config: str = "D") -> VGGRun:
    """The shared VGG run of ``method`` at ``lr`` with this chapter's protocol."""
    layers = (REPLICATION["one_bn_after"],) if method == "one_bn" else None
    return VGGRun.of(cfg.knobs, NORM[method], lr, cfg.seed, config, layers)


def dln_spec(cfg, method: str, lr: float, seed: int) -> DLNRun:
    return DLNRun.of(cfg.knobs, NORM[method], lr, seed)


@dataclass
class Runs:
    """The chapter's runs: ``vgg[config, method, lr]`` and ``dln[method, lr]`` (one History per
    seed)."""

    vgg: dict[tuple[str, str, float], History]
    dln: dict[tuple[str, float], list[History]]

    def all(self) -> list[History]:
        return list(self.vgg.values()) + [h for hs in self.dln.values() for h in hs]




def train_runs(cfg) -> Runs:
    """Train (or load) every run of the chapter, side by side on the CPU's cores: VGG with and
    without BN at three learning rates, noisy BN, the replication's VGG-A variants, and the deep
    linear network with and without BN at two learning rates over ``cfg.dln_seeds`` seeds."""
    vgg = [("D", m, lr) for lr in (cfg.lr, cfg.lr_large, cfg.lr_small) for m in METHODS]
    vgg += [("D", "noisy_bn", cfg.lr)]
    vgg += [("A", m, cfg.lr_small) for m in ("standard", "one_bn", "bn")]
    dln = [(m, lr, s) for lr in (cfg.dln_lr, cfg.dln_lr_small) for m in METHODS
           for s in range(cfg.seed, cfg.seed + cfg.dln_seeds)]
    specs = [vgg_spec(cfg, m, lr, c) for c, m, lr in vgg] + [dln_spec(cfg, *k) for k in dln]
    histories = train_all(specs, cfg.device)
    out = Runs(vgg=dict(zip(vgg, histories[:len(vgg)])), dln={})
    for (m, lr, _), h in zip(dln, histories[len(vgg):]):
        out.dln.setdefault((m, lr), []).append(h)
    return out


# ------------------------------------------------------------------------------------------------
# Intervals and verdict rules
# ------------------------------------------------------------------------------------------------


def train_accuracy(h: History, window: int) -> Interval | None:
    """The mean per-step training accuracy over the last ``window`` steps, with its t interval
    over those steps; None for a run that diverged."""
    return None if h.diverged else mean_ci(h.train_acc[-window:])


def test_accuracy(h: History, n_test: int) -> Interval | None:
    """The final test accuracy with its Wilson interval over the ``n_test`` test images."""
    return None if h.diverged else proportion_ci(round(h.test_acc[-1] * n_test), n_test)


def show(x: Interval | None, digits: int = 2) -> str:
    return "diverged" if x is None else x.show(digits)


def markedly_lower(a: Interval, b: Interval, factor: float = SHIFT_FACTOR) -> bool | None:
    """Is ``a`` below ``b`` by more than ``factor``? True when a's interval lies under b's lower
    end divided by the factor, False when it lies above b's upper end divided by it, else None."""
    if a.hi < b.lo / factor:
        return True
    if a.lo > b.hi / factor:
        return False
    return None


def paired(a: np.ndarray, b: np.ndarray, log: bool) -> np.ndarray:
    """Paired differences of two series measured at the same steps (or seeds): log10(a / b) for
    positive quantities, a - b otherwise."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.log10(a / b) if log else a - b


# ------------------------------------------------------------------------------------------------
# Section 1: does BN help, and are the activations more stable? ([STIM18] Fig. 1)
# ------------------------------------------------------------------------------------------------

FIG1_LAYERS = (3, 11)
FIG1_PANELS = [("standard", "pre", "Standard: conv output"), ("bn", "pre", "+ BN: conv output"),
               ("bn", "post", "+ BN: BN output")]


def accuracies(cfg, runs: Runs) -> dict[str, dict]:
    """Training and test accuracy intervals of every VGG run."""
    n_test = 10 * cfg.n_test_per_class
    return {"train": {k: train_accuracy(h, cfg.window_steps) for k, h in runs.vgg.items()},
            "test": {k: test_accuracy(h, n_test) for k, h in runs.vgg.items()}}


def accuracy_figure(cfg, curves: list[tuple[str, float, History]]):
    """Training accuracy (running mean) and test accuracy against steps; colour by method, line
    style by learning rate; a cross marks a run that diverged."""
    lrs = sorted({lr for _, lr, _ in curves})
    dashes = dict(zip(lrs, ["-", "--", ":"]))
    fig, axes = subplots(1, 2, width=4.3, height=3.1)
    axes = axes[0]
    for method, lr, h in curves:
        style = dict(color=COLORS[method], ls=dashes[lr], label=f"{LABELS[method]}, lr {lr:g}")
        axes[0].plot(np.arange(1, h.steps + 1),
                     running_mean(h.train_acc, max(1, cfg.window_steps // 5)), **style)
        axes[1].plot(h.eval_steps, h.test_acc, **style)
        if h.diverged:
            axes[0].plot(h.diverged_at, 0.1, "x", color=COLORS[method], ms=8)
    for ax, name in zip(axes, ("training accuracy (running mean)", "test accuracy")):
        ax.set(xlabel="step", ylabel=name, ylim=(0, 1))
        ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
    axes[1].legend(fontsize="small")
    return done(fig)


def fig1_figure(cfg, runs: Runs):
    return accuracy_figure(cfg, [(m, lr, runs.vgg["D", m, lr]) for lr in (cfg.lr, cfg.lr_large)
                                 for m in METHODS])


def shifts(cfg, runs: Runs) -> dict[tuple[str, str, int], Interval]:
    """The distribution shift of each panel of Fig. 1(c) at the default learning rate: the mean
    over the sampled units of :func:`bnutils.measure.shift.unit_shifts`, with its t interval over
    units."""
    return {(m, where, layer): mean_ci(unit_shifts(runs.vgg["D", m, cfg.lr].probes[
        f"{where}{layer}"])) for m, where, _ in FIG1_PANELS for layer in FIG1_LAYERS}


def activation_figure(runs: Runs, key: tuple[str, float], panels: list[tuple[str, str, str]],
                      layers: tuple[int, ...], shift: dict | None = None):
    """Distributions of the sampled activations over training: one row per layer, one column
    per (method, where) panel; median, 15-85th and 5-95th percentiles."""
    config, lr = key
    fig, axes = subplots(len(layers), len(panels), width=3.0, height=2.3, sharex=True,
                         squeeze=False)
    for row, layer in enumerate(layers):
        for col, (method, where, title) in enumerate(panels):
            h, ax = runs.vgg[config, method, lr], axes[row, col]
            percentile_bands(ax, h.eval_steps, h.probes[f"{where}{layer}"], COLORS[method])
            extra = f"\nshift {shift[method, where, layer].estimate:.2f}" if shift else ""
            ax.set_title(f"layer #{layer}, {title}{extra}")
            ax.set(xlabel="step" if row == len(layers) - 1 else None,
                   ylabel="activation" if col == 0 else None)
    return done(fig)


def fig1_activation_figure(cfg, runs: Runs, shift: dict):
    return activation_figure(runs, ("D", cfg.lr), FIG1_PANELS, FIG1_LAYERS, shift)


# ------------------------------------------------------------------------------------------------
# Section 2: noisy BN ([STIM18] Fig. 2, Fig. 8)
# ------------------------------------------------------------------------------------------------

NOISY = ("standard", "bn", "noisy_bn")
NOISY_LAYERS = (2, 9, 13)


def noisy_accuracy_figure(cfg, runs: Runs):
    return accuracy_figure(cfg, [(m, cfg.lr, runs.vgg["D", m, cfg.lr]) for m in NOISY])


def noisy_activation_figure(cfg, runs: Runs):
    panels = [(m, "post", LABELS[m]) for m in NOISY]
    return activation_figure(runs, ("D", cfg.lr), panels, NOISY_LAYERS)


def moment_changes(h: History, layer: int) -> dict[str, np.ndarray]:
    """Per measurement step, the mean over units of |mu_{t+1} - mu_t| and |var_{t+1} - var_t|
    ([STIM18] Fig. 8), raw and relative to the unit's spread (|d mu| / sigma, |d var| / var)."""
    m = h.measures
    sigma2 = np.maximum(m[f"var_{layer}"], 1e-12)
    return {"steps": h.measure_steps[f"dmean_{layer}"],
            "dmean": m[f"dmean_{layer}"].mean(1), "dvar": m[f"dvar_{layer}"].mean(1),
            "rel_dmean": (m[f"dmean_{layer}"] / np.sqrt(sigma2)).mean(1),
            "rel_dvar": (m[f"dvar_{layer}"] / sigma2).mean(1)}


def moments_figure(cfg, runs: Runs):
    """[STIM18] Fig. 8: per-step change of the mean and of the variance of each unit (averaged
    over units) at conv layers #2, #9 and #13, for the three networks."""
    fig, axes = subplots(2, len(NOISY_LAYERS), width=3.0, height=2.4, sharex=True, squeeze=False)
    for col, layer in enumerate(NOISY_LAYERS):
        for method in NOISY:
            c = moment_changes(runs.vgg["D", method, cfg.lr], layer)
            for row, key in enumerate(("dmean", "dvar")):
                axes[row, col].semilogy(c["steps"], c[key], color=COLORS[method],
                                        label=LABELS[method])
        axes[0, col].set_title(f"layer #{layer}")
        axes[1, col].set_xlabel("step")
    axes[0, 0].set_ylabel(r"$|\mu_{t+1} - \mu_t|$")
    axes[1, 0].set_ylabel(r"$|\sigma^2_{t+1} - \sigma^2_t|$")
    axes[0, 0].legend(fontsize="small")
    return done(fig)


def moment_intervals(cfg, runs: Runs) -> dict[tuple[str, int, str], Interval]:
    """Per network and layer of Fig. 8, the relative per-step change of the mean and of the
    variance (averaged over units and steps, ``[m, layer, "mean"/"var"]``), and for noisy BN and
    BN against the standard network the mean over steps of log10 of the ratio of these changes
    (``[m, layer, "mean_ratio"/"var_ratio"]``, paired at the same steps), with t intervals over
    the measurement steps."""
    out = {}
    std = {layer: moment_changes(runs.vgg["D", "standard", cfg.lr], layer)
           for layer in NOISY_LAYERS}
    for method in NOISY:
        for layer in NOISY_LAYERS:
            c = moment_changes(runs.vgg["D", method, cfg.lr], layer)
            for key in ("mean", "var"):
                out[method, layer, key] = mean_ci(c[f"rel_d{key}"])
                if method != "standard":
                    out[method, layer, f"{key}_ratio"] = mean_ci(
                        paired(c[f"rel_d{key}"], std[layer][f"rel_d{key}"], log=True))
    return out


# ------------------------------------------------------------------------------------------------
# Section 3: ICS by Def. 2.1 ([STIM18] Figs. 3 and 7), and the replication's variant
# ------------------------------------------------------------------------------------------------


def ics_series(h: History, layer: int) -> dict[str, np.ndarray]:
    m = h.measures
    return {"steps": h.measure_steps[f"ics_l2_{layer}"], "l2": m[f"ics_l2_{layer}"],
            "cos": m[f"ics_cos_{layer}"], "rel": m[f"ics_l2_{layer}"] / m[f"grad_norm_{layer}"]}


def vgg_ics(cfg, runs: Runs, config: str = "D", methods: tuple[str, ...] = ("bn",),
            lr: float | None = None) -> dict[tuple, Interval]:
    """ICS of the VGG runs of ``methods`` against the standard network at ``lr``, paired at the
    measurement steps: ``[m, layer, "l2"]`` the mean over steps of log10 of the ratio of the l2
    differences ||G - G'|| (0: equal; 1: ten times the standard network's), ``[m, layer, "cos"]``
    the mean difference of the cosines, each with its t interval over the steps (one run)."""
    lr = cfg.lr if lr is None else lr
    std = runs.vgg[config, "standard", lr]
    out = {}
    for m in methods:
        for layer in VGG_LAYERS[config]["ics"]:
            a, b = ics_series(runs.vgg[config, m, lr], layer), ics_series(std, layer)
            out[m, layer, "l2"] = mean_ci(paired(a["l2"], b["l2"], log=True))
            out[m, layer, "cos"] = mean_ci(paired(a["cos"], b["cos"], log=False))
    return out


def dln_ics(cfg, runs: Runs, lr: float) -> dict[tuple, Interval]:
    """ICS of the DLN with BN against without, paired by seed (the same data and A): per seed
    the mean over measurement steps of log10 of the ratio of the l2 differences, and of the
    difference of the cosines; then the mean over seeds with its t interval."""
    out = {}
    for layer in DLN_LAYERS["ics"]:
        pairs = [(ics_series(b, layer), ics_series(s, layer))
                 for b, s in zip(runs.dln["bn", lr], runs.dln["standard", lr])]
        out["bn", layer, "l2"] = mean_ci([paired(a["l2"], b["l2"], True).mean() for a, b in pairs])
        out["bn", layer, "cos"] = mean_ci([paired(a["cos"], b["cos"], False).mean()
                                           for a, b in pairs])
    return out


def ics_tables(cfg, runs: Runs) -> dict[str, dict]:
    """Every ICS comparison of the chapter: VGG at ``lr`` and ``lr_small``, the DLN at its two
    learning rates, and the replication's VGG-A (one BN and BN everywhere) at ``lr_small``."""
    return {"vgg": {lr: vgg_ics(cfg, runs, lr=lr) for lr in (cfg.lr, cfg.lr_small)},
            "dln": {lr: dln_ics(cfg, runs, lr) for lr in (cfg.dln_lr, cfg.dln_lr_small)},
            "replication": vgg_ics(cfg, runs, "A", ("one_bn", "bn"), cfg.lr_small)}


def ics_raw(h: History, layer: int) -> tuple[float, float]:
    """Time averages of ||G - G'|| and cos(G, G') of one run at one layer (for the tables)."""
    s = ics_series(h, layer)
    return float(np.mean(s["l2"])), float(np.mean(s["cos"]))


def ics_figure(panels: list[tuple[str, list[tuple[str, list[History]]]]], layers: tuple[int, ...]):
    """ICS over training: l2 difference (top) and cosine (bottom), one column per (panel title,
    layer); each method's line is the mean over its runs (seeds), with the band of their range."""
    cols = [(title, curves, layer) for title, curves in panels for layer in layers]
    fig, axes = subplots(2, len(cols), width=2.7, height=2.3, sharex="col", squeeze=False)
    for col, (title, curves, layer) in enumerate(cols):
        for method, hs in curves:
            series = [ics_series(h, layer) for h in hs]
            steps = series[0]["steps"]
            for row, key in enumerate(("l2", "cos")):
                y = np.stack([s[key] for s in series])
                ax = axes[row, col]
                ax.plot(steps, y.mean(0), color=COLORS[method], label=LABELS[method])
                if len(series) > 1:
                    ax.fill_between(steps, y.min(0), y.max(0), color=COLORS[method], alpha=0.2,
                                    lw=0)
        axes[0, col].set_title(f"{title}\nlayer #{layer}", fontsize="small")
        axes[0, col].set_yscale("log")
        axes[1, col].set_xlabel("step")
    axes[0, 0].set_ylabel(r"$\|G - G'\|_2$")
    axes[1, 0].set_ylabel(r"$\cos(G, G')$")
    axes[1, 0].legend(fontsize="small")
    return done(fig)


def vgg_ics_figure(cfg, runs: Runs):
    panels = [(f"VGG, lr {lr:g}", [(m, [runs.vgg["D", m, lr]]) for m in METHODS])
              for lr in (cfg.lr, cfg.lr_small)]
    return ics_figure(panels, VGG_LAYERS["D"]["ics"])


def dln_ics_figure(cfg, runs: Runs):
    panels = [(f"DLN, lr {lr:g}", [(m, runs.dln[m, lr]) for m in METHODS])
              for lr in (cfg.dln_lr, cfg.dln_lr_small)]
    return ics_figure(panels, DLN_LAYERS["ics"])


REPLICATION_METHODS = ("standard", "one_bn", "bn")


def replication_figure(cfg, runs: Runs):
    """The public replication's variant: VGG-A at lr ``cfg.lr_small`` without BN, with one BN
    layer after conv 4, and with BN everywhere: accuracy and ICS."""
    acc = accuracy_figure(cfg, [(m, cfg.lr_small, runs.vgg["A", m, cfg.lr_small])
                                for m in REPLICATION_METHODS])
    ics = ics_figure([(f"VGG-A, lr {cfg.lr_small:g}",
                       [(m, [runs.vgg["A", m, cfg.lr_small]]) for m in REPLICATION_METHODS])],
                     VGG_LAYERS["A"]["ics"])
    return acc, ics


# ------------------------------------------------------------------------------------------------
# Numbers and claims
# ------------------------------------------------------------------------------------------------


def not_reduced(ics: dict, method: str, layers: tuple[int, ...]) -> list[bool | None]:
    """Per layer, does ``method`` fail to reduce ICS? For the l2 difference: the log10 ratio to
    the standard network's lies at or above -log10(1 + ICS_MARGIN) (not smaller by more than the
    margin); for the cosine: the difference lies at or below +COS_MARGIN (no closer to 1 by more
    than the margin). Each outcome True, False or None (the interval straddles the bound)."""
    out = []
    for layer in layers:
        out.append(at_least(ics[method, layer, "l2"], -np.log10(1 + ICS_MARGIN)))
        cos = ics[method, layer, "cos"]
        out.append(at_least(Interval(-cos.estimate, -cos.hi, -cos.lo, cos.n), -COS_MARGIN))
    return out


def ics_text(ics: dict, method: str, layers: tuple[int, ...]) -> str:
    return "; ".join(
        f"#{layer}: l2 ratio x{10 ** ics[method, layer, 'l2'].estimate:.3g} "
        f"[{10 ** ics[method, layer, 'l2'].lo:.3g}, {10 ** ics[method, layer, 'l2'].hi:.3g}], "
        f"cos difference {ics[method, layer, 'cos'].show()}" for layer in layers)


def ics_reading(ics: dict) -> str:
    """How the ICS comparisons of BN against the standard network (VGG and DLN, every learning
    rate, layer and measure) come out for the claim that BN does not reduce ICS, in words."""
    outcomes = [o for net, layers in (("vgg", VGG_LAYERS["D"]["ics"]), ("dln", DLN_LAYERS["ics"]))
                for table in ics[net].values() for o in not_reduced(table, "bn", layers)]
    held, against = outcomes.count(True), outcomes.count(False)
    return (f"of the {len(outcomes)} comparisons, {held} agree with the claim, {against} against "
            f"it, {len(outcomes) - held - against} undecided")


def record(runs: Runs) -> dict[str, str]:
    """Rows for the run record: training time and probe cost of the chapter's runs."""
    return cost_record(runs.all())


def scale(cfg) -> str:
    """What this execution ran, against the paper's scale (for the top of the page)."""
    return (f"the VGG on {10 * cfg.n_train_per_class:,} CIFAR-10 training images for "
            f"{cfg.steps:,} steps of batch {cfg.batch_size} at {cfg.width:g} of the full width "
            "(the paper: all 50,000 images, 15,000 steps, full width), and the deep linear "
            f"network for {cfg.dln_steps:,} steps over {cfg.dln_seeds} seeds (the paper: 10,000 "
            "steps)")


def numbers(cfg, runs: Runs, acc: dict, shift: dict, moments: dict, ics: dict
            ) -> dict[str, Any]:
    """Every number the prose quotes, for :func:`bnutils.infra.report.glue_all`."""
    D, L, S = cfg.lr, cfg.lr_large, cfg.lr_small
    train, test = acc["train"], acc["test"]
    out = {"scale": scale(cfg), "n_train": 10 * cfg.n_train_per_class,
           "n_test": 10 * cfg.n_test_per_class,
           "steps": cfg.steps, "width": cfg.width, "lr": D, "lr_large": L, "lr_small": S,
           "window": cfg.window_steps, "profile": cfg.profile, "probe_every": cfg.probe_every,
           "dln_steps": f"{cfg.dln_steps:,}", "dln_seeds": cfg.dln_seeds, "dln_lr": cfg.dln_lr,
           "dln_lr_small": cfg.dln_lr_small, "dln_probe_every": cfg.dln_probe_every,
           "acc_margin": f"{ACC_MARGIN:.2f}", "shift_factor": f"{SHIFT_FACTOR:g}",
           "ics_margin": f"{ICS_MARGIN:.0%}", "cos_margin": f"{COS_MARGIN:g}",
           "probe_cost": f"{sum(probe_costs(runs.all()).values()):.2f}",
           "ics_reading": ics_reading(ics)}
    for (config, m, lr), h in runs.vgg.items():
        tag = f"{config}_{m}_{lr:g}".replace(".", "p").replace("-", "m")
        out[f"train_{tag}"] = show(train[config, m, lr])
        out[f"test_{tag}"] = show(test[config, m, lr])
        out[f"status_{tag}"] = (f"diverged at step {h.diverged_at}" if h.diverged
                                else "did not diverge")
    for (m, where, layer), x in shift.items():
        out[f"shift_{m}_{where}{layer}"] = f"{x.estimate:.2f}"
    for (m, layer, key), x in moments.items():
        out[f"moment_{m}_{layer}_{key}"] = (f"{10 ** x.estimate:.3g}" if key.endswith("ratio")
                                            else f"{x.estimate:.3g}")
    for (config, m, lr), h in runs.vgg.items():
        for layer in VGG_LAYERS[config]["ics"]:
            l2, cos = ics_raw(h, layer)
            tag = f"{config}_{m}_{lr:g}_{layer}".replace(".", "p").replace("-", "m")
            out[f"ics_l2_{tag}"], out[f"ics_cos_{tag}"] = f"{l2:.3g}", f"{cos:.2f}"
    for lr, table in ics["vgg"].items():
        for (m, layer, key), x in table.items():
            tag = f"{lr:g}_{layer}".replace(".", "p")
            out[f"ics_vgg_{key}_{tag}"] = (f"{10 ** x.estimate:.3g}" if key == "l2"
                                           else f"{x.estimate:.2f}")
    for lr, table in ics["dln"].items():
        for (m, layer, key), x in table.items():
            tag = f"{lr:g}_{layer}".replace(".", "p").replace("-", "m")
            out[f"ics_dln_{key}_{tag}"] = (f"{10 ** x.estimate:.3g}" if key == "l2"
                                           else f"{x.estimate:.2f}")
    return out


def key_table(cfg, acc: dict, shift: dict, moments: dict, ics: dict) -> MarkdownTable:
    """The numbers the regression tests compare (rounded well away from their run-to-run noise)."""
    D, L, S = cfg.lr, cfg.lr_large, cfg.lr_small
    train = acc["train"]
    rows = {f"train accuracy, {LABELS[m]}, lr {lr:g}": show(train["D", m, lr])
            for lr in (D, L) for m in METHODS}
    rows[f"train accuracy, {LABELS['noisy_bn']}, lr {D:g}"] = show(train["D", "noisy_bn", D])
    rows.update({f"shift at layer #{layer}, {title}": f"{shift[m, where, layer].estimate:.2f}"
                 for m, where, title in FIG1_PANELS for layer in FIG1_LAYERS})
    rows.update({f"log10 ICS ratio BN/standard, VGG layer #{layer}, lr {lr:g}":
                 f"{table['bn', layer, 'l2'].estimate:.1f}"
                 for lr, table in ics["vgg"].items() for layer in VGG_LAYERS["D"]["ics"]})
    rows.update({f"log10 ICS ratio BN/standard, DLN layer #{layer}, lr {lr:g}":
                 f"{table['bn', layer, 'l2'].estimate:.1f}"
                 for lr, table in ics["dln"].items() for layer in DLN_LAYERS["ics"]})
    rows.update({f"train accuracy, VGG-A, {LABELS[m]}, lr {S:g}": show(train["A", m, S])
                 for m in REPLICATION_METHODS})
    return key_numbers(rows)


def claims(cfg, runs: Runs, acc: dict, shift: dict, moments: dict, ics: dict) -> MarkdownTable:
    """The claims table of Chapter 2, every verdict computed from the measurements."""
    D, L, S = cfg.lr, cfg.lr_large, cfg.lr_small
    train, test = acc["train"], acc["test"]
    std_large = runs.vgg["D", "standard", L]
    bn_large = train["D", "bn", L]
    if std_large.diverged:
        tolerates = bn_large is not None
    elif bn_large is None:
        tolerates = False
    else:
        tolerates = decide(bn_large, train["D", "standard", L], 0.0)
    rows = [
        Claim("BN makes training faster", "[STIM18] Sec. 2.1, Fig. 1(a)",
              "higher training accuracy throughout, lr 0.1",
              f"train acc (last {cfg.window_steps} steps), lr {D:g}: BN "
              f"{show(train['D', 'bn', D])}, standard {show(train['D', 'standard', D])}",
              verdict(decide(train["D", "bn", D], train["D", "standard", D], 0.0)), seeds=1),
        Claim("BN tolerates a larger learning rate", "[STIM18] Sec. 2.1, Fig. 1(a)",
              "at lr 0.5 BN trains well, the standard network worse",
              f"lr {L:g}: BN {show(bn_large)}, standard "
              + (f"diverged at step {std_large.diverged_at}" if std_large.diverged
                 else show(train["D", "standard", L])), verdict(tolerates), seeds=1),
        Claim("BN improves test accuracy", "[STIM18] App. A, Fig. 1(b)",
              "83% with BN, 80% without (15,000 steps, full CIFAR-10)",
              f"{show(test['D', 'bn', D])} with BN, {show(test['D', 'standard', D])} without "
              f"(lr {D:g}, {10 * cfg.n_train_per_class} JPEG-recompressed images, width "
              f"x{cfg.width:g})", verdict(decide(test["D", "bn", D],
                                                 test["D", "standard", D], 0.0)), seeds=1),
    ]
    for where, what in (("pre", "convolution outputs (BN's input)"),
                        ("post", "what the next layer sees (BN's output)")):
        outcomes = [markedly_lower(shift["bn", where, layer], shift["standard", "pre", layer])
                    for layer in FIG1_LAYERS]
        rows.append(Claim(
            f"With and without BN the activation distributions change alike over training; "
            f"reading: {what}", "[STIM18] Sec. 2.1, Fig. 1(c)",
            "difference in stability 'not as pronounced' as in performance (visual)",
            "shift BN vs standard: " + ", ".join(
                f"#{layer} {shift['bn', where, layer].show()} vs "
                f"{shift['standard', 'pre', layer].show()}" for layer in FIG1_LAYERS),
            verdict(all_agree([None if o is None else not o for o in outcomes])), seeds=1))
    bn_acc, noisy_acc, std_acc = (train["D", m, D] for m in ("bn", "noisy_bn", "standard"))
    rows += [
        Claim("Noisy BN trains about as well as BN", "[STIM18] Sec. 2.1, Fig. 2",
              "performance difference 'almost non-existent'",
              f"train acc, lr {D:g}: noisy BN {show(noisy_acc)}, BN {show(bn_acc)} "
              f"(margin {ACC_MARGIN:.2f})",
              verdict(None if noisy_acc is None or bn_acc is None
                      else equivalent(noisy_acc, bn_acc, ACC_MARGIN)), seeds=1),
        Claim("Noisy BN trains better than the standard network", "[STIM18] Sec. 2.1, Fig. 2",
              "yes", f"train acc, lr {D:g}: noisy BN {show(noisy_acc)}, standard "
              f"{show(std_acc)}", verdict(None if noisy_acc is None or std_acc is None
                                          else decide(noisy_acc, std_acc, 0.0)), seeds=1),
    ]
    outcomes = [at_least(moments["noisy_bn", layer, f"{key}_ratio"], 0.0)
                for layer in NOISY_LAYERS for key in ("mean", "var")]
    rows.append(Claim(
        "Noisy BN's activation distributions are less stable than the standard network's",
        "[STIM18] Sec. 2.1, Figs. 2, 8", "'qualitatively less stable distributions'",
        "per-step change of mean / variance, noisy BN over standard: " + "; ".join(
            f"#{layer} x{10 ** moments['noisy_bn', layer, 'mean_ratio'].estimate:.3g} / "
            f"x{10 ** moments['noisy_bn', layer, 'var_ratio'].estimate:.3g}"
            for layer in NOISY_LAYERS), verdict(all_agree(outcomes)), seeds=1))
    for lr, table in ics["vgg"].items():
        rows.append(Claim(
            f"BN does not reduce ICS (Def. 2.1): VGG, lr {lr:g}", "[STIM18] Sec. 2.2, Fig. 3(a)",
            "difference comparable or larger, cosine no closer to 1",
            "BN vs standard, " + ics_text(table, "bn", VGG_LAYERS["D"]["ics"]),
            verdict(all_agree(not_reduced(table, "bn", VGG_LAYERS["D"]["ics"]))), seeds=1))
    for lr, table in ics["dln"].items():
        rows.append(Claim(
            f"BN does not reduce ICS (Def. 2.1): deep linear network, lr {lr:g}",
            "[STIM18] Sec. 2.2, Fig. 3(b)", "difference comparable or larger, cosine no closer "
            "to 1", "BN vs standard, " + ics_text(table, "bn", DLN_LAYERS["ics"]),
            verdict(all_agree(not_reduced(table, "bn", DLN_LAYERS["ics"]))),
            seeds=cfg.dln_seeds))
    rep = ics["replication"]
    higher = [at_least(rep["one_bn", layer, "l2"], np.log10(1 + ICS_MARGIN))
              for layer in VGG_LAYERS["A"]["ics"]]
    rows.append(Claim(
        "With one BN layer the ICS is almost always higher than without BN",
        "seed 003 (a public replication, VGG-A, one BN after conv 4, lr 0.01)", "higher",
        "one BN vs standard, " + ics_text(rep, "one_bn", VGG_LAYERS["A"]["ics"]),
        verdict(all_agree(higher)), seeds=1))
    one, none = train["A", "one_bn", S], train["A", "standard", S]
    rows.append(Claim(
        "One BN layer gives a significant performance boost",
        "seed 003 (a public replication)", "'undeniable and significant'",
        f"train acc, lr {S:g}: one BN {show(one)}, standard {show(none)}, BN everywhere "
        f"{show(train['A', 'bn', S])}",
        verdict(None if one is None or none is None else decide(one, none, ACC_MARGIN)),
        seeds=1))
    return claims_table(rows)
