"""Standardised ridge for an alpha grid by preconditioned conjugate gradients on a fold's d x d matrix.

Why: at paper scale (seed 004: 13k tasks x 5,376 dims, 9 layers, a 10-alpha sweep in each of 11
folds) the exact path costs one dims x dims eigendecomposition per fold (~15-20 s each on this
machine, ~100 of them). Here each fold's standardised X'X (from ``engine_ridge_folds``' sums) is held
in float32 (``GramOperator``); every iteration is one product of it with one column per (alpha,
target), preconditioned by its top eigenpairs (Nystrom PCG, Frangella, Tropp & Udell 2023), and the
answer is refined against the float64 matrix until its true relative residual is <= 1e-5. ~27
iterations per fold at seed 004's scale.

Solved system per column (alpha a, target t), sklearn's ``Ridge`` on standardised rows::

    (Z'Z + a I) beta = Z'(y_t - mean(y_t))          intercept = mean(y_t)
"""

from __future__ import annotations

import numpy as np
import torch

from .engine_products import nystrom_covariance

PCG_RANK = 256
PCG_TOL = 1e-5  # float64 relative residual per column (r agrees with the exact path to ~1e-7)
PCG_MAX_ITER = 500


class GramOperator:
    """``Z'Z`` as a dims x dims matrix: float32 products for the iterations, float64 for the check.

    Why float32 iterations: each reads the whole matrix (115 MB at 5,376 dims instead of 230 MB). The
    float64 copy computes the TRUE residual of the answer, and ``solve_ridge_pcg`` refines against it
    (mixed-precision iterative refinement), so the answer is not limited by float32 rounding.
    """

    def __init__(self, gram: np.ndarray, n_rows: int, device):
        self.exact = torch.from_numpy(np.ascontiguousarray(gram, dtype=np.float64)).to(device)
        self.gram = self.exact.to(torch.float32)
        self.dims, self.n_rows, self.device = gram.shape[0], int(n_rows), device

    def gram_times(self, matrix: torch.Tensor) -> torch.Tensor:
        return (self.gram @ matrix.to(torch.float32)).to(torch.float64)

    def exact_gram_times(self, matrix: torch.Tensor) -> torch.Tensor:
        return self.exact @ matrix


REFINEMENTS = 4  # rounds of iterative refinement against the float64 residual


def solve_ridge_pcg(oracle: GramOperator, cross: np.ndarray, alphas, device, *, tol: float = PCG_TOL,
                    max_iter: int = PCG_MAX_ITER, rank: int = PCG_RANK) -> tuple[np.ndarray, dict]:
    """[alphas, dims, targets] coefficients of ``(Z'Z + alpha I) beta = cross`` and solver info.

    ``cross``: [dims, targets] ``Z'(y - mean y)``. Each round solves for the correction that the
    float64 residual asks for (the first round: the whole answer) by PCG with float32 products; it
    stops when every column's float64 relative residual is at most ``tol``.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    cross = torch.from_numpy(np.ascontiguousarray(cross, dtype=np.float64)).to(device)
    n_alphas, n_targets = alphas.size, cross.shape[1]
    rhs = cross.repeat(1, n_alphas)  # [dims, alphas * targets], alpha-major
    shift = torch.from_numpy(np.repeat(alphas, n_targets)).to(device)
    basis, eigenvalues = nystrom_covariance(oracle, rank, device)
    eigenvalues = eigenvalues * oracle.n_rows  # of Z'Z
    tail = eigenvalues[-1] if basis.shape[1] < basis.shape[0] else torch.zeros((), dtype=torch.float64)
    inverse_extra = (tail + shift)[None, :] / (eigenvalues[:, None] + shift[None, :]) - 1.0  # [k, columns]

    def precondition(residual):
        return residual + basis @ ((basis.T @ residual) * inverse_extra)

    norms = torch.clamp(rhs.norm(dim=0), min=1e-300)
    x = torch.zeros_like(rhs)
    residual, iterations, rounds = rhs.clone(), 0, 0
    while rounds < REFINEMENTS:
        rounds += 1
        correction, used = _pcg(lambda v: oracle.gram_times(v) + shift * v, precondition, residual, tol / 4, max_iter)
        x += correction
        iterations += used
        residual = rhs - (oracle.exact_gram_times(x) + shift * x)  # float64: what the answer satisfies
        if bool(((residual.norm(dim=0) / norms) <= tol).all()):
            break
    relative = residual.norm(dim=0) / norms
    info = {"solver": "pcg", "iterations": iterations, "refinement_rounds": rounds,
            "max_relative_residual": float(relative.max()), "converged": bool((relative <= tol).all()),
            "rank": int(basis.shape[1])}
    coefs = x.cpu().numpy().reshape(-1, n_alphas, n_targets).transpose(1, 0, 2)
    return np.ascontiguousarray(coefs), info


def _pcg(operator, precondition, rhs: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Column-wise preconditioned conjugate gradients from zero to a relative (recurrence) residual ``tol``."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = precondition(r)
    p = z.clone()
    rz = (r * z).sum(0)
    norms = torch.clamp(rhs.norm(dim=0), min=1e-300)
    active = (r.norm(dim=0) / norms) > tol
    iterations = 0
    while bool(active.any()) and iterations < max_iter:
        iterations += 1
        q = operator(p)
        step = torch.where(active, rz / torch.clamp((p * q).sum(0), min=1e-300), torch.zeros_like(rz))
        x += step * p
        r -= step * q
        active &= (r.norm(dim=0) / norms) > tol
        z = precondition(r)
        rz_new = (r * z).sum(0)
        p = z + (rz_new / torch.clamp(rz, min=1e-300)) * p
        rz = rz_new
    return x, iterations
