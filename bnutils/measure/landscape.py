"""The loss landscape along the gradient: [STIM18] Sec. 3.2, Figs. 4 and 10, App. A.2.2.

At a training step with parameters w, batch gradient g (the step's own, on the step's batch, in
training mode) and step sizes eta on a grid around the learning rate, [STIM18] measure

- the *loss landscape*: the range [min, max] over eta of L(w - eta g);
- the *gradient predictiveness*: the range over eta of ||grad L(w - eta g) - grad L(w)||;
- the *effective beta-smoothness*: max over eta of ||grad L(w - eta g) - grad L(w)|| / ||eta g||,

all on the same batch, along one gradient at one point (two mistakes of public reproductions are
avoided: gradients from different batches, and envelopes taken across separate runs).
:class:`LandscapeProbe` records the loss and the gradient difference at every eta, so the ranges
and the gradient difference against step size ([STIM18] Fig. 11) follow from the record.

Beyond the paper, :class:`HessianProbe` measures the curvature at the same points: the top
eigenvalue of the Hessian of the step's mini-batch loss, the function the optimizer descends
(with BN in training mode it depends on the whole batch through its statistics).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from torch.func import functional_call

from ..core.bn import differentiable_twice
from ..core.losses import loss_fn
from ..core.probes import Step, loss_and_grad, preserved
from ..infra import validate
from .hessian import top_eigenvalue


def flat(grads: dict[str, Tensor]) -> Tensor:
    """A gradient dict as one vector (in parameter order)."""
    return torch.cat([g.flatten() for g in grads.values()])


def along_gradient(step: Step, etas: Tensor) -> dict[str, Tensor]:
    """Loss and gradient difference at w - eta g for every eta of ``etas``, on the step's batch:
    ``loss`` (per eta), ``grad_diff`` = ||grad L(w - eta g) - g|| (per eta), ``step_norm`` =
    ||eta g|| (per eta), and the base point's ``loss0`` and ``grad_norm`` = ||g||."""
    loss0, g = step.gradient()
    g_flat = flat(g)
    losses, diffs = [], []
    for eta in etas.tolist():
        value, g_eta = loss_and_grad(step.model, step.x, step.y, at=step.stepped(eta),
                                     loss=step.loss)
        losses.append(value)
        diffs.append((flat(g_eta) - g_flat).norm())
    return {"loss": torch.stack(losses), "grad_diff": torch.stack(diffs),
            "step_norm": etas.to(g_flat) * g_flat.norm(), "loss0": loss0,
            "grad_norm": g_flat.norm()}


@dataclass(frozen=True, eq=False)
class LandscapeProbe:
    """:func:`along_gradient` every ``every`` steps at eta = lr * each of ``factors`` (e.g. a
    grid over [1/2, 4] for VGG, [1/100, 30] for the deep linear network). Returns
    ``landscape_loss``, ``landscape_grad_diff``, ``landscape_step_norm`` (one entry per factor),
    ``landscape_loss0`` and ``landscape_grad_norm``. Costs one forward-backward pass per factor."""

    factors: tuple[float, ...]
    every: int

    def __post_init__(self) -> None:
        validate.positive_int("every", self.every)
        validate.nonempty_list("factors", self.factors, validate.positive_number)

    def __call__(self, step: Step) -> dict[str, Tensor]:
        etas = step.lr * torch.tensor(self.factors, dtype=torch.float64)
        return {f"landscape_{k}": v for k, v in along_gradient(step, etas).items()}


def factor_grid(low: float, high: float, n: int) -> tuple[float, ...]:
    """``n`` step-size factors spaced geometrically from ``low`` to ``high`` (both included)."""
    validate.positive_number("low", low)
    validate.positive_number("high", high)
    validate.positive_int("n", n)
    return tuple(float(f) for f in np.geomspace(low, high, n))


def summarise(measures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """From a run's ``landscape_*`` records (shape (measurements, factors)), per measurement:
    ``loss_min``/``loss_max`` (the loss landscape), ``pred_min``/``pred_max`` (gradient
    predictiveness) and ``beta`` (the effective beta-smoothness, max of grad_diff / step_norm)."""
    loss, diff = measures["landscape_loss"], measures["landscape_grad_diff"]
    ratio = diff / measures["landscape_step_norm"]
    return {"loss_min": loss.min(1), "loss_max": loss.max(1), "pred_min": diff.min(1),
            "pred_max": diff.max(1), "beta": ratio.max(1)}


@dataclass(frozen=True, eq=False)
class HessianProbe:
    """The top eigenvalue of the Hessian of the step's mini-batch loss at W^(t), in training mode
    (BN with the batch's statistics, differentiated twice through
    :func:`bnutils.core.bn.differentiable_twice`), by ``iterations`` of power iteration on
    Hessian-vector products (:func:`bnutils.measure.hessian.top_eigenvalue`, the eigenvalue of
    largest magnitude). Returns ``hessian_top``, ``hessian_residual`` (||H v - lambda v|| of the
    unit eigenvector found) and ``param_norm2`` (the squared norm of all parameters: with BN the
    loss is invariant to the scale of the weights before a BN layer, and their curvature scales
    as 1 / ||w||^2). Costs about 2 * ``iterations`` backward passes."""

    iterations: int
    every: int
    tol: float = 1e-3

    def __post_init__(self) -> None:
        validate.positive_int("every", self.every)
        validate.positive_int("iterations", self.iterations)

    def __call__(self, step: Step) -> dict[str, Tensor]:
        model = step.model
        params = {k: p.detach().clone() for k, p in model.named_parameters()}
        names = list(params)
        with preserved(model), differentiable_twice():
            model.train()
            buffers = {k: b.clone() for k, b in model.named_buffers()}

            def loss(*values: Tensor) -> Tensor:
                out = functional_call(model, (dict(zip(names, values)), buffers), (step.x,))
                return loss_fn(step.loss, out, step.y)

            eig = top_eigenvalue(loss, list(params.values()), iters=self.iterations,
                                 tol=self.tol)
        return {"hessian_top": torch.tensor(eig.value, dtype=torch.float64),
                "hessian_residual": torch.tensor(eig.residual, dtype=torch.float64),
                "param_norm2": sum((p.double() ** 2).sum() for p in params.values())}
