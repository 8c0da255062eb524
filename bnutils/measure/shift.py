"""How far the distribution of sampled activations moves during training.

- :func:`percentile_drift`: [IS15] Fig. 1(b, c), how far the 15th, 50th and 85th percentiles of
  an activation move, relative to their final spread.
- :func:`unit_shifts` and :func:`distribution_shift`: [STIM18] Fig. 1, quantified, the
  1-Wasserstein distance between a unit's values at the first and at the last evaluation, in
  units of their pooled spread.

Both read the samples that :class:`bnutils.core.probes.ActivationProbe` records.
:class:`MomentProbe` measures [STIM18] Fig. 8: how much each unit's mean and variance change
from one training step to the next.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import wasserstein_distance
from torch import Tensor

from ..core.bn import per_unit
from ..core.probes import Step, activations
from ..infra import validate


def percentile_drift(q: np.ndarray, eval_steps: np.ndarray, start_fraction: float = 0.1
                     ) -> float:
    """How far the 15th, 50th and 85th percentiles of an activation ([IS15] Fig. 1(b, c)) move
    from ``start_fraction`` of training to the end: the mean |change| of the three, relative to
    the final 15-85 spread. ``q`` has shape (3, evaluation points), rows in increasing order."""
    q, eval_steps = np.asarray(q), np.asarray(eval_steps)
    if q.ndim != 2 or q.shape[0] != 3 or q.shape[1] != len(eval_steps):
        raise ValueError(f"q must have shape (3, {len(eval_steps)}), got {q.shape}")
    if not 0 <= start_fraction < 1:
        raise ValueError(f"start_fraction must be in [0, 1), got {start_fraction!r}")
    t0 = np.searchsorted(eval_steps, start_fraction * eval_steps[-1])
    return float(np.abs(q[:, -1] - q[:, t0]).mean() / (q[2, -1] - q[0, -1]))


def unit_shifts(samples: np.ndarray) -> np.ndarray:
    """How far each unit's sampled activations moved during training ([STIM18] Fig. 1,
    quantified): the 1-Wasserstein distance between its values at the first and at the last
    evaluation, divided by the standard deviation of both pooled (0: no change; a shift of the
    mean by one standard deviation scores about 0.9). ``samples`` has shape (evaluations, units,
    values), as ``ActivationProbe`` records; one value per unit."""
    samples = np.asarray(samples, dtype=float)
    return np.array([wasserstein_distance(a, b) / np.concatenate([a, b]).std()
                     for a, b in zip(samples[0], samples[-1])])


def distribution_shift(samples: np.ndarray) -> float:
    """The mean of :func:`unit_shifts` over units."""
    return float(unit_shifts(samples).mean())


@dataclass(frozen=True, eq=False)
class MomentProbe:
    """[STIM18] Fig. 8: the change of each unit's mean and variance from step t to step t + 1.

    Every ``every`` steps, the activations of ``layers`` after their normalization (what the
    next layer sees; with noisy BN, after the noise) on the fixed batch ``x``, in training mode,
    at W^(t) and at W^(t+1) = W^(t) - lr * (the step's gradient). The two passes run one after
    the other, so noisy BN draws fresh noise for each, as it does for two training steps.
    Returns ``dmean_i`` = |mu_{t+1} - mu_t| and ``dvar_i`` = |sigma^2_{t+1} - sigma^2_t| per unit
    of layer i, and ``mean_i``/``var_i`` at step t."""

    x: Tensor = field(repr=False)
    layers: tuple[int, ...]
    every: int

    def __post_init__(self) -> None:
        validate.positive_int("every", self.every)
        validate.nonempty_list("layers", self.layers, validate.positive_int)

    def __call__(self, step: Step) -> dict[str, Tensor]:
        before, after = activations(step.model, self.x, self.layers, train_mode=True,
                                    at=[None, step.stepped(step.lr)])
        out = {}
        for i in self.layers:
            a, b = per_unit(before[f"post{i}"]), per_unit(after[f"post{i}"])
            out[f"mean_{i}"], out[f"var_{i}"] = a.mean(1), a.var(1)
            out[f"dmean_{i}"] = (b.mean(1) - a.mean(1)).abs()
            out[f"dvar_{i}"] = (b.var(1) - a.var(1)).abs()
        return out
