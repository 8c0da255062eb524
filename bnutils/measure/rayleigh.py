"""The generalised Rayleigh quotient of the pencil (u u^T, S) ([KDL+19] Sec. 3).

OLS with BN, minimised over the length, leaves minus

    rho(w) = (w^T u u^T w) / (w^T S w)                                  ([KDL+19] Eq. 7)

whose maximum rho* = u^T S^{-1} u is attained on the line through S^{-1} u. Gradient ascent on
rho with the step ||w||_S^2 / (2 L rho(w)) contracts the S-angle to that line by 1 - theta_1/L per
step (:func:`rayleigh_local_rate`). The same quantities measure the halfspace problems of
[KDL+19] Sec. 4, whose critical points lie on the same line.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .linalg import DTYPE


def rayleigh(S: Tensor, u: Tensor, w: Tensor) -> Tensor:
    """rho(w) = (w^T u)^2 / (w^T S w)."""
    return (u @ w) ** 2 / (w @ S @ w)


def rayleigh_grad(S: Tensor, u: Tensor, w: Tensor) -> Tensor:
    """grad rho(w) = (2 / ||w||_S^2) (B w - rho(w) S w), B = u u^T; orthogonal to w."""
    n2 = w @ S @ w
    return 2 / n2 * (u * (u @ w) - rayleigh(S, u, w) * (S @ w))


def rayleigh_max(S: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """(w*, rho*) = (S^{-1} u, u^T S^{-1} u): the top generalised eigenpair of (u u^T, S).
    By Cauchy-Schwarz in the S inner product, (u^T w)^2 = <S^{-1}u, w>_S^2 <= rho* ||w||_S^2."""
    w = torch.linalg.solve(S, u)
    return w, u @ w


def rayleigh_gap(S: Tensor, u: Tensor, w: Tensor) -> Tensor:
    """rho* - rho(w) = rho* sin^2 of the S-angle between w and S^{-1}u, computed from the S-norm
    of w's component S-orthogonal to S^{-1}u (no cancellation, unlike rho* - rho(w))."""
    w_star, rho_star = rayleigh_max(S, u)
    e = w - (w @ u) / rho_star * w_star
    return rho_star * (e @ S @ e) / (w @ S @ w)


def sin_to_line(S: Tensor, u: Tensor, w: Tensor) -> float:
    """|sin| of the S-angle between w and the line through S^{-1} u: sqrt(gap / rho*), accurate
    down to 1e-16, unlike 1 - cos^2."""
    return float(torch.sqrt(rayleigh_gap(S, u, w) / rayleigh_max(S, u)[1]))


def rayleigh_local_rate(S: Tensor, u: Tensor) -> float:
    """The exact asymptotic contraction of the direction error under gradient ascent on rho with
    the step ||w||_S^2 / (2 L rho(w)): 1 - theta/L, theta the smallest eigenvalue of S compressed
    to the orthogonal complement of a = S^{-1/2} u (in whitened coordinates). By Cauchy
    interlacing mu <= theta <= lambda_2, so it is never slower than the bound 1 - mu/L. The
    excess rho* - rho(w) contracts by its square."""
    lam, V = torch.linalg.eigh(S)
    a = V @ ((V.T @ u) / lam.sqrt())
    a = a / a.norm()
    basis = torch.linalg.svd(torch.eye(len(a), dtype=DTYPE, device=a.device)
                             - torch.outer(a, a))[0][:, :-1]
    theta = torch.linalg.eigvalsh(basis.T @ S @ basis)[0]
    return float(1 - theta / lam[-1])
