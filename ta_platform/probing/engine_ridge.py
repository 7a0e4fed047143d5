"""Standardised ridge regression for a whole alpha grid from one pass of accumulated X'X and X'y.

Why: the preference study sweeps ten alphas per fold and target, and at paper scale (13k tasks x
5376 dims, 9 layers) refitting sklearn's ``Ridge`` per alpha repeats the same d x d work. The
training rows are read once, block by block, into float64 sums (``engine_ridge_folds.group_sums``,
shifted by the first block's mean so float32 activations with large offsets lose nothing); the
centred, standardised Gram matrix ``Z'Z`` is eigendecomposed once, after which every alpha (and every
target) is a matrix product::

    coef(alpha) = V diag(1 / (lambda + alpha)) V' Z'(y - mean(y))      intercept = mean(y)

which is exactly sklearn's ``Ridge(alpha, fit_intercept=True)`` on ``StandardScaler``-transformed
training rows (the standardised columns are centred, so the intercept is the target mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .engine_data import DEFAULT_BLOCK_ROWS, as_row_source, engine_device, resolve_rows
from .streaming_scaler import Standardisation, safe_scale


@dataclass(frozen=True)
class RidgeGram:
    """Centred sufficient statistics of the training rows (float64)."""

    n_rows: int
    mean: np.ndarray  # [dims]
    cross: np.ndarray  # [dims, dims] sum (x - mean)(x - mean)'
    cross_y: np.ndarray  # [dims, targets] sum (x - mean)(y - y_mean)
    y_mean: np.ndarray  # [targets]

    def scaler(self) -> Standardisation:
        var = np.diag(self.cross) / self.n_rows
        return Standardisation(self.mean, safe_scale(var, self.mean, self.n_rows), var, self.n_rows)

    def standardised(self) -> tuple[Standardisation, np.ndarray, np.ndarray]:
        """(scaler, Z'Z, Z'(y - mean y)) for the standardised rows ``Z``: what every ridge solver solves."""
        scaler = self.scaler()
        return scaler, self.cross / np.outer(scaler.scale, scaler.scale), self.cross_y / scaler.scale[:, None]


@dataclass(frozen=True)
class RidgePath:
    """The eigendecomposition of the standardised Gram matrix: coefficients for any alpha."""

    scaler: Standardisation
    eigenvalues: np.ndarray  # [dims]
    eigenvectors: np.ndarray  # [dims, dims]
    projected: np.ndarray  # V' Z'y_c  [dims, targets]
    y_mean: np.ndarray

    def coef(self, alpha: float) -> np.ndarray:
        """[dims, targets] standardised-unit coefficients for one alpha."""
        if alpha <= 0 and np.min(self.eigenvalues) <= 0:
            raise ValueError("alpha must be positive when the Gram matrix is singular")
        return self.eigenvectors @ (self.projected / (self.eigenvalues + float(alpha))[:, None])

    def predict(self, data, alpha: float, rows: np.ndarray | None = None, *,
                block_rows: int = DEFAULT_BLOCK_ROWS) -> np.ndarray:
        """[rows, targets] predictions for one alpha."""
        return self.predict_many(data, (alpha,), rows, block_rows=block_rows)[:, 0]

    def predict_many(self, data, alphas, rows: np.ndarray | None = None, *,
                     block_rows: int = DEFAULT_BLOCK_ROWS) -> np.ndarray:
        """[rows, alphas, targets] predictions of every alpha in one pass over ``rows``."""
        source = as_row_source(data)
        rows = resolve_rows(source, rows)
        coefs = np.stack([self.coef(alpha) for alpha in alphas], axis=1)  # [dims, alphas, targets]
        flat = coefs.reshape(coefs.shape[0], -1)
        out = np.empty((rows.size, flat.shape[1]))
        for part, block in source.blocks(rows, block_rows, dtype=np.float64):
            out[part] = self.scaler.transform(block) @ flat
        return out.reshape(rows.size, len(alphas), -1) + self.y_mean


def ridge_path(gram: RidgeGram, device: str | torch.device | None = None) -> RidgePath:
    """Standardise the Gram matrix and eigendecompose it once (float64; CUDA when present, else numpy).

    Cost: one symmetric eigendecomposition of dims x dims (measured single-threaded on this 2-core
    machine: ~1.3 s at 1,000 dims, so ~200 s at 5,376); after it every alpha is a product.
    """
    scaler, gram_z, cross_zy = gram.standardised()
    dev = engine_device(device)
    if dev.type == "cpu":  # numpy's LAPACK honours threadpoolctl limits (torch's threads oversubscribe a busy CPU)
        values, vectors = np.linalg.eigh(gram_z)
    else:
        values, vectors = (t.cpu().numpy() for t in torch.linalg.eigh(torch.from_numpy(gram_z).to(dev)))
    values = np.clip(values, 0.0, None)  # a Gram matrix is PSD; clip rounding below 0
    return RidgePath(scaler, values, vectors, vectors.T @ cross_zy, gram.y_mean)


EIGH_MAX_DIMS = 2048  # above this a fold's eigendecomposition costs more than its conjugate-gradient solve


@dataclass(frozen=True)
class RidgeGrid:
    """Standardised ridge coefficients for every alpha of a sweep, from either solver."""

    scaler: Standardisation
    alphas: tuple[float, ...]
    coefs: np.ndarray  # [alphas, dims, targets] standardised-unit coefficients
    y_mean: np.ndarray  # [targets]: the intercept
    info: dict

    def coef(self, alpha: float) -> np.ndarray:
        """[dims, targets] coefficients of one alpha of the grid."""
        return self.coefs[self.alphas.index(float(alpha))]

    def predict_many(self, data, rows: np.ndarray | None = None, *, alphas=None,
                     block_rows: int = DEFAULT_BLOCK_ROWS) -> np.ndarray:
        """[rows, alphas, targets] predictions of every alpha (or of ``alphas``) in one pass over ``rows``."""
        source = as_row_source(data)
        rows = resolve_rows(source, rows)
        chosen = self.coefs if alphas is None else self.coefs[[self.alphas.index(float(a)) for a in alphas]]
        flat = chosen.transpose(1, 0, 2).reshape(source.dims, -1)
        out = np.empty((rows.size, flat.shape[1]))
        for part, block in source.blocks(rows, block_rows, dtype=np.float64):
            out[part] = self.scaler.transform(block) @ flat
        return out.reshape(rows.size, chosen.shape[0], -1) + self.y_mean

    def predict(self, data, alpha: float, rows: np.ndarray | None = None) -> np.ndarray:
        """[rows, targets] predictions for one alpha of the grid."""
        return self.predict_many(data, rows, alphas=(alpha,))[:, 0]
