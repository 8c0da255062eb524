"""Batch normalization from scratch, its two inference modes, and the variants of [STIM18].

The transform of [IS15] Alg. 1, for a mini-batch B = {x_1 ... x_m} of one feature (channel):

.. math::

    \\mu_B = \\frac{1}{m}\\sum_i x_i, \\qquad
    \\sigma_B^2 = \\frac{1}{m}\\sum_i (x_i - \\mu_B)^2, \\qquad
    \\hat x_i = \\frac{x_i - \\mu_B}{\\sqrt{\\sigma_B^2 + \\epsilon}}, \\qquad
    y_i = \\gamma \\hat x_i + \\beta .

Inputs are dense ``(N, C)``, sequences ``(N, C, L)`` or images ``(N, C, H, W)``; the statistics are
taken per channel over every axis but the channel one, so for a convolution the "batch" has
m' = m * p * q values ([IS15] Sec. 3.2). The backward pass is written out from the formulas of
[IS15] Sec. 3 in :class:`BatchNormFunction`, not left to autograd.

:class:`BatchNorm` is the layer. In eval mode it applies a fixed affine map built from one of two
estimates of the population statistics (``inference=``):

* ``"ema"``: PyTorch's exponential moving average of the batch mean and of the *unbiased* batch
  variance (``torch.nn.BatchNorm1d/2d``'s numbers, up to rounding);
* ``"population"``: [IS15] Alg. 2, E[x] = the average of the batch means and
  Var[x] = m/(m-1) * the average of the batch variances, over the training batches seen since
  :meth:`BatchNorm.reset_population` (see :func:`population_statistics`).

Variants with the same constructor, for drop-in use by model builders (:func:`make_norm`):
:class:`NoisyBatchNorm` ([STIM18] App. A.2.1, Alg. 1) and :class:`LpNorm` ([STIM18] Sec. 3.3).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator

import torch
import torch.nn as nn
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..infra import validate

INFERENCE_MODES = ("ema", "population")
NORMS = ("bn", "noisy_bn", "l1", "l2", "linf")


# --------------------------------------------------------------------------------------------
# The transform ([IS15] Alg. 1) and its backward ([IS15] Sec. 3)
# --------------------------------------------------------------------------------------------


def _stat_dims(x: Tensor) -> list[int]:
    """Every axis but the channel axis 1: the "batch" of [IS15] Sec. 3.2."""
    return [0] + list(range(2, x.ndim))


def _per_channel(v: Tensor, x: Tensor) -> Tensor:
    """A length-C vector shaped to broadcast against ``x`` along its channel axis."""
    return v.view((1, -1) + (1,) * (x.ndim - 2))


def per_unit(a: Tensor) -> Tensor:
    """Activations as ``(units, values)``: one row per unit (feature or channel); for a conv,
    every (example, height, width) position is a value of its channel ([IS15] Sec. 3.2)."""
    return a.transpose(0, 1).reshape(a.shape[1], -1)


@contextlib.contextmanager
def forked_rng(model: nn.Module) -> Iterator[None]:
    """Run a block and then put back every random generator it could draw from: the global CPU
    and CUDA ones and each module's own ``generator`` (e.g. :class:`NoisyBatchNorm`'s)."""
    devices = sorted({t.device.index or 0 for t in model.state_dict().values() if t.is_cuda})
    own = {id(g): g for m in model.modules()
           if isinstance(g := getattr(m, "generator", None), torch.Generator)}
    states = [(g, g.get_state()) for g in own.values()]
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            for g, state in states:
                g.set_state(state)


def check_input(x: Tensor, num_features: int, training: bool) -> None:
    """Raise TypeError/ValueError for an input a normalisation layer cannot handle."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got "
                        f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"expected input of shape (N, C), (N, C, L) or (N, C, H, W), "
                         f"got {tuple(x.shape)}")
    if x.shape[1] != num_features:
        raise ValueError(f"expected {num_features} channels (axis 1), got {tuple(x.shape)}")
    if training and x.numel() // x.shape[1] < 2:
        raise ValueError(f"the batch variance needs more than one value per channel in training "
                         f"mode, got input of shape {tuple(x.shape)}")


