"""Measurements on a network that leave it exactly as they found it.

The measurement chapters look inside a :class:`bnutils.core.models.Net` during training:

- :func:`layer_groups`: its layers in order as parameter groups, "layer i" of [STIM18] Def. 2.1
  (the i-th conv or linear layer with its own normalization parameters).
- :func:`loss_and_grad`: loss and gradient on a fixed batch at *other* parameters, e.g. after
  only layers 1..i-1 took their step ([STIM18] Def. 2.1) or at w - eta g along the gradient
  ([STIM18] Sec. 3.1, App. A.2.2). Computed functionally: parameters, ``.grad``, buffers (BN
  running statistics and counters), the optimizer and the random generators are left untouched.
- :func:`activations` and :class:`ActivationProbe`: activations before ("pre") and after ("post")
  the normalization of named layers on a fixed probe batch ([IS15] Fig. 1, [STIM18] Figs. 1, 2),
  also in training mode, without changing any running statistic (:func:`preserved`); the
  summaries of how they move are in :mod:`bnutils.measure.shift`.

[STIM18] Def. 2.1 in a few lines, for layer i at step t on the batch (x, y)::

    _, g = loss_and_grad(net, x, y)                          # G_{t,i}: every layer at W^(t)
    groups = layer_groups(net)
    earlier = {k: p - lr * g[k] for grp in groups[:i - 1] for k, p in grp.items()}
    _, g_prime = loss_and_grad(net, x, y, at=earlier)        # G'_{t,i}: layers 1..i-1 stepped
    G, G_prime = (torch.cat([d[k].flatten() for k in groups[i - 1]]) for d in (g, g_prime))

A known pitfall of public reproductions is a probe forward pass in training mode that silently
updates BN running statistics; the unit tests check bitwise equality of everything around a probe.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .bn import forked_rng, per_unit
from .models import Net
from .losses import loss_fn

WHERE = ("pre", "post")


def layer_groups(net: Net) -> list[dict[str, nn.Parameter]]:
    """Layer i's parameters (its weights, bias, gamma, beta) as ``groups[i - 1]``, keyed by their
    names in ``net.named_parameters()``."""
    if not isinstance(net, Net):
        raise TypeError(f"expected a bnutils.core.models.Net, got {type(net).__name__}")
    return [{f"layers.{i}.{k}": p for k, p in layer.named_parameters()}
            for i, layer in enumerate(net.layers)]


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block on ``model`` and then put back its parameters, buffers, train/eval modes and
    the random generators, global and per module (so a probe does not shift the noise of noisy
    BN; see :func:`bnutils.core.bn.forked_rng`)."""
    state = {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}
    modes = [(m, m.training) for m in model.modules()]
    with forked_rng(model):
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in model.state_dict(keep_vars=False).items():
                    v.copy_(state[k])
            for m, training in modes:
                m.training = training


