"""Standardisation statistics from one streaming pass over the TRAINING rows only.

Why: the probes standardise every column (mean 0, unit variance) with statistics that must never
see validation or test rows, and at paper scale the training rows do not fit in memory twice. The
pass merges per-block (count, mean, sum of squared deviations) in float64 (Chan et al.'s pairwise
update), so float32 blocks lose nothing to catastrophic cancellation. A column whose variance is
(numerically) zero gets scale 1, as sklearn's ``StandardScaler`` does, so it contributes nothing
instead of dividing by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine_data import DEFAULT_BLOCK_ROWS, as_row_source, resolve_rows


@dataclass(frozen=True)
class Standardisation:
    """``z = (x - mean) / scale`` with population variance (ddof 0), like sklearn."""

    mean: np.ndarray
    scale: np.ndarray
    var: np.ndarray
    n_rows: int

    def transform(self, block: np.ndarray, dtype=np.float64) -> np.ndarray:
        return ((np.asarray(block, dtype=np.float64) - self.mean) / self.scale).astype(dtype, copy=False)


def safe_scale(var: np.ndarray, mean: np.ndarray, n_rows: int) -> np.ndarray:
    """sqrt(var), with 1 where the variance is zero up to rounding (sklearn's ``_handle_zeros_in_scale``
    plus its check that a constant column's variance is only rounding noise of its mean)."""
    scale = np.sqrt(var)
    eps = np.finfo(np.float64).eps
    upper = (n_rows * eps * var + (n_rows * mean * eps) ** 2)
    constant = (var <= upper) | (scale < 10 * eps)
    return np.where(constant, 1.0, scale)


class StreamingScaler:
    """Accumulates per-column count, mean and M2 (sum of squared deviations) block by block."""

    def __init__(self, dims: int):
        self.n = 0
        self.mean = np.zeros(dims, dtype=np.float64)
        self.m2 = np.zeros(dims, dtype=np.float64)

    def update(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float64)
        if block.shape[0] == 0:
            return
        n_b = block.shape[0]
        mean_b = block.mean(axis=0)
        m2_b = ((block - mean_b) ** 2).sum(axis=0)
        total = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / total)
        self.n = total

    def result(self) -> Standardisation:
        if self.n == 0:
            raise ValueError("no training rows to standardise on")
        var = self.m2 / self.n
        return Standardisation(self.mean.copy(), safe_scale(var, self.mean, self.n), var, self.n)


def fit_standardisation(data, rows: np.ndarray | None = None, *,
                        block_rows: int = DEFAULT_BLOCK_ROWS) -> Standardisation:
    """Mean and scale of ``data``'s ``rows`` (the training rows) in one streaming pass."""
    source = as_row_source(data)
    scaler = StreamingScaler(source.dims)
    for _, block in source.blocks(resolve_rows(source, rows), block_rows, dtype=np.float64):
        scaler.update(block)
    return scaler.result()


def fit_standardisations(data, masks, *, block_rows: int = DEFAULT_BLOCK_ROWS) -> list[Standardisation]:
    """The standardisation of each mask's rows (e.g. every seed's training split), all in ONE pass.

    Why: twenty seeds' training rows overlap almost entirely; twenty passes over a paper-scale slice
    (~18k x 5,120 in float64) would cost more than the fit they prepare. Per block, ``masks' @ d`` and
    ``masks' @ d**2`` (``d`` = rows minus the first block's mean, so the squares carry no large offset)
    give every mask's count, mean and variance at once; equal to ``fit_standardisation`` of each mask
    up to float64 rounding (tested). Identical masks (e.g. one fold's training rows under twenty label
    permutations) are computed once and share one ``Standardisation`` object.
    """
    source = as_row_source(data)
    stacked = np.stack([np.asarray(mask, dtype=bool) for mask in masks], axis=1)
    if stacked.shape[0] != source.n_rows:
        raise ValueError(f"masks of {stacked.shape[0]} rows for {source.n_rows} rows")
    member, which = np.unique(stacked, axis=1, return_inverse=True)
    union = np.flatnonzero(member.any(axis=1))
    counts = member.sum(axis=0)
    if union.size == 0 or counts.min() == 0:
        raise ValueError("no training rows to standardise on")
    shift = None
    sums = np.zeros((member.shape[1], source.dims))
    squares = np.zeros_like(sums)
    for part, block in source.blocks(union, block_rows, dtype=np.float64):
        if shift is None:
            shift = block.mean(axis=0)
        block -= shift
        weights = member[union[part]].T.astype(np.float64)  # [masks, block rows]
        sums += weights @ block
        squares += weights @ (block * block)
    distinct = []
    for k, n in enumerate(counts):
        centre = sums[k] / n
        var = np.maximum(squares[k] / n - centre**2, 0.0)
        mean = shift + centre
        distinct.append(Standardisation(mean, safe_scale(var, mean, int(n)), var, int(n)))
    return [distinct[k] for k in np.ravel(which)]
