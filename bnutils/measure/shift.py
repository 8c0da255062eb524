"""How far the distribution of sampled activations moves during training.

- :func:`percentile_drift`: [IS15] Fig. 1(b, c), how far the 15th, 50th and 85th percentiles of
  an activation move, relative to their final spread.
- :func:`distribution_shift`: [STIM18] Fig. 1, quantified, the 1-Wasserstein distance between a
  unit's values at the first and at the last evaluation, in units of their pooled spread.

Both read the samples that :class:`bnutils.core.probes.ActivationProbe` records.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance


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


def distribution_shift(samples: np.ndarray) -> float:
    """How far sampled activations moved during training ([STIM18] Fig. 1, quantified): for each
    unit, the 1-Wasserstein distance between its values at the first and at the last evaluation,
    divided by the standard deviation of both pooled; the mean over units.
    ``samples`` has shape (evaluations, units, values), as ``ActivationProbe`` records."""
    samples = np.asarray(samples, dtype=float)
    return float(np.mean([wasserstein_distance(a, b) / np.concatenate([a, b]).std()
                          for a, b in zip(samples[0], samples[-1])]))
