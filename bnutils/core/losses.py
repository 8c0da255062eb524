"""The losses of the book's experiments, and the accuracy of a batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("cross_entropy", "sse")


def loss_fn(name: str, out: Tensor, y: Tensor) -> Tensor:
    """``"cross_entropy"``: mean over the batch; ``"sse"``: sum over the batch of the squared
    error ||f(x) - y||^2 (the DLN loss of [STIM18] App. A)."""
    if out.dtype in (torch.float16, torch.bfloat16):  # autocast: the loss in float32
        out = out.float()
    if name == "cross_entropy":
        return F.cross_entropy(out, y)
    return (out - y).pow(2).sum()


def accuracy(out: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct argmax predictions; NaN for regression targets."""
    if y.dtype != torch.int64:
        return torch.full((), float("nan"), device=out.device)
    return (out.argmax(1) == y).float().mean()
