"""Tests of bnutils.core.bn: the BN transform, its hand-written backward, inference, variants."""
import math

import pytest
import torch
import torch.nn as nn

from bnutils.core.bn import (BatchNorm, BatchNormFunction, LpNorm, NoisyBatchNorm, batch_norm,
                             batch_norm_formula, make_norm, population_statistics)

SHAPES = [(8, 3), (4, 3, 5), (4, 3, 2, 3)]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs(shape, dtype=torch.float64, seed=0):
    g = _gen(seed)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 3 + 1).requires_grad_()
    c = shape[1]
    gamma = (torch.rand(c, generator=g, dtype=dtype) + 0.5).requires_grad_()
    beta = torch.randn(c, generator=g, dtype=dtype).requires_grad_()
    return x, gamma, beta


@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_hand_written_backward(shape):
    x, gamma, beta = _inputs(shape)
    f = lambda x, g, b: BatchNormFunction.apply(x, g, b, 1e-5)[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, gamma, beta))


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_autograd_through_the_formula(shape):
    x, gamma, beta = _inputs(shape)
    dy = torch.randn(shape, generator=_gen(1), dtype=torch.float64)
    ours = torch.autograd.grad(batch_norm(x, gamma, beta), (x, gamma, beta), dy)
    ref = torch.autograd.grad(batch_norm_formula(x, gamma, beta), (x, gamma, beta), dy)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_output_is_standardised_per_channel():
    x, gamma, beta = _inputs((6, 4, 3, 3))
    y = batch_norm(x, torch.ones(4, dtype=x.dtype), torch.zeros(4, dtype=x.dtype), eps=0.0)
    dims = (0, 2, 3)
    torch.testing.assert_close(y.mean(dims), torch.zeros(4, dtype=x.dtype), rtol=0, atol=1e-12)
    torch.testing.assert_close(y.var(dims, unbiased=False), torch.ones(4, dtype=x.dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_agrees_with_torch_in_train_and_eval(shape):
    torch.manual_seed(0)
    ref = (nn.BatchNorm1d if len(shape) < 4 else nn.BatchNorm2d)(shape[1]).double()
    ours = BatchNorm(shape[1]).double()
    with torch.no_grad():
        for mod in (ref, ours):
            mod.weight.copy_(torch.linspace(0.5, 2, shape[1]))
            mod.bias.copy_(torch.linspace(-1, 1, shape[1]))
    for step in range(3):
        x, _, _ = _inputs(shape, seed=step)
        dy = torch.randn(shape, generator=_gen(10 + step), dtype=torch.float64)
        outs = []
        for mod in (ref, ours):
            mod.zero_grad()
            xi = x.detach().clone().requires_grad_()
            y = mod(xi)
            y.backward(dy)
            outs.append((y, xi.grad, mod.weight.grad, mod.bias.grad))
        for a, b in zip(*outs):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours.running_mean, ref.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.running_var, ref.running_var, rtol=1e-12, atol=1e-12)
    ref.eval(), ours.eval()
    x, _, _ = _inputs(shape, seed=99)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)


def test_agrees_with_torch_in_float32():
    ref, ours = nn.BatchNorm2d(3), BatchNorm(3)
    x = torch.randn(16, 3, 4, 4, generator=_gen())
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)


def test_population_statistics_follow_alg2_by_hand():
    m, c = 5, 3
    batches = [torch.randn(m, c, generator=_gen(i), dtype=torch.float64) * (i + 1) + i
               for i in range(4)]
    layer = BatchNorm(c, momentum=0.3, inference="population").double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    layer.train()(batches[0] * 100)  # an earlier batch that the reset must forget
    ema = layer.running_mean.clone(), layer.running_var.clone()
    layer.eval()
    assert population_statistics(layer, batches) == 4
    assert not layer.training  # mode restored
    torch.testing.assert_close(layer.running_mean, ema[0], rtol=0, atol=0)  # EMA untouched
    torch.testing.assert_close(layer.running_var, ema[1], rtol=0, atol=0)
    mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    var = m / (m - 1) * torch.stack([b.var(0, unbiased=False) for b in batches]).mean(0)
    torch.testing.assert_close(layer.population(), (mean, var), rtol=1e-12, atol=1e-12)
    x = torch.randn(7, c, generator=_gen(7), dtype=torch.float64)
    scale = layer.weight / torch.sqrt(var + layer.eps)
    expected = scale * x + (layer.bias - scale * mean)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    layer.inference = "ema"
    assert not torch.allclose(layer(x), expected)


