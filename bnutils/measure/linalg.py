"""Covariances, S-norms and the length-direction reparametrisation, in float64.

Notation of [KDL+19]: inputs with covariance S (symmetric positive definite, spectrum in
[mu, L]), the S-norm ||w||_S = sqrt(w^T S w), and the weight a BN unit effectively applies,

    wtilde = g * w / ||w||_S                                           ([KDL+19] Eq. 3)

so g is the length and w only carries a direction.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..infra import validate

DTYPE = torch.float64


def check_spd(S: Tensor) -> None:
    """Raise ValueError unless S is a symmetric positive-definite matrix."""
    if not isinstance(S, Tensor) or S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square matrix (torch.Tensor), got {type(S).__name__} "
                         f"of shape {getattr(S, 'shape', None)}")
    if not torch.allclose(S, S.T, rtol=1e-10, atol=1e-12):
        raise ValueError("S must be symmetric")
    if torch.linalg.eigvalsh(S).min() <= 0:
        raise ValueError("S must be positive definite (its smallest eigenvalue is <= 0)")


def spd_matrix(d: int, kappa: float, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Tensor:
    """S = Q diag(lambda) Q^T with eigenvalues geometrically spaced in [mu, L] = [1, kappa] and a
    random orthogonal Q (QR of a Gaussian matrix drawn from ``generator``, on the CPU)."""
    if validate.positive_int("d", d) < 2:
        raise ValueError(f"d must be an integer >= 2, got {d!r}")
    validate.at_least("kappa (condition number L/mu)", kappa, 1)
    Q, R = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=DTYPE))
    Q = Q * torch.sign(torch.diagonal(R))
    lam = torch.logspace(0, float(np.log10(kappa)), d, dtype=DTYPE)
    S = (Q * lam) @ Q.T
    return ((S + S.T) / 2).to(device)


def s_norm(w: Tensor, S: Tensor) -> Tensor:
    """||w||_S = sqrt(w^T S w), of a vector or of each row of a matrix; w is rescaled by its
    largest entry first, so a tiny or huge w neither underflows nor overflows."""
    scale = w.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    v = w / scale
    return scale[..., 0] * torch.sqrt(((v @ S) * v).sum(-1))


def dual_norm(G: Tensor, S: Tensor) -> float:
    """||G||_{S^{-1}} = sqrt(sum_i G_i^T S^{-1} G_i) (Frobenius over rows): the size of a gradient
    that does not depend on the parametrisation."""
    G = G.reshape(-1, G.shape[-1])
    return float(torch.sqrt((G * torch.linalg.solve(S, G.T).T).sum()))


def bn_weight(w: Tensor, g: float | Tensor, S: Tensor) -> Tensor:
    """wtilde = g w / ||w||_S, the weight a BN unit effectively applies ([KDL+19] Eq. 3); for a
    matrix, row by row (one unit per row, g one length per row)."""
    return (g / s_norm(w, S))[..., None] * w


def gaussian_samples(n: int, S: Tensor, generator: torch.Generator) -> Tensor:
    """n rows x ~ N(0, S), as x = L e with S = L L^T (Cholesky) and e ~ N(0, I) from
    ``generator``."""
    return torch.randn(n, S.shape[0], generator=generator, dtype=DTYPE) @ torch.linalg.cholesky(S).T


def empirical_cov(X: Tensor) -> Tensor:
    """The biased covariance (1/n) sum (x - xbar)(x - xbar)^T of the rows of X."""
    Xc = X - X.mean(0)
    return Xc.T @ Xc / X.shape[0]
