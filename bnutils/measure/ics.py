"""Internal covariate shift as optimisation feels it: [STIM18] Definition 2.1.

For layer i at step t, on the step's batch (x_t, y_t):

- G_{t,i}  = the gradient of layer i's weights at W^(t) (every layer at its current value);
- G'_{t,i} = the gradient of layer i's weights after layers 1..i-1, with all their parameters
  (weights, biases, BN gamma and beta), took their step t: W_k - lr * grad_k for k < i, layer i
  and above unchanged. In a BN network the batch statistics of G' come from the updated lower
  layers, because the loss is recomputed in training mode.

ICS is the l2 difference ||G - G'|| (and the cosine of the angle between G and G'): how much the
updates of the layers below change the gradient that layer i just followed. :class:`ICSProbe`
measures it during training without changing the run. Two mistakes of public reproductions are
avoided by construction: G' is computed on the full model (BN parameters, biases and the
classifier of the lower layers are stepped too, nothing is stale), and layer i itself is not
stepped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.probes import Step, layer_groups, loss_and_grad
from ..infra import validate


def weight_name(i: int) -> str:
    """The name of layer i's weight tensor (its conv or linear weight) in ``named_parameters``."""
    return f"layers.{i - 1}.linear.weight"


def ics(step: Step, i: int) -> tuple[Tensor, Tensor]:
    """(G, G') of [STIM18] Def. 2.1 for layer ``i`` (numbered from 1) at this step, flattened."""
    groups = layer_groups(step.model)
    if not 1 <= i <= len(groups):
        raise ValueError(f"layer {i} out of range; allowed: 1..{len(groups)}")
    _, g = step.gradient()
    lower = [name for group in groups[:i - 1] for name in group]
    _, g_after = loss_and_grad(step.model, step.x, step.y, at=step.stepped(step.lr, lower),
                               loss=step.loss)
    key = weight_name(i)
    return g[key].flatten(), g_after[key].flatten()


@dataclass(frozen=True, eq=False)
class ICSProbe:
    """[STIM18] Def. 2.1 at layers ``layers``, every ``every`` steps: returns, per layer i,
    ``ics_l2_i`` = ||G - G'||, ``ics_cos_i`` = cos(G, G') and ``grad_norm_i`` = ||G||. Costs one
    forward-backward pass per layer on top of the step's gradient (shared with other probes)."""

    layers: tuple[int, ...]
    every: int

    def __post_init__(self) -> None:
        validate.positive_int("every", self.every)
        validate.nonempty_list("layers", self.layers, validate.positive_int)

    def __call__(self, step: Step) -> dict[str, Tensor]:
        out = {}
        for i in self.layers:
            G, G_after = ics(step, i)
            out[f"ics_l2_{i}"] = (G - G_after).norm()
            out[f"ics_cos_{i}"] = torch.nn.functional.cosine_similarity(G, G_after, dim=0)
            out[f"grad_norm_{i}"] = G.norm()
        return out
