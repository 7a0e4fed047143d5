"""Products of standardised training rows with many columns at once: what every engine solver iterates.

Why a module of its own: the logistic heads (L-BFGS) and the ridge grid (preconditioned conjugate
gradients) both need ``Z @ W`` and ``Z' @ R`` for the standardised rows ``Z`` of a fit, either held in
memory as one float32 matrix (``FullBatch``, when it fits the memory budget) or re-read block by block
from a memory map or store partition (``Streaming``); and both precondition with the top eigenpairs
of ``Z'Z`` (``nystrom_covariance``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .streaming_scaler import Standardisation


class Standardiser:
    """float32 ``(x - mean) / scale`` on the device, as accurate as a float64 computation rounded to float32.

    The mean is split into a float32 head and a float32 tail: ``x - head`` is correctly rounded relative
    to the (small) difference, so subtracting the tail recovers what float64 would give, at float32
    speed and memory (a float64 block costs ~8x more time in the streaming pass).
    """

    def __init__(self, scaler: Standardisation, device):
        head = scaler.mean.astype(np.float32)
        self.head = torch.from_numpy(head).to(device)
        self.tail = torch.from_numpy((scaler.mean - head.astype(np.float64)).astype(np.float32)).to(device)
        self.inverse = torch.from_numpy((1.0 / scaler.scale).astype(np.float32)).to(device)
        self.device = device

    def __call__(self, block: np.ndarray) -> torch.Tensor:
        z = torch.from_numpy(block).to(self.device)  # the block is a fresh float32 array: work in place
        return z.sub_(self.head).sub_(self.tail).mul_(self.inverse)


class FullBatch:
    """The standardised training rows held on the device as one float32 matrix."""

    plan = "full_batch"

    def __init__(self, source, rows, scaler: Standardisation, device, block_rows):
        self.device, self.dims, self.n_rows = device, source.dims, rows.size
        self.z = torch.empty((rows.size, source.dims), dtype=torch.float32, device=device)
        standardise = Standardiser(scaler, device)
        for part, block in source.blocks(rows, block_rows, dtype=np.float32):
            self.z[part] = standardise(block)

    def project(self, weights: torch.Tensor) -> torch.Tensor:
        return (self.z @ weights.to(torch.float32)).to(torch.float64)

    def backproject(self, residual: torch.Tensor) -> torch.Tensor:
        return (self.z.T @ residual.to(torch.float32)).to(torch.float64)

    def gram_times(self, matrix: torch.Tensor) -> torch.Tensor:
        """``Z'Z @ matrix`` (float64 result)."""
        return self.backproject(self.project(matrix))


class Streaming:
    """Each product reads the rows block by block and standardises the block on the fly."""

    plan = "streaming"

    def __init__(self, source, rows, scaler: Standardisation, device, block_rows):
        self.source, self.rows, self.device, self.block_rows = source, rows, device, block_rows
        self.dims, self.n_rows = source.dims, rows.size
        self.standardise = Standardiser(scaler, device)

    def _blocks(self):
        for part, block in self.source.blocks(self.rows, self.block_rows, dtype=np.float32):
            yield part, self.standardise(block)

    def project(self, weights: torch.Tensor) -> torch.Tensor:
        out = torch.empty((self.rows.size, weights.shape[1]), dtype=torch.float64, device=self.device)
        w32 = weights.to(torch.float32)
        for part, z in self._blocks():
            out[part] = (z @ w32).to(torch.float64)
        return out

    def backproject(self, residual: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((self.source.dims, residual.shape[1]), dtype=torch.float64, device=self.device)
        for part, z in self._blocks():
            total += (z.T @ residual[part].to(torch.float32)).to(torch.float64)
        return total

    def gram_times(self, matrix: torch.Tensor) -> torch.Tensor:
        """``Z'Z @ matrix`` in one pass (block by block: no [rows, columns] intermediate)."""
        total = torch.zeros((self.dims, matrix.shape[1]), dtype=torch.float64, device=self.device)
        m32 = matrix.to(torch.float32)
        for _, z in self._blocks():
            total += (z.T @ (z @ m32)).to(torch.float64)
        return total


def products(source, rows: np.ndarray, scaler: Standardisation, device, block_rows: int, *, full_batch: bool):
    """``FullBatch`` or ``Streaming`` products over the standardised ``rows`` of ``source``."""
    return (FullBatch if full_batch else Streaming)(source, rows, scaler, device, block_rows)


EXACT_MAX_ROWS = 512  # up to this many rows (full batch) the covariance's eigenpairs come from the rows' Gram


def nystrom_covariance(oracle, rank: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Top eigenpairs (descending) of the standardised rows' covariance ``Z'Z / n``.

    Exact when ``dims <= rank``, or when the rows are few and held in memory (``FullBatch``, at most
    ``EXACT_MAX_ROWS`` and fewer than dims): ``Z'Z`` then has rank <= rows and its eigenpairs come from
    the rows' Gram ``Z Z' / n`` (rows x rows) -- at 5,120 dims and a tripwire's few hundred training rows
    that is cheaper than the sketch, and exact. Otherwise a seeded Nystrom sketch (Tropp et al. 2017's
    shifted form).
    """
    dims, n_rows = oracle.dims, oracle.n_rows
    if dims <= rank:
        sketch = oracle.gram_times(torch.eye(dims, dtype=torch.float64, device=device)) / n_rows
        values, vectors = torch.linalg.eigh((sketch + sketch.T) / 2)
        return vectors.flip(1), values.flip(0).clamp(min=0.0)
    rows = getattr(oracle, "z", None)
    if rows is not None and n_rows <= EXACT_MAX_ROWS and n_rows < dims:
        return _eigenpairs_from_rows(rows.to(torch.float64), rank)
    omega = _sketch_columns(dims, rank).to(device)
    sketch = oracle.gram_times(omega) / n_rows  # [dims, k]
    # The sketch comes from float32 products: shift above their rounding (~1e-7 relative), and invert the
    # core by its eigendecomposition, not Cholesky: with fewer rows than the sketch's columns (or exactly
    # collinear ones) the core is only semi-definite, and a Cholesky of it fails.
    shift = 1e-6 * torch.linalg.matrix_norm(sketch)
    sketch = sketch + shift * omega
    values, vectors = torch.linalg.eigh((omega.T @ sketch + sketch.T @ omega) / 2)
    keep = values > values.max() * 1e-10
    factor = sketch @ (vectors[:, keep] / values[keep].sqrt())  # sketch @ core^-1/2: the Nystrom factor
    basis, singular, _ = torch.linalg.svd(factor, full_matrices=False)
    return basis, (singular**2 - shift).clamp(min=0.0)


def _eigenpairs_from_rows(z: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top (at most ``rank``) nonzero eigenpairs of ``Z'Z / n`` from ``Z Z' / n``: ``v = Z' u / sqrt(n e)``."""
    n_rows = z.shape[0]
    values, vectors = torch.linalg.eigh(z @ z.T / n_rows)
    values, vectors = values.flip(0)[:rank], vectors.flip(1)[:, :rank]
    keep = values > values[0].clamp(min=1e-300) * 1e-10
    values, vectors = values[keep], vectors[:, keep]
    return (z.T @ vectors) / (n_rows * values).sqrt(), values


@functools.lru_cache(maxsize=4)
def _sketch_columns(dims: int, rank: int) -> torch.Tensor:
    """The sketch's seeded orthonormal test matrix [dims, rank] (cached: the same for every fit of a width)."""
    generator = torch.Generator().manual_seed(0)
    return torch.linalg.qr(torch.randn((dims, rank), generator=generator, dtype=torch.float64))[0]