def loss_and_grad(model: nn.Module, x: Tensor, y: Tensor, at: dict[str, Tensor] | None = None,
                  *, loss: str = "cross_entropy", train_mode: bool = True
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss on the batch ``(x, y)`` and its gradient w.r.t. every parameter, at parameters
    ``at`` (name -> value; unnamed parameters keep their current values).

    ``train_mode=True`` uses batch statistics, as the training step does. Returns the loss and
    ``{name: gradient}``; nothing about ``model`` (parameters, ``.grad``, buffers, modes) nor the
    random generators changes.
    """
    at = at or {}
    names = dict(model.named_parameters())
    unknown = sorted(set(at) - set(names))
    if unknown:
        raise ValueError(f"unknown parameter names {unknown[:3]}; allowed: names from "
                         "model.named_parameters()")
    params = {k: at.get(k, p).detach().clone().requires_grad_() for k, p in names.items()}
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    with preserved(model):
        model.train(train_mode)
        out = functional_call(model, (params, buffers), (x,))
        value = loss_fn(loss, out, y)
        grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    return value.detach(), {k: (torch.zeros_like(p) if g is None else g)
                            for (k, p), g in zip(params.items(), grads)}


def activations(net: Net, x: Tensor, layers: Sequence[int], *, train_mode: bool = False,
                at: Sequence[dict[str, Tensor] | None] | dict[str, Tensor] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
    """Inputs ("pre") and outputs ("post") of the normalization of each layer in ``layers``
    (numbered from 1), on the batch ``x``: ``{"pre3": ..., "post3": ...}``. Without a
    normalization, pre and post coincide (the layer's linear output). Nothing about ``net``
    changes, in either mode.

    ``at``: parameters to use instead of the model's (name -> value, as in :func:`loss_and_grad`),
    or a list of such dicts (``None`` = the model's own): then one result per entry, computed in
    one :func:`preserved` block, so that the random draws of noisy BN continue from one pass to
    the next as they do from one training step to the next.
    """
    if not isinstance(net, Net):
        raise TypeError(f"expected a bnutils.core.models.Net, got {type(net).__name__}")
    bad = [i for i in layers if not 1 <= i <= len(net.layers)]
    if bad:
        raise ValueError(f"layers {bad} out of range; allowed: 1..{len(net.layers)}")
    points = at if isinstance(at, (list, tuple)) else [at]
    found: dict[str, Tensor] = {}

    def hook(i: int):
        def record(module: nn.Module, inputs: tuple[Tensor], output: Tensor) -> None:
            found[f"pre{i}"], found[f"post{i}"] = inputs[0].detach(), output.detach()
        return record

    results = []
    handles = [net.layers[i - 1].norm.register_forward_hook(hook(i)) for i in layers]
    try:
        with preserved(net), torch.no_grad():
            net.train(train_mode)
            x = x.to(next(net.parameters()).device)
            buffers = dict(net.named_buffers())
            for point in points:
                params = {k: (point or {}).get(k, p) for k, p in net.named_parameters()}
                functional_call(net, (params, buffers), (x,))
                results.append(dict(found))
    finally:
        for h in handles:
            h.remove()
    return results if isinstance(at, (list, tuple)) else results[0]


@dataclass(eq=False)
class Step:
    """What a step probe sees at training step ``t``, before the update: the model at W^(t), the
    step's batch ``(x, y)``, the learning rate and the loss. :meth:`gradient` is the step's own
    gradient (computed once, shared by all probes of the step)."""

    model: nn.Module
    x: Tensor
    y: Tensor
    lr: float
    loss: str
    t: int
    _base: tuple[Tensor, dict[str, Tensor]] | None = field(default=None, repr=False)

    def gradient(self) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and gradient at W^(t) on the step's batch, in training mode (batch statistics):
        what the optimizer uses for this step, computed functionally (:func:`loss_and_grad`)."""
        if self._base is None:
            self._base = loss_and_grad(self.model, self.x, self.y, loss=self.loss)
        return self._base

    def stepped(self, eta: float, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Parameters after a plain SGD step of size ``eta`` along the step's gradient, for the
        parameters ``names`` (default: all), as an ``at`` dict for :func:`loss_and_grad`."""
        _, g = self.gradient()
        params = dict(self.model.named_parameters())
        return {k: params[k].detach() - eta * g[k] for k in (params if names is None else names)}


class StepProbe(Protocol):
    """A measurement taken during training at steps ``t`` with ``t % every == 0``, before the
    update (:func:`bnutils.core.train.train`, ``step_probes=``). It returns tensors by name and
    must leave the model, its buffers and the random generators as it found them."""

    every: int

    def __call__(self, step: Step) -> dict[str, Tensor]: ...


@dataclass(frozen=True, eq=False)
class ActivationProbe:
    """Samples of activations at some layers on a fixed batch, for :func:`bnutils.core.train.train`.

    Called with the model, returns ``{"pre3": (units, values), "post3": ..., ...}``: the first
    ``units`` units of each layer and, per unit, a fixed random subset of ``values`` of its values
    on the batch ``x`` (all when there are fewer). The train loop stacks them over evaluation
    points, so ``history.probes["post3"][k, j]`` is unit j's sample at ``history.eval_steps[k]``;
    percentiles ([IS15] Fig. 1) and histograms ([STIM18] Fig. 1) come from these.
    """

    x: Tensor = field(repr=False)
    layers: tuple[int, ...]
    where: tuple[str, ...] = WHERE
    units: int = 8
    values: int = 1024
    train_mode: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [w for w in self.where if w not in WHERE]
        if unknown:
            raise ValueError(f"unknown where {unknown}; allowed: {', '.join(WHERE)}")
        if self.units < 1 or self.values < 1:
            raise ValueError(f"units and values must be positive, got {self.units}, {self.values}")

    def __call__(self, net: Net) -> dict[str, Tensor]:
        found = activations(net, self.x, self.layers, train_mode=self.train_mode)
        out = {}
        for name, a in found.items():
            if name.rstrip("0123456789") not in self.where:
                continue
            rows = per_unit(a)[:self.units]
            g = torch.Generator().manual_seed(self.seed)
            keep = torch.randperm(rows.shape[1], generator=g)[:self.values].to(rows.device)
            out[name] = rows[:, keep]
        return out
