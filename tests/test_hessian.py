"""Tests of bnutils.measure.hessian against explicit Hessians."""
import pytest
import torch
from helpers import randn

from bnutils.core.bn import batch_norm_formula
from bnutils.measure.hessian import (HessianOperator, gradient, hvp, quadratic_form,
                                     top_eigenvalue)


def _quadratic(H):
    """f(x) = x^T H x / 2: a quadratic with the explicit Hessian H."""
    return lambda x: 0.5 * x @ H @ x


def _smooth(x):
    """A non-quadratic function whose Hessian varies with x."""
    return torch.sin(x).sum() * x.pow(2).sum() + torch.exp(0.3 * x).prod()


def _sym(n, eigenvalues, seed=0):
    Q, _ = torch.linalg.qr(randn(n, n, seed=seed))
    return (Q * torch.as_tensor(eigenvalues, dtype=Q.dtype)) @ Q.T


def test_gradient_and_hvp_match_explicit_hessian():
    x, v = randn(6, seed=1), randn(6, seed=2)
    H = torch.autograd.functional.hessian(_smooth, x)
    assert torch.allclose(hvp(_smooth, x, v), H @ v, rtol=1e-12, atol=1e-12)
    assert abs(quadratic_form(_smooth, x, v) - float(v @ H @ v)) < 1e-10
    g = torch.autograd.functional.jacobian(_smooth, x)
    assert torch.allclose(gradient(_smooth, x), g, rtol=1e-12, atol=1e-12)
    assert not x.requires_grad  # the caller's tensor is left alone


def test_hvp_over_several_tensors_is_the_block_hessian():
    a, b = randn(3, seed=3), randn(2, 2, seed=4)
    f = lambda a, b: (a.sum() * b).pow(3).sum() + (a ** 2).sum() * b.trace()  # noqa: E731
    va, vb = randn(3, seed=5), randn(2, 2, seed=6)
    flat = torch.cat([a, b.flatten()])
    H = torch.autograd.functional.hessian(lambda z: f(z[:3], z[3:].view(2, 2)), flat)
    ha, hb = hvp(f, [a, b], [va, vb])
    expected = H @ torch.cat([va, vb.flatten()])
    assert torch.allclose(torch.cat([ha, hb.flatten()]), expected, rtol=1e-10, atol=1e-12)


def test_operator_reuses_the_point_and_handles_linear_losses():
    H = _sym(5, [4.0, 2.0, 1.0, 0.5, -1.0])
    x = randn(5, seed=7)
    op = HessianOperator(_quadratic(H), x)
    assert torch.allclose(op.grad, H @ x)
    for s in range(3):
        v = randn(5, seed=10 + s)
        assert torch.allclose(op(v), H @ v, rtol=1e-12, atol=1e-12)
    c = randn(5, seed=8)
    assert torch.equal(hvp(lambda x: c @ x, x, c), torch.zeros(5, dtype=x.dtype))
    with pytest.raises(ValueError, match="shapes of params"):
        op(randn(4))
    with pytest.raises(ValueError, match="scalar"):
        HessianOperator(lambda x: x * 2, x)


def test_model_parameters_are_used_in_place():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    net.double()
    x, y = randn(8, 3, seed=1), randn(8, 1, seed=2)
    params = list(net.parameters())
    v = [randn(*p.shape, seed=20 + i) for i, p in enumerate(params)]
    loss = lambda *_: ((net(x) - y) ** 2).mean()  # noqa: E731
    hv = hvp(loss, params, v)
    flat = torch.cat([p.detach().flatten() for p in params])

    def functional(z):
        out, i = {}, 0
        for (name, p) in net.named_parameters():
            out[name] = z[i:i + p.numel()].view(p.shape)
            i += p.numel()
        return ((torch.func.functional_call(net, out, (x,)) - y) ** 2).mean()

    H = torch.autograd.functional.hessian(functional, flat)
    expected = H @ torch.cat([a.flatten() for a in v])
    assert torch.allclose(torch.cat([h.flatten() for h in hv]), expected, atol=1e-12)
    assert all(p.grad is None for p in params)


def test_hvp_through_bn_formula_is_second_order():
    """batch_norm_formula is twice differentiable: its HVP matches the explicit Hessian."""
    y = randn(5, 2, seed=3)
    t = randn(5, 2, seed=4)
    gamma, beta = torch.tensor([1.5, 0.7], dtype=y.dtype), torch.zeros(2, dtype=y.dtype)
    f = lambda y: (torch.tanh(batch_norm_formula(y, gamma, beta, 0.0)) * t).sum()  # noqa: E731
    v = randn(5, 2, seed=5)
    H = torch.autograd.functional.hessian(lambda z: f(z.view(5, 2)), y.flatten())
    assert torch.allclose(hvp(f, y, v).flatten(), H @ v.flatten(), atol=1e-10)


def test_top_eigenvalue_matches_eigvalsh():
    # an explicit positive semi-definite Hessian
    H = _sym(8, [9.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.1, 0.0], seed=2)
    top = top_eigenvalue(_quadratic(H), randn(8, seed=3), tol=1e-13)
    assert top.converged and abs(top.value - float(torch.linalg.eigvalsh(H)[-1])) < 1e-9
    assert abs(abs(float(top.vector @ H @ top.vector)) - top.value) < 1e-9
    assert top.residual < 1e-4
    # the Hessian of a non-quadratic function at a point
    x = randn(6, seed=9)
    Hs = torch.autograd.functional.hessian(_smooth, x)
    ev = torch.linalg.eigvalsh(Hs)
    dom = top_eigenvalue(_smooth, x, tol=1e-14, iters=5000)
    assert abs(dom.value - float(ev[ev.abs().argmax()])) < 1e-7


def test_top_eigenvalue_largest_of_an_indefinite_hessian():
    H = _sym(6, [-10.0, -3.0, 0.0, 1.0, 2.0, 4.0], seed=4)
    f, x = _quadratic(H), randn(6, seed=5)
    assert abs(top_eigenvalue(f, x, tol=1e-13).value + 10.0) < 1e-8       # dominant: -10
    largest = top_eigenvalue(f, x, tol=1e-13, which="largest")
    assert abs(largest.value - 4.0) < 1e-8                                  # largest: 4
    with pytest.raises(ValueError, match="which"):
        top_eigenvalue(f, x, which="smallest")