def test_population_mode_needs_statistics():
    layer = BatchNorm(2, inference="population").eval()
    with pytest.raises(RuntimeError, match="population"):
        layer(torch.randn(3, 2))


def test_noisy_bn_noise_statistics_and_reproducibility():
    c, n = 4, 4000
    layer = NoisyBatchNorm(c, generator=_gen(3))
    x = torch.randn(n, c, generator=_gen(4))
    base = BatchNorm(c)(x).detach()
    shifts, scales = [], []
    for _ in range(200):
        y = layer(x).detach()
        # a_ij <- s_ij a_ij + m_ij: regress y on a per unit to recover mean shift and scale
        a_c = base - base.mean(0)
        scale = (a_c * (y - y.mean(0))).sum(0) / (a_c * a_c).sum(0)
        shifts.append(y.mean(0) - scale * base.mean(0))
        scales.append(scale)
    shifts, scales = torch.stack(shifts), torch.stack(scales)
    assert shifts.abs().max() <= 0.5 + 0.1 + 0.01  # |m_ij| <= n_mu + r_mu
    assert shifts.abs().max() > 0.3  # and the shifts really vary over steps
    assert scales.min() > 1 - 0.02 and scales.max() < 1.25 + 0.02  # sigma_j in [1, n_sigma]
    assert abs(scales.mean().item() - 1.125) < 0.02  # E[sigma_j] = (1 + n_sigma) / 2
    # per-sample noise: the residual scatter of s_ij about sigma_j has std r_sigma = 0.1
    a = NoisyBatchNorm(1, generator=_gen(5), n_mu=0, n_sigma=1, r_mu=0)
    y = a(torch.randn(n, 1, generator=_gen(6)))
    xhat = BatchNorm(1)(torch.randn(n, 1, generator=_gen(6)))
    assert abs((y / xhat - 1).std().item() - 0.1) < 0.01
    # eval mode adds no noise; the same generator seed gives the same noise
    layer.eval()
    plain = BatchNorm(c)
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x), plain.eval()(x), rtol=0, atol=0)
    y1 = NoisyBatchNorm(c, generator=_gen(8))(x)
    y2 = NoisyBatchNorm(c, generator=_gen(8))(x)
    y3 = NoisyBatchNorm(c, generator=_gen(9))(x)
    assert torch.equal(y1, y2) and not torch.allclose(y1, y3)


def test_noisy_bn_conv_positions_are_samples():
    layer = NoisyBatchNorm(2, generator=_gen(0), n_mu=0, r_mu=0, r_sigma=0)
    y = layer(torch.randn(3, 2, 4, 4, generator=_gen(1)))
    x = BatchNorm(2)(torch.randn(3, 2, 4, 4, generator=_gen(1)))
    ratio = (y / x).detach()  # r_sigma = 0: one sigma_j per channel for every (n, h, w)
    assert torch.allclose(ratio, ratio[:1, :, :1, :1].expand_as(ratio), atol=1e-4)
    assert not torch.allclose(ratio[0, 0], ratio[0, 1])