def _alg1(x: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> tuple[Tensor, ...]:
    """[IS15] Alg. 1: y and the intermediate values (x - mu, 1/sqrt(sigma2 + eps), xhat, mu,
    sigma2); with autograd on, this is also the reference the hand-written backward is checked
    against."""
    dims = _stat_dims(x)
    mu = x.mean(dims, keepdim=True)
    xmu = x - mu
    sigma2 = (xmu * xmu).mean(dims, keepdim=True)  # biased: divides by m
    inv_std = torch.rsqrt(sigma2 + eps)
    xhat = xmu * inv_std
    y = _per_channel(gamma, x) * xhat + _per_channel(beta, x)
    return y, xmu, inv_std, xhat, mu, sigma2


def batch_norm_formula(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """[IS15] Alg. 1 in plain tensor operations, differentiated by autograd (the reference)."""
    return _alg1(x, gamma, beta, eps)[0]


class BatchNormFunction(torch.autograd.Function):
    """[IS15] Alg. 1 forward with the backward pass of [IS15] Sec. 3 written out.

    ``apply(x, gamma, beta, eps)`` returns ``(y, mu, sigma2)``: the output and the per-channel
    batch mean and biased variance (not differentiable; for the running statistics).
    """

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor, eps: float):
        y, xmu, inv_std, xhat, mu, sigma2 = _alg1(x, gamma, beta, eps)
        ctx.save_for_backward(xmu, inv_std, xhat, gamma)
        mu, sigma2 = mu.flatten(), sigma2.flatten()
        ctx.mark_non_differentiable(mu, sigma2)
        return y, mu, sigma2

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, _dmu_out: Tensor, _dsigma2_out: Tensor):
        xmu, inv_std, xhat, gamma = ctx.saved_tensors
        dims = _stat_dims(dy)
        m = dy.numel() // dy.shape[1]
        dxhat = dy * _per_channel(gamma, dy)
        dsigma2 = (dxhat * xmu).sum(dims, keepdim=True) * -0.5 * inv_std ** 3
        dmu = (dxhat * -inv_std).sum(dims, keepdim=True) \
            + dsigma2 * (-2 * xmu).sum(dims, keepdim=True) / m
        dx = dxhat * inv_std + dsigma2 * 2 * xmu / m + dmu / m
        dgamma = (dy * xhat).sum(dims)
        dbeta = dy.sum(dims)
        return dx, dgamma, dbeta, None


_AUTOGRAD = [False]  # set by differentiable_twice()


@contextlib.contextmanager
def differentiable_twice() -> Iterator[None]:
    """Within the block, :class:`BatchNorm` layers compute the transform with plain tensor
    operations that autograd differentiates, also twice (Hessian-vector products), instead of the
    hand-written backward of [IS15] Sec. 3, which is differentiable once. The numbers are the
    same (the tests compare them)."""
    before = _AUTOGRAD[0]
    _AUTOGRAD[0] = True
    try:
        yield
    finally:
        _AUTOGRAD[0] = before


def batch_norm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """The BN transform of a batch with batch statistics ([IS15] Alg. 1, backward of Sec. 3)."""
    check_input(x, gamma.numel(), training=True)
    return BatchNormFunction.apply(x, gamma, beta, eps)[0]


# --------------------------------------------------------------------------------------------
# The layer: training with batch statistics, two inference modes
# --------------------------------------------------------------------------------------------


