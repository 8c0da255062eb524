"""The book's one figure style: seaborn's white grid, the same colour for each method everywhere."""
from __future__ import annotations

import matplotlib

import matplotlib.pyplot as plt
import seaborn as sns

#: One colour per method, used by every chapter.
COLORS: dict[str, str] = {
    "standard": "#4c72b0",
    "bn": "#dd8452",
    "noisy_bn": "#55a868",
    "l1": "#c44e52",
    "l2": "#8172b3",
    "linf": "#937860",
    "gdnp": "#dd8452",
    "gd": "#4c72b0",
    "adam": "#55a868",
    "theory": "#333333",
}

LABELS: dict[str, str] = {
    "standard": "Standard", "bn": "Standard + BN", "noisy_bn": "Standard + noisy BN",
    "l1": r"$\ell_1$ norm", "l2": r"$\ell_2$ norm", "linf": r"$\ell_\infty$ norm",
    "gdnp": "GDNP", "gd": "GD", "adam": "Adam", "theory": "theory",
}


def use_style() -> None:
    """Apply the house style (call once at the top of a chapter)."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    matplotlib.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "figure.autolayout": False,
        "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False, "axes.titlesize": "medium",
    })


def subplots(nrows: int = 1, ncols: int = 1, *, width: float = 4.0, height: float = 3.0,
             **kw) -> tuple[plt.Figure, "matplotlib.axes.Axes | list"]:
    """A figure of ``nrows x ncols`` panels, each ``width x height`` inches, constrained layout."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                        layout="constrained", squeeze=nrows * ncols == 1, **kw)


def done(fig: plt.Figure) -> plt.Figure:
    """Close a finished figure so it shows only where it is glued, and return it for glue()."""
    plt.close(fig)
    return fig
