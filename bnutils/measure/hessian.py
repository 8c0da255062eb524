"""Second-order probes through autograd: gradients, Hessian-vector products, the quadratic form of
the Hessian along a direction, and the top eigenvalue by power iteration.

Nothing here forms a Hessian. A Hessian-vector product H v is the gradient of <grad f, v>, so it
costs one backward pass through a graph built with ``create_graph=True``; the loss must therefore
be twice differentiable in the tensors it is taken against (plain tensor operations are; a
``torch.autograd.Function`` with a hand-written, once-differentiable backward is not, e.g.
:class:`bnutils.core.bn.BatchNormFunction`; use :func:`bnutils.core.bn.batch_norm_formula`).

Conventions shared by every function:

- ``loss_fn`` is called as ``loss_fn(*params)`` and returns a scalar tensor;
- ``params`` is one tensor or a sequence of tensors. A tensor that already requires grad (a
  model's ``nn.Parameter``) is used as is, so a closure over a model may ignore its arguments:
  ``hvp(lambda *_: criterion(model(x), y), list(model.parameters()), v)``; any other tensor is
  replaced by a detached copy that requires grad;
- directions ``v`` have the structure of ``params`` (one tensor, or a sequence of the same
  shapes), and results come back in that structure.

:func:`top_eigenvalue` returns the eigenvalue of largest magnitude, or with
``which="largest"`` the largest (algebraic) eigenvalue, found by a second, shifted power
iteration when the dominant one is negative.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
from torch import Tensor

from ..infra import validate

Params = Union[Tensor, Sequence[Tensor]]
WHICH = ("magnitude", "largest")


def _as_list(x: Params) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def _like(params: Params, values: list[Tensor]) -> Params:
    return values[0] if isinstance(params, Tensor) else values


def _leaves(params: Params) -> list[Tensor]:
    ps = _as_list(params)
    if not ps:
        raise ValueError("params must hold at least one tensor")
    for p in ps:
        if not isinstance(p, Tensor) or not p.is_floating_point():
            raise TypeError(f"params must be floating-point tensors, got "
                            f"{p.dtype if isinstance(p, Tensor) else type(p).__name__}")
    return [p if p.requires_grad else p.detach().clone().requires_grad_(True) for p in ps]


def _check_direction(ps: list[Tensor], v: Params) -> list[Tensor]:
    vs = _as_list(v)
    if len(vs) != len(ps) or any(a.shape != p.shape for a, p in zip(vs, ps)):
        raise ValueError(f"the direction must have the shapes of params "
                         f"{[tuple(p.shape) for p in ps]}, got {[tuple(a.shape) for a in vs]}")
    return [a.detach().to(p.dtype) for a, p in zip(vs, ps)]


def _dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def gradient(loss_fn: Callable[..., Tensor], params: Params) -> Params:
    """The gradient of ``loss_fn`` at ``params`` (detached, in the structure of ``params``)."""
    ps = _leaves(params)
    grads = torch.autograd.grad(loss_fn(*ps), ps, allow_unused=True)
    return _like(params, [torch.zeros_like(p) if g is None else g.detach()
                          for g, p in zip(grads, ps)])


class HessianOperator:
    """v -> H v at a fixed point, reusing one graph of the gradient for every product.

    ``loss`` and ``grad`` hold the value and the gradient at the point (detached).
    """

    def __init__(self, loss_fn: Callable[..., Tensor], params: Params) -> None:
        self._structure = params
        self._params = _leaves(params)
        loss = loss_fn(*self._params)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        grads = torch.autograd.grad(loss, self._params, create_graph=True, allow_unused=True)
        self._grads = [torch.zeros_like(p) if g is None else g
                       for g, p in zip(grads, self._params)]
        self.loss = loss.detach()
        self.grad = _like(params, [g.detach() for g in self._grads])

    def __call__(self, v: Params) -> Params:
        vs = _check_direction(self._params, v)
        dot = _dot(self._grads, vs)
        if not dot.requires_grad:  # the gradient does not depend on params: H = 0
            return _like(self._structure, [torch.zeros_like(p) for p in self._params])
        out = torch.autograd.grad(dot, self._params, retain_graph=True, allow_unused=True)
        return _like(self._structure, [torch.zeros_like(p) if h is None else h.detach()
                                       for h, p in zip(out, self._params)])


def hvp(loss_fn: Callable[..., Tensor], params: Params, v: Params) -> Params:
    """The Hessian-vector product H v of ``loss_fn`` at ``params`` (double backward)."""
    return HessianOperator(loss_fn, params)(v)


def quadratic_form(loss_fn: Callable[..., Tensor], params: Params, v: Params) -> float:
    """v^T H v: the second derivative of ``loss_fn`` along ``v`` (not normalised)."""
    hv = hvp(loss_fn, params, v)
    return float(_dot(_as_list(hv), [a.detach() for a in _as_list(v)]))


@dataclass(frozen=True)
class Eigen:
    """An eigenpair found by power iteration: ``value``, unit ``vector`` (structure of the
    params), ``iterations`` used, ``converged`` (relative change of the Rayleigh quotient below
    the tolerance), and ``residual`` ||H v - value v|| of the unit vector."""

    value: float
    vector: Params
    iterations: int
    converged: bool
    residual: float


def _power(op: Callable[[list[Tensor]], list[Tensor]], v: list[Tensor], iters: int,
           tol: float) -> tuple[float, list[Tensor], int, bool]:
    norm = torch.sqrt(_dot(v, v))
    v = [a / norm for a in v]
    value, converged, it = 0.0, False, 0
    for it in range(1, iters + 1):
        hv = op(v)
        new = float(_dot(v, hv))
        norm = torch.sqrt(_dot(hv, hv))
        if float(norm) == 0.0:  # v is in the null space: H v = 0 and the value is 0
            return 0.0, v, it, True
        v = [a / norm for a in hv]
        if it > 1 and abs(new - value) <= tol * max(abs(new), 1e-300):
            value, converged = new, True
            break
        value = new
    return float(_dot(v, op(v))), v, it, converged


def top_eigenvalue(loss_fn: Callable[..., Tensor], params: Params, *, iters: int = 500,
                   tol: float = 1e-10, which: str = "magnitude", seed: int = 0) -> Eigen:
    """The dominant eigenvalue of the Hessian of ``loss_fn`` at ``params`` by power iteration on
    Hessian-vector products, from a random start (``seed``).

    ``which="magnitude"``: the eigenvalue of largest absolute value (with its sign), which is the
    top eigenvalue of a positive semi-definite Hessian. ``which="largest"``: the largest
    eigenvalue; when the dominant one, lambda_d, is negative, a second power iteration on
    H - lambda_d I (whose dominant eigenvalue is lambda_max - lambda_d >= 0) recovers it. The
    iteration stops when the Rayleigh quotient changes by less than ``tol`` (relative); its speed
    depends on the gap between the two eigenvalues of largest magnitude.
    """
    validate.positive_int("iters", iters)
    validate.positive_number("tol", tol)
    validate.one_of("which", which, WHICH)
    op = HessianOperator(loss_fn, params)
    ps = op._params
    gen = torch.Generator().manual_seed(seed)
    start = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in ps]
    apply = lambda v: _as_list(op(_like(params, v)))  # noqa: E731
    value, v, it, converged = _power(apply, start, iters, tol)
    if which == "largest" and value < 0:
        shift = value
        shifted = lambda v: [h - shift * a for h, a in zip(apply(v), v)]  # noqa: E731
        top, v, it2, converged = _power(shifted, start, iters, tol)
        value, it = top + shift, it + it2
    r = [h - value * a for h, a in zip(apply(v), v)]
    residual = float(torch.sqrt(_dot(r, r)))
    return Eigen(value=float(value), vector=_like(params, v), iterations=it,
                 converged=converged, residual=residual)