class BatchNorm(nn.Module):
    """Batch normalization [IS15] over axis 1 of (N, C), (N, C, L) or (N, C, H, W) inputs.

    Training mode: y = gamma * (x - mu_B) / sqrt(sigma2_B + eps) + beta with the batch statistics
    ([IS15] Alg. 1), and both population estimates are updated. Eval mode: the fixed affine map of
    [IS15] Alg. 2, y = gamma / sqrt(Var + eps) * x + (beta - gamma E[x] / sqrt(Var + eps)), with
    (E[x], Var) taken from ``inference``:

    * ``"ema"``: ``running_mean``/``running_var``, exponential moving averages with weight
      ``momentum`` of the batch mean and the unbiased batch variance m/(m-1) sigma2_B (PyTorch's
      convention: the numbers of ``torch.nn.BatchNorm1d/2d``, up to rounding);
    * ``"population"``: averages of the batch means and of the unbiased batch variances over the
      training batches since :meth:`reset_population`. With a fixed batch size this is exactly
      Var[x] = m/(m-1) * E_B[sigma2_B] of [IS15] Alg. 2; compute it after training with
      :func:`population_statistics`.

    Args:
        num_features: C, the number of channels (features).
        eps: added to the variance inside the square root.
        momentum: weight of the newest batch in the moving averages, in (0, 1].
        inference: ``"ema"`` or ``"population"`` (may be changed later via the attribute).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 inference: str = "ema") -> None:
        super().__init__()
        validate.positive_int("num_features", num_features)
        validate.positive_number("eps", eps)
        if not 0 < validate.in_range("momentum", momentum, 0, 1):
            raise ValueError(f"momentum must lie in (0, 1], got {momentum!r}")
        validate.one_of("inference", inference, INFERENCE_MODES)
        self.num_features, self.eps, self.momentum, self.inference = \
            num_features, eps, momentum, inference
        self.weight = nn.Parameter(torch.ones(num_features))   # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))    # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("population_mean_sum", torch.zeros(num_features))
        self.register_buffer("population_var_sum", torch.zeros(num_features))
        self.register_buffer("population_batches", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, " \
               f"inference={self.inference!r}"

    def reset_population(self) -> None:
        """Forget the batches accumulated for ``inference="population"``."""
        self.population_mean_sum.zero_()
        self.population_var_sum.zero_()
        self.population_batches.zero_()

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training-mode transform: (y, batch mean, unbiased batch variance), per channel."""
        if _AUTOGRAD[0]:
            y, _, _, _, mu, sigma2 = _alg1(x, self.weight, self.bias, self.eps)
            mu, sigma2 = mu.detach().flatten(), sigma2.detach().flatten()
        else:
            y, mu, sigma2 = BatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        m = x.numel() // x.shape[1]
        return y, mu, sigma2 * (m / (m - 1))

    def denominator(self, spread: Tensor) -> Tensor:
        """The divisor built from the tracked spread: sqrt(Var + eps)."""
        return torch.sqrt(spread + self.eps)

    def population(self) -> tuple[Tensor, Tensor]:
        """(E[x], spread) used in eval mode, according to ``inference``."""
        if self.inference == "ema":
            return self.running_mean, self.running_var
        validate.one_of("inference", self.inference, INFERENCE_MODES)
        if self.population_batches == 0:
            raise RuntimeError("no population statistics yet: run training batches (e.g. "
                               "population_statistics(model, batches)) before eval")
        n = self.population_batches
        return self.population_mean_sum / n, self.population_var_sum / n

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_features, self.training)
        if self.training:
            y, mean, spread = self.normalize(x)
            with torch.no_grad():
                for running, batch in ((self.running_mean, mean), (self.running_var, spread)):
                    running.mul_(1 - self.momentum).add_(self.momentum * batch)
                self.population_mean_sum += mean
                self.population_var_sum += spread
                self.population_batches += 1
            return y
        mean, spread = self.population()
        scale = self.weight / self.denominator(spread)  # [IS15] Alg. 2, step 11
        return x * _per_channel(scale, x) + _per_channel(self.bias - mean * scale, x)


