"""Helpers shared by the tests of the float64 measurements (pytest's ``prepend`` import mode puts
tests/ on sys.path)."""
import torch

from bnutils.measure.linalg import DTYPE


def randn(*shape, seed=0):
    """A seeded float64 standard normal tensor."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def autograd(f, *args):
    """The gradients of the scalar f(*args) with respect to every argument, by autograd."""
    args = [a.clone().requires_grad_(True) for a in args]
    return torch.autograd.grad(f(*args), args)
