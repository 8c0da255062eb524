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
