"""Standardised ridge for an alpha grid by preconditioned conjugate gradients over the rows.

Why: at paper scale (seed 004: 13k tasks x 5,376 dims, 9 layers, a 10-alpha sweep in each of 11
folds) the exact path costs one dims x dims eigendecomposition per fold (~15-20 s each on this
machine, ~100 of them) and every touch of a float64 Gram matrix reads 230 MB. Here a fold never
forms a Gram matrix: each iteration is two products of the fold's standardised rows (float32, held
or streamed, ``engine_products``) with one column per (alpha, target), preconditioned by the top
eigenpairs of ``Z'Z`` (Nystrom PCG, Frangella, Tropp & Udell 2023): with the directions that carry
most of the variance solved exactly, tens of iterations reach the tolerance at every alpha.

Solved system per column (alpha a, target t), sklearn's ``Ridge`` on standardised rows::

    (Z'Z + a I) beta = Z'(y_t - mean(y_t))          intercept = mean(y_t)
"""

from __future__ import annotations

import numpy as np
import torch

from .engine_products import nystrom_covariance

PCG_RANK = 256
PCG_TOL = 1e-6  # relative residual per column (float32 products: ~1e-7 is the floor)
PCG_MAX_ITER = 500


def solve_ridge_pcg(oracle, centred_targets: np.ndarray, alphas, device, *, tol: float = PCG_TOL,
                    max_iter: int = PCG_MAX_ITER, rank: int = PCG_RANK) -> tuple[np.ndarray, dict]:
    """[alphas, dims, targets] coefficients and solver info (iterations, worst relative residual)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    y = torch.from_numpy(np.ascontiguousarray(centred_targets, dtype=np.float64)).to(device)
    n_alphas, n_targets = alphas.size, y.shape[1]
    rhs = oracle.backproject(y).repeat(1, n_alphas)  # [dims, alphas * targets], alpha-major
    shift = torch.from_numpy(np.repeat(alphas, n_targets)).to(device)
    basis, eigenvalues = nystrom_covariance(oracle, rank, device)
    eigenvalues = eigenvalues * oracle.n_rows  # of Z'Z
    tail = eigenvalues[-1] if basis.shape[1] < basis.shape[0] else torch.zeros((), dtype=torch.float64)
    inverse_extra = (tail + shift)[None, :] / (eigenvalues[:, None] + shift[None, :]) - 1.0  # [k, columns]

    def precondition(residual):
        return residual + basis @ ((basis.T @ residual) * inverse_extra)

    def operator(vectors):
        return oracle.gram_times(vectors) + shift * vectors

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
    true_residual = (rhs - operator(x)).norm(dim=0) / norms  # not the recurrence's: what the answer satisfies
    info = {"solver": "pcg", "iterations": iterations, "max_relative_residual": float(true_residual.max()),
            "converged": bool((true_residual <= 10 * tol).all()), "rank": int(basis.shape[1])}
    coefs = x.cpu().numpy().reshape(-1, n_alphas, n_targets).transpose(1, 0, 2)
    return np.ascontiguousarray(coefs), info
