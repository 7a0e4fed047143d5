"""Where the probe engine reads rows from, and on which torch device it computes.

Why a protocol and not one array type: at paper scale a layer does not fit in memory, so the engine
must accept the activation store's on-demand partitions as well as the small in-memory arrays of the
tests. Anything with ``rows(indices) -> ndarray`` (or ``iter_blocks(row_indices, block_rows)``), a
numpy array or a numpy memmap is accepted; the engine only ever asks for blocks of rows, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

DEFAULT_BLOCK_ROWS = 8192
BLOCK_BYTES = 64 * 1024**2  # a block never exceeds this (rows are capped for wide layers)


SMALL_WORK = 1 << 24  # elements (rows x dims, or dims^2) below which the engine's torch work runs on one thread


@contextmanager
def threads_for(elements: int) -> Iterator[None]:
    """Torch on ONE thread for small work (restored after); large work keeps the configured threads.

    Why: torch's intra-op threads hand off every small product; on a shared 2-core machine under load
    (a test worker beside another, the main job beside a UI) that made a 3-problem tripwire slice 4x
    slower with 2 threads than with 1 (measured: 10.4 s vs 2.4 s; unloaded 1.7 s vs 1.6 s). Products
    over paper-scale slices (tens of millions of elements) still gain from the threads they are given.
    """
    previous = torch.get_num_threads()
    if elements >= SMALL_WORK or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def engine_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class RowSource:
    """Uniform block access over an ndarray, a memmap, or a store partition (``rows`` / ``iter_blocks``)."""

    def __init__(self, data: Any):
        self.data = data
        if isinstance(data, np.ndarray):
            if data.ndim != 2:
                raise ValueError(f"activations must be a 2-D [rows, dims] array, got shape {data.shape}")
            self.n_rows, self.dims = data.shape
        elif hasattr(data, "rows") or hasattr(data, "iter_blocks"):
            shape = getattr(data, "shape", None)
            if shape is None or len(shape) != 2:
                raise ValueError(f"{type(data).__name__} gives rows but no 2-D ``shape``")
            self.n_rows, self.dims = int(shape[0]), int(shape[1])
        else:
            raise TypeError(f"cannot read activation rows from {type(data).__name__}: need an ndarray, a memmap, "
                            "or an object with rows(indices) / iter_blocks(row_indices, block_rows)")

    def rows(self, indices: np.ndarray, dtype=np.float32) -> np.ndarray:
        """The rows at ``indices`` (in that order) as a fresh, writable, C-contiguous ``dtype`` array."""
        indices = np.asarray(indices, dtype=np.int64)
        if isinstance(self.data, np.ndarray):
            if indices.size and np.all(np.diff(indices) == 1):  # a contiguous range: a slice, no fancy index
                block = self.data[indices[0]: indices[-1] + 1]
            else:
                block = self.data[indices]
        elif hasattr(self.data, "rows"):
            block = self.data.rows(indices)
        else:
            block = np.concatenate([_array_of(item) for item in self.data.iter_blocks(indices, max(indices.size, 1))])
        block = np.ascontiguousarray(block, dtype=dtype)
        if not (block.flags.owndata and block.flags.writeable):  # a view of the caller's array or a read-only map:
            block = block.copy()  # the engine standardises blocks in place, never the caller's data
        if block.shape != (indices.size, self.dims):
            raise ValueError(f"{type(self.data).__name__} returned rows of shape {block.shape} for "
                             f"{indices.size} indices of {self.dims} dims")
        return block

    def blocks(self, indices: np.ndarray, block_rows: int = DEFAULT_BLOCK_ROWS,
               dtype=np.float32) -> Iterator[tuple[slice, np.ndarray]]:
        """(positions within ``indices``, rows) for consecutive blocks of ``indices``.

        At most ``block_rows`` rows and ``BLOCK_BYTES`` bytes per block: at 4,096-5,376 dims a float64
        block of 8,192 rows would be ~300 MB, and the scaler and Gram passes hold a few temporaries of it.
        """
        indices = np.asarray(indices, dtype=np.int64)
        block_rows = max(min(int(block_rows), BLOCK_BYTES // (np.dtype(dtype).itemsize * max(self.dims, 1))), 1)
        if not isinstance(self.data, np.ndarray) and not hasattr(self.data, "rows"):
            start = 0
            for item in self.data.iter_blocks(indices, block_rows):
                block = np.ascontiguousarray(_array_of(item), dtype=dtype)
                yield slice(start, start + block.shape[0]), block
                start += block.shape[0]
            if start != indices.size:
                raise ValueError(f"iter_blocks gave {start} rows for {indices.size} indices")
            return
        for start in range(0, indices.size, block_rows):
            part = slice(start, min(start + block_rows, indices.size))
            yield part, self.rows(indices[part], dtype)


def _array_of(item: Any) -> np.ndarray:
    """A block from ``iter_blocks``: the array itself, or the last element of an (indices, array) pair."""
    return np.asarray(item[-1] if isinstance(item, tuple) else item)


def as_row_source(data: Any) -> RowSource:
    return data if isinstance(data, RowSource) else RowSource(data)


def resolve_rows(source: RowSource, rows: np.ndarray | None) -> np.ndarray:
    """Integer row indices (all rows when ``None``; a boolean mask becomes its positions)."""
    if rows is None:
        return np.arange(source.n_rows, dtype=np.int64)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.size != source.n_rows:
            raise ValueError(f"row mask of {rows.size} entries for {source.n_rows} rows")
        return np.flatnonzero(rows).astype(np.int64)
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= source.n_rows):
        raise ValueError(f"row indices outside [0, {source.n_rows})")
    return rows
