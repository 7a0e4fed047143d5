"""Ridge sweeps on all training rows and on every leave-one-group-out fold, from ONE pass over the rows.

Why: the preference study fits, per layer, one sweep on every training task and one per held-out topic
(11 sweeps of 10 alphas x 2 targets at seed 004's 13k tasks x 5,376 dims). X'X and X'y are additive,
so one pass that sums each group's rows separately gives every fold's statistics by subtraction
(all rows minus the held-out group), and each fold is then solved from its d x d matrix without
reading a row again: exactly (eigendecomposition, ``ridge_path``) up to ``EIGH_MAX_DIMS`` dims, by
preconditioned conjugate gradients on the matrix above (``engine_ridge_cg``). Each fold keeps its
own standardisation (its own rows' mean and scale), as ``StandardScaler`` fitted on the fold would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .engine_data import DEFAULT_BLOCK_ROWS, as_row_source, engine_device, resolve_rows, threads_for
from .engine_ridge import EIGH_MAX_DIMS, RidgeGram, RidgeGrid, RidgePath, ridge_path
from .engine_ridge_cg import GramOperator, solve_ridge_pcg


@dataclass(frozen=True)
class ShiftedSums:
    """Sums over a set of rows of ``x - shift`` (one shift for every group): count, x, x x', x y, y."""

    n: int
    sum_x: np.ndarray  # [dims]
    sum_sq: np.ndarray  # [dims], float64 always: the standardisation never depends on the solver's precision
    gram: np.ndarray  # [dims, dims]
    sum_xy: np.ndarray  # [dims, targets]
    sum_y: np.ndarray  # [targets]

    def __add__(self, other: ShiftedSums) -> ShiftedSums:
        return ShiftedSums(self.n + other.n, self.sum_x + other.sum_x, self.sum_sq + other.sum_sq,
                           self.gram + other.gram, self.sum_xy + other.sum_xy, self.sum_y + other.sum_y)

    def __sub__(self, other: ShiftedSums) -> ShiftedSums:
        return ShiftedSums(self.n - other.n, self.sum_x - other.sum_x, self.sum_sq - other.sum_sq,
                           self.gram - other.gram, self.sum_xy - other.sum_xy, self.sum_y - other.sum_y)

    def centred(self, shift: np.ndarray) -> RidgeGram:
        """The rows' own mean and centred cross-products (``RidgeGram``)."""
        if self.n < 2:
            raise ValueError(f"ridge needs at least 2 training rows, got {self.n}")
        centre = self.sum_x / self.n
        y_mean = self.sum_y / self.n
        cross = self.gram - self.n * np.outer(centre, centre)
        np.fill_diagonal(cross, self.sum_sq - self.n * centre**2)
        cross_y = self.sum_xy - self.n * np.outer(centre, y_mean)
        return RidgeGram(self.n, shift + centre, cross, cross_y, y_mean)


def group_sums(data, targets: np.ndarray, groups: Sequence, rows: np.ndarray | None = None, *,
               exact: bool = True, block_rows: int = DEFAULT_BLOCK_ROWS) -> tuple[np.ndarray, dict]:
    """(shift, group -> ``ShiftedSums``) in one pass over ``rows`` (``targets``/``groups`` aligned with them).

    ``exact``: float64 products (the eigendecomposition path); otherwise float32 block products summed
    in float64, ~4x faster, at the conjugate-gradient path's own float32 floor.
    """
    source = as_row_source(data)
    rows = resolve_rows(source, rows)
    y = np.asarray(targets, dtype=np.float64)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    groups = np.asarray(groups)
    if y.shape[0] != rows.size or groups.shape[0] != rows.size:
        raise ValueError(f"{y.shape[0]} target rows and {groups.shape[0]} group labels for {rows.size} rows")
    if not np.isfinite(y).all():
        raise ValueError("ridge targets contain NaN or infinite values")
    product = np.float64 if exact else np.float32
    shift, sums = None, {}
    for group in sorted(set(groups.tolist()), key=str):
        mine = np.flatnonzero(groups == group)
        n, sum_x, sum_sq = mine.size, np.zeros(source.dims), np.zeros(source.dims)
        gram = np.zeros((source.dims, source.dims))
        sum_xy = np.zeros((source.dims, y.shape[1]))
        for part, block in source.blocks(rows[mine], block_rows, dtype=np.float64):
            if shift is None:
                shift = block.mean(axis=0)
            block -= shift
            sum_x += block.sum(axis=0)
            sum_sq += np.einsum("ij,ij->j", block, block)
            narrow = torch.from_numpy(block.astype(product, copy=False))  # torch: its own threads, not numpy's one
            gram += (narrow.T @ narrow).numpy()
            sum_xy += block.T @ y[mine[part]]
        stored = gram if exact else gram.astype(np.float32)  # ten topics' matrices at 5,376 dims: 1.2 GB, not 2.3
        sums[group] = ShiftedSums(n, sum_x, sum_sq, stored, sum_xy, y[mine].sum(axis=0))
    return shift, sums


