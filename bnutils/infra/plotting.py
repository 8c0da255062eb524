"""The book's one figure style: seaborn's white grid, the same colour for each method everywhere."""
from __future__ import annotations

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

#: One colour per method, used by every chapter.
COLORS: dict[str, str] = {
    "standard": "#4c72b0",
    "bn": "#dd8452",
    "noisy_bn": "#55a868",
    "one_bn": "#8c8c8c",
    "l1": "#c44e52",
    "l2": "#8172b3",
    "linf": "#937860",
    "gdnp": "#da8bc3",
    "gd": "#4c72b0",
    "adam": "#55a868",
    "theory": "#333333",
}

LABELS: dict[str, str] = {
    "standard": "Standard", "bn": "Standard + BN", "noisy_bn": "Standard + noisy BN",
    "one_bn": "Standard + one BN",
    "l1": r"$\ell_1$ norm", "l2": r"$\ell_2$ norm", "linf": r"$\ell_\infty$ norm",
    "gdnp": "GDNP", "gd": "GD", "adam": "Adam", "theory": "theory",
}


def use_style() -> None:
    """Apply the house style (call once at the top of a chapter).

    Also makes IPython render figures as PNG whatever the matplotlib backend (under ``Agg``, as
    the Makefile sets, a displayed or glued figure would otherwise carry no image).
    """
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("png")
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    matplotlib.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "figure.autolayout": False,
        "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False, "axes.titlesize": "medium",
    })


def subplots(nrows: int = 1, ncols: int = 1, *, width: float = 4.0, height: float = 3.0,
             **kw) -> tuple[plt.Figure, "matplotlib.axes.Axes | list"]:
    """A figure of ``nrows x ncols`` panels, each ``width x height`` inches, constrained layout;
    the axes come back squeezed only for a single panel (unless ``squeeze`` says otherwise)."""
    kw.setdefault("squeeze", nrows * ncols == 1)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                        layout="constrained", **kw)


def done(fig: plt.Figure) -> plt.Figure:
    """Close a finished figure so it shows only where it is glued, and return it for glue()."""
    plt.close(fig)
    return fig


def running_mean(y: np.ndarray, n: int) -> np.ndarray:
    """Mean of the last ``n`` values at each point (fewer at the start): smooths per-step curves."""
    c = np.cumsum(np.insert(np.asarray(y, dtype=float), 0, 0.0))
    i = np.arange(1, len(c))
    return (c[i] - c[np.maximum(i - n, 0)]) / np.minimum(i, n)


def percentile_bands(ax: "matplotlib.axes.Axes", steps: np.ndarray, samples: np.ndarray,
                     color: str, label: str | None = None) -> None:
    """Distribution of sampled activations over training, as in [IS15] Fig. 1(b, c): the median
    and the 15-85th (dark) and 5-95th (light) percentile bands of ``samples[k]`` (all its values)
    at ``steps[k]``."""
    q = np.percentile(np.asarray(samples).reshape(len(steps), -1), [5, 15, 50, 85, 95], axis=1)
    ax.fill_between(steps, q[0], q[4], color=color, alpha=0.15, lw=0)
    ax.fill_between(steps, q[1], q[3], color=color, alpha=0.35, lw=0)
    ax.plot(steps, q[2], color=color, lw=1.5, label=label)