@torch.no_grad()
def population_statistics(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """[IS15] Alg. 2, steps 8-10: estimate every normalisation layer's population statistics.

    Resets the ``"population"`` accumulators of every :class:`BatchNorm` in ``model``, then
    passes ``batches`` (training inputs) through it in training mode. Everything else is left as
    it was: the moving averages, the train/eval mode of every module and the random generators
    (noisy BN draws noise in training mode; see :func:`forked_rng`). Returns the number of
    batches used.
    """
    layers = [mod for mod in model.modules() if isinstance(mod, BatchNorm)]
    if not layers:
        raise ValueError("model has no BatchNorm layer")
    saved = [(mod.running_mean.clone(), mod.running_var.clone()) for mod in layers]
    modes = [(mod, mod.training) for mod in model.modules()]
    for mod in layers:
        mod.reset_population()
    model.train()
    n = 0
    try:
        with forked_rng(model):
            for x in batches:
                model(x)
                n += 1
    finally:
        for mod, (mean, var) in zip(layers, saved):
            mod.running_mean.copy_(mean)
            mod.running_var.copy_(var)
        for mod, training in modes:
            mod.training = training
    if n == 0:
        raise ValueError("population_statistics needs at least one batch")
    return n


# --------------------------------------------------------------------------------------------
# [STIM18] variants
# --------------------------------------------------------------------------------------------


class NoisyBatchNorm(BatchNorm):
    """BN followed by time-varying, non-Gaussian noise: "noisy" BN of [STIM18] App. A.2.1, Alg. 1.

    At every training step, for each unit (channel) j draw mu_j ~ U(-n_mu, n_mu) and
    sigma_j ~ U(1, n_sigma); for each sample i draw m_ij ~ U(mu_j - r_mu, mu_j + r_mu) and
    s_ij ~ N(sigma_j, r_sigma) -- ``r_sigma`` is read as a standard deviation, the paper does not
    say -- and set a_ij <- s_ij * a_ij + m_ij on the BN output a. For convolutions height and
    width count as batch, so every (n, h, w) position is a sample. Eval mode adds no noise.

    Args:
        generator: optional ``torch.Generator`` (on the input's device) for reproducible noise.
        Others as :class:`BatchNorm`; defaults n_mu=0.5, n_sigma=1.25, r_mu=r_sigma=0.1 as in
        [STIM18].
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 inference: str = "ema", n_mu: float = 0.5, n_sigma: float = 1.25,
                 r_mu: float = 0.1, r_sigma: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(num_features, eps, momentum, inference)
        if not (n_mu >= 0 and n_sigma >= 1 and r_mu >= 0 and r_sigma >= 0):
            raise ValueError(f"need n_mu >= 0, n_sigma >= 1, r_mu >= 0, r_sigma >= 0; got "
                             f"{n_mu=}, {n_sigma=}, {r_mu=}, {r_sigma=}")
        self.n_mu, self.n_sigma, self.r_mu, self.r_sigma = n_mu, n_sigma, r_mu, r_sigma
        self.generator = generator

    def extra_repr(self) -> str:
        return super().extra_repr() + f", n_mu={self.n_mu}, n_sigma={self.n_sigma}, " \
                                      f"r_mu={self.r_mu}, r_sigma={self.r_sigma}"

    def forward(self, x: Tensor) -> Tensor:
        a = super().forward(x)
        if not self.training:
            return a
        unit = (1, self.num_features) + (1,) * (x.ndim - 2)
        draw = dict(generator=self.generator, dtype=a.dtype, device=a.device)
        mu = self.n_mu * (2 * torch.rand(unit, **draw) - 1)
        sigma = 1 + (self.n_sigma - 1) * torch.rand(unit, **draw)
        m = mu + self.r_mu * (2 * torch.rand(a.shape, **draw) - 1)
        s = sigma + self.r_sigma * torch.randn(a.shape, **draw)
        return s * a + m


class LpNorm(BatchNorm):
    """l_p normalisation in place of BN, p in {1, 2, inf} ([STIM18] Sec. 3.3, App. A).

    [STIM18] subtract the batch mean and divide by "the average l_p norm" of the activations
    before the mean shift, without the exact formula. Our reading, per channel, over the m values
    a_1 ... a_m of the batch (times height and width for convolutions):

        s_p = (1/m sum_i |a_i|^p)^(1/p)   (p = 1, 2),     s_inf = max_i |a_i|,
        y_i = gamma * (a_i - mu_B) / (s_p + eps) + beta,

    i.e. the l_p norm of the un-centred activations divided by m^(1/p), so that it does not grow
    with the batch; eps is added to s_p (not inside a root). Gradients come from autograd. For
    eval, ``running_var`` holds the moving average of s_p (the name is shared with
    :class:`BatchNorm` so that every layer has the same buffers), and ``"population"`` averages s_p
    over batches, with no m/(m-1) correction; the eval map is gamma/(s + eps) * (x - E[x]) + beta.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 inference: str = "ema", p: float = 2) -> None:
        super().__init__(num_features, eps, momentum, inference)
        validate.one_of("p", p, (1, 2, math.inf))
        self.p = p

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"

    def lp_normalizer(self, x: Tensor) -> Tensor:
        """s_p per channel: the average l_p norm of the un-centred activations (see class doc)."""
        a = per_unit(x).abs()
        if self.p == math.inf:
            return a.amax(1)
        return a.pow(self.p).mean(1).pow(1 / self.p)

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu = x.mean(_stat_dims(x))
        s = self.lp_normalizer(x)
        y = _per_channel(self.weight / (s + self.eps), x) * (x - _per_channel(mu, x)) \
            + _per_channel(self.bias, x)
        return y, mu.detach(), s.detach()

    def denominator(self, spread: Tensor) -> Tensor:
        return spread + self.eps


def make_norm(kind: str, num_features: int, **kw) -> BatchNorm:
    """A normalisation layer by name: ``"bn"``, ``"noisy_bn"``, ``"l1"``, ``"l2"`` or ``"linf"``.

    Keyword arguments go to the layer's constructor (eps, momentum, inference, and the noise
    levels / generator of ``"noisy_bn"``).
    """
    validate.one_of("normalisation", kind, NORMS)
    if kind == "bn":
        return BatchNorm(num_features, **kw)
    if kind == "noisy_bn":
        return NoisyBatchNorm(num_features, **kw)
    return LpNorm(num_features, p={"l1": 1, "l2": 2, "linf": math.inf}[kind], **kw)