@pytest.mark.parametrize("kind,p", [("l1", 1), ("l2", 2), ("linf", math.inf)])
def test_lp_norm_matches_hand_formula(kind, p):
    x = torch.randn(6, 3, 2, 2, generator=_gen(), dtype=torch.float64) + 2
    layer = make_norm(kind, 3).double()
    assert isinstance(layer, LpNorm) and layer.p == p
    y = layer(x)
    a = x.transpose(0, 1).reshape(3, -1)
    s = {1: a.abs().mean(1), 2: a.pow(2).mean(1).sqrt(), math.inf: a.abs().max(1).values}[p]
    torch.testing.assert_close(layer.lp_normalizer(x), s, rtol=1e-12, atol=1e-12)
    expected = (a - a.mean(1, keepdim=True)) / (s[:, None] + layer.eps)
    torch.testing.assert_close(y.transpose(0, 1).reshape(3, -1), expected)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3, dtype=x.dtype), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * s)
    layer.eval()
    torch.testing.assert_close(layer(x), (x - layer.running_mean.view(1, 3, 1, 1))
                               / (layer.running_var.view(1, 3, 1, 1) + layer.eps))


@pytest.mark.parametrize("kind", ["l1", "l2", "linf"])
def test_lp_norm_gradcheck(kind):
    layer = make_norm(kind, 3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
    x = torch.randn(5, 3, generator=_gen(), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))


def test_make_norm_kinds_and_errors():
    assert type(make_norm("bn", 3)) is BatchNorm
    assert isinstance(make_norm("noisy_bn", 3, n_mu=0.2), NoisyBatchNorm)
    with pytest.raises(ValueError, match="allowed: bn, noisy_bn, l1, l2, linf"):
        make_norm("batchnorm", 3)


def test_bad_inputs_raise_clear_errors():
    layer = BatchNorm(3)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        layer(torch.randn(2, 3, 4, 4, 4))
    with pytest.raises(ValueError, match="expected 3 channels"):
        layer(torch.randn(4, 2))
    with pytest.raises(TypeError, match="floating"):
        layer(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="more than one value per channel"):
        layer(torch.randn(1, 3))
    layer.eval()(torch.randn(1, 3))  # fine in eval mode
    with pytest.raises(ValueError, match="allowed: ema, population"):
        BatchNorm(3, inference="running")
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(3, momentum=0)
    with pytest.raises(ValueError, match="allowed: 1, 2"):
        LpNorm(3, p=3)
    with pytest.raises(ValueError, match="n_sigma"):
        NoisyBatchNorm(3, n_sigma=0.5)


def test_population_statistics_leaves_the_random_generators_alone():
    own = _gen(5)
    layers = nn.Sequential(NoisyBatchNorm(3), NoisyBatchNorm(3, generator=own))
    batches = [torch.randn(8, 3, generator=_gen(i)) for i in range(2)]
    torch.manual_seed(1)
    state, own_state = torch.get_rng_state(), own.get_state()
    population_statistics(layers, batches)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(own.get_state(), own_state)
    layers.train()(batches[0])  # whereas a training forward draws from both
    assert not torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(own.get_state(), own_state)


def test_differentiable_twice_gives_the_same_gradients_and_a_hessian():
    from bnutils.core.bn import differentiable_twice

    torch.manual_seed(0)
    layer = BatchNorm(3).double()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, dtype=torch.float64)
    f = lambda: (layer(x) ** 2 * w).sum()  # noqa: E731  (a non-linear function of the output)
    (g_hand,) = torch.autograd.grad(f(), x)
    with pytest.raises(RuntimeError):  # the hand-written backward is once differentiable
        (g,) = torch.autograd.grad(f(), x, create_graph=True)
        torch.autograd.grad(g.sum(), x)
    with differentiable_twice():
        (g,) = torch.autograd.grad(f(), x, create_graph=True)
        v = torch.randn(6, 3, dtype=torch.float64)
        (hv,) = torch.autograd.grad((g * v).sum(), x)
    torch.testing.assert_close(g.detach(), g_hand)
    h = 1e-6  # Hessian-vector product against central differences of the gradient
    grads = []
    for sign in (1, -1):
        xs = (x.detach() + sign * h * v).requires_grad_()
        grads.append(torch.autograd.grad((layer(xs) ** 2 * w).sum(), xs)[0])
    torch.testing.assert_close(hv, (grads[0] - grads[1]) / (2 * h), rtol=1e-6, atol=1e-6)
