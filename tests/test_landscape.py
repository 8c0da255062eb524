"""The landscape measurements against a quadratic whose Hessian is known."""
import numpy as np
import pytest
import torch

from bnutils.core.models import DLN
from bnutils.core.probes import Step
from bnutils.measure.landscape import LandscapeProbe, along_gradient, factor_grid, summarise


def quadratic(seed=0):
    """One linear layer W with the loss sum ||W x - y||^2: its Hessian applied to a direction V
    is 2 V X^T X, so along the gradient G the gradient changes by exactly -eta 2 G X^T X."""
    torch.manual_seed(seed)
    net = DLN(depth=1, dim=4).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(32, 4, generator=g, dtype=torch.float64)
    y = torch.randn(32, 4, generator=g, dtype=torch.float64)
    return net, x, y


def test_gradient_difference_and_effective_beta_on_a_quadratic():
    net, x, y = quadratic()
    W = net.layers[0].linear.weight.detach()
    G = 2 * (x @ W.T - y).T @ x
    HG = 2 * G @ (x.T @ x)
    etas = torch.tensor([1e-4, 1e-3, 3e-3], dtype=torch.float64)
    out = along_gradient(Step(net, x, y, 1e-3, "sse", 0), etas)
    torch.testing.assert_close(out["grad_diff"], etas * HG.norm())
    torch.testing.assert_close(out["step_norm"], etas * G.norm())
    loss0 = ((x @ W.T - y) ** 2).sum()
    expected = torch.stack([((x @ (W - e * G).T - y) ** 2).sum() for e in etas])
    torch.testing.assert_close(out["loss"], expected)
    assert out["loss0"].item() == pytest.approx(loss0.item())
    # effective beta = ||H g|| / ||g||, for every step size
    probe = LandscapeProbe(factors=(0.1, 1.0, 3.0), every=1)
    record = {k: v.numpy()[None] for k, v in probe(Step(net, x, y, 1e-3, "sse", 0)).items()}
    beta = summarise(record)["beta"][0]
    assert beta == pytest.approx((HG.norm() / G.norm()).item(), rel=1e-10)


def test_effective_beta_is_at_most_the_top_eigenvalue():
    net, x, y = quadratic(3)
    top = 2 * torch.linalg.eigvalsh(x.T @ x)[-1]
    probe = LandscapeProbe(factors=factor_grid(0.5, 4, 5), every=1)
    record = {k: v.numpy()[None] for k, v in probe(Step(net, x, y, 1e-3, "sse", 0)).items()}
    assert summarise(record)["beta"][0] <= top.item() * (1 + 1e-12)


def test_factor_grid_and_summaries():
    grid = factor_grid(0.5, 4, 4)
    assert grid[0] == pytest.approx(0.5) and grid[-1] == pytest.approx(4) and len(grid) == 4
    record = {"landscape_loss": np.array([[3.0, 1.0, 2.0]]),
              "landscape_grad_diff": np.array([[0.1, 0.4, 0.9]]),
              "landscape_step_norm": np.array([[1.0, 2.0, 3.0]])}
    s = summarise(record)
    assert (s["loss_min"][0], s["loss_max"][0]) == (1.0, 3.0)
    assert (s["pred_min"][0], s["pred_max"][0]) == (0.1, 0.9)
    assert s["beta"][0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="factors"):
        LandscapeProbe(factors=(), every=1)


def test_hessian_probe_finds_the_top_eigenvalue_of_a_quadratic():
    from bnutils.measure.landscape import HessianProbe

    net, x, y = quadratic(5)
    out = HessianProbe(iterations=200, every=1, tol=1e-12)(Step(net, x, y, 1e-3, "sse", 0))
    top = 2 * torch.linalg.eigvalsh(x.T @ x)[-1]  # Hessian 2 (X^T X) kron I
    assert out["hessian_top"].item() == pytest.approx(top.item(), rel=1e-8)
    W = net.layers[0].linear.weight
    assert out["param_norm2"].item() == pytest.approx((W ** 2).sum().item())


def test_hessian_probe_of_a_bn_network_matches_an_explicit_hessian():
    from torch.func import functional_call

    from bnutils.core.bn import differentiable_twice
    from bnutils.core.models import MLP
    from bnutils.measure.landscape import HessianProbe

    torch.manual_seed(0)
    net = MLP(3, hidden=(4,), n_classes=2, norm="bn").double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (8,))
    out = HessianProbe(iterations=500, every=1, tol=1e-12)(Step(net, x, y, 0.1,
                                                                "cross_entropy", 0))
    names = [k for k, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in net.parameters()])

    def f(flat):
        parts = torch.split(flat, [s.numel() for s in shapes])
        params = {k: v.view(s) for k, v, s in zip(names, parts, shapes)}
        out = functional_call(net, (params, dict(net.named_buffers())), (x,))
        return torch.nn.functional.cross_entropy(out, y)

    with differentiable_twice():
        H = torch.autograd.functional.hessian(f, flat0)
    eig = torch.linalg.eigvalsh(H)
    dominant = eig[eig.abs().argmax()].item()
    assert out["hessian_top"].item() == pytest.approx(dominant, rel=1e-6)