def accumulate_gram(data, targets: np.ndarray, rows: np.ndarray | None = None, *,
                    block_rows: int = DEFAULT_BLOCK_ROWS) -> RidgeGram:
    """One pass over the training ``rows``: their centred float64 sums of x x' and x y (one group)."""
    source = as_row_source(data)
    rows = resolve_rows(source, rows)
    if rows.size < 2:
        raise ValueError(f"ridge needs at least 2 training rows, got {rows.size}")
    shift, sums = group_sums(source, targets, np.zeros(rows.size, dtype=np.int64), rows, block_rows=block_rows)
    return sums[0].centred(shift)


def fit_ridge_path(data, targets: np.ndarray, rows: np.ndarray | None = None, *,
                   block_rows: int = DEFAULT_BLOCK_ROWS, device: str | torch.device | None = None) -> RidgePath:
    """``accumulate_gram`` then ``ridge_path``: every alpha of a sweep from one pass over the rows."""
    return ridge_path(accumulate_gram(data, targets, rows, block_rows=block_rows), device)


def ridge_grid_of(gram: RidgeGram, alphas: Sequence[float], *, solver: str = "auto",
                  device: str | torch.device | None = None) -> RidgeGrid:
    """The standardised ridge of every alpha from one fold's centred statistics."""
    dims = gram.cross.shape[0]
    with threads_for(dims * dims):
        return _ridge_grid_of(gram, tuple(float(alpha) for alpha in alphas), solver, device)


def _ridge_grid_of(gram: RidgeGram, alphas: tuple[float, ...], solver: str, device) -> RidgeGrid:
    dims = gram.cross.shape[0]
    solver = ("eigh" if dims <= EIGH_MAX_DIMS else "pcg") if solver == "auto" else solver
    if solver == "eigh":
        path = ridge_path(gram, device)
        coefs = np.stack([path.coef(alpha) for alpha in alphas])
        return RidgeGrid(path.scaler, alphas, coefs, path.y_mean, {"solver": "eigh"})
    if solver != "pcg":
        raise ValueError(f"unknown ridge solver {solver!r}: 'auto', 'eigh' or 'pcg'")
    scaler, gram_z, cross_zy = gram.standardised()
    dev = engine_device(device)
    coefs, info = solve_ridge_pcg(GramOperator(gram_z, gram.n_rows, dev), cross_zy, alphas, dev)
    return RidgeGrid(scaler, alphas, coefs, gram.y_mean, info)


def fit_ridge_grids_leaving_out(data, targets: np.ndarray, alphas: Sequence[float], groups: Sequence,
                                leave_out: Sequence, rows: np.ndarray | None = None, *, solver: str = "auto",
                                device: str | torch.device | None = None,
                                block_rows: int = DEFAULT_BLOCK_ROWS) -> dict:
    """``{None: sweep on every row, g: sweep on every row not in group g for g in leave_out}``."""
    source = as_row_source(data)
    exact = (solver == "eigh") or (solver == "auto" and source.dims <= EIGH_MAX_DIMS)
    shift, sums = group_sums(source, targets, groups, rows, exact=exact, block_rows=block_rows)
    total = sum(sums.values(), start=ShiftedSums(0, 0.0, 0.0, np.zeros((source.dims, source.dims)), 0.0, 0.0))
    grids = {None: ridge_grid_of(total.centred(shift), alphas, solver=solver, device=device)}
    for group in leave_out:
        grids[group] = ridge_grid_of((total - sums[group]).centred(shift), alphas, solver=solver, device=device)
    return grids


def fit_ridge_grid(data, targets: np.ndarray, alphas: Sequence[float], rows: np.ndarray | None = None, *,
                   solver: str = "auto", device: str | torch.device | None = None,
                   block_rows: int = DEFAULT_BLOCK_ROWS) -> RidgeGrid:
    """Ridge for every alpha of ``alphas`` (and every target column) on the training ``rows``.

    ``solver="eigh"``: float64 sums and one eigendecomposition (``ridge_path``), exact; ``"pcg"``:
    float32 sums and preconditioned conjugate gradients to a relative residual of 1e-6; ``"auto"``:
    eigh up to ``EIGH_MAX_DIMS`` dims.
    """
    source = as_row_source(data)
    n_rows = resolve_rows(source, rows).size
    return fit_ridge_grids_leaving_out(source, targets, alphas, np.zeros(n_rows, dtype=np.int64), (), rows,
                                       solver=solver, device=device, block_rows=block_rows)[None]
