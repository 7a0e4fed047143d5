"""Synthetic activations with a planted linear signal, written through the platform's activation store.

Why low rank: real residual-stream activations have a few hundred effective dimensions, a large
shared offset and small isotropic noise. Rows here are ``factors @ loadings[layer] + offset + noise``
with ``factors ~ N(0, I_rank)`` per row; the planted score is ``factors @ direction`` (the same for
every layer, as a feature a model carries through its depth), so a linear probe on any layer can
recover it, and the bench compares the probe's test AUROC (or r) with the planted score's own on the
same test rows. Rows are generated unit by unit (a trace, a task) from a seed keyed by the unit's
position, and appended to one ``PartitionWriter`` per layer: one unit's rows in memory, never a layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ta_platform.extraction.store import PartitionWriter, partition_folder


@dataclass
class LowRankActivations:
    """Generator of one model's rows: shared factors per row, one loading matrix per layer."""

    dims: int
    layers: Sequence[int]
    rank: int = 64
    noise: float = 0.05
    seed: int = 0
    _loadings: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _offsets: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def direction(self) -> np.ndarray:
        """The planted unit direction in factor space."""
        direction = np.random.default_rng([self.seed, 7]).standard_normal(self.rank)
        return direction / np.linalg.norm(direction)

    def _layer(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        if layer not in self._loadings:
            rng = np.random.default_rng([self.seed, 11, layer])
            self._loadings[layer] = (rng.standard_normal((self.rank, self.dims)) / np.sqrt(self.rank)).astype(np.float32)
            self._offsets[layer] = (3.0 * rng.standard_normal(self.dims)).astype(np.float32)
        return self._loadings[layer], self._offsets[layer]

    def factors(self, unit: int, n_rows: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 13, unit]).standard_normal((n_rows, self.rank)).astype(np.float32)

    def rows(self, factors: np.ndarray, unit: int, layer: int) -> np.ndarray:
        loadings, offset = self._layer(layer)
        noise = np.random.default_rng([self.seed, 17, unit, layer]).standard_normal((len(factors), self.dims),
                                                                                     dtype=np.float32)
        out = factors @ loadings
        out += offset
        out += self.noise * noise
        return out


@dataclass(frozen=True)
class WrittenStudy:
    """What ``write_units`` produced: per row the unit, the planted score; folders; bytes on disk."""

    rows: pd.DataFrame  # trace_key, chunk_idx, planted (+ the units' own columns)
    folders: dict[int, Path]
    disk_bytes: int


def write_units(root: Path, model_key: str, generator: LowRankActivations, units: Iterable[tuple[str, int]], *,
                storage_dtype: str, layer_key=lambda layer: f"L{layer}") -> WrittenStudy:
    """Generate and append every unit's rows (``(trace_key, n_rows)``) to one partition per layer."""
    direction = generator.direction()
    writers = {layer: PartitionWriter(partition_folder(root, model_key, layer_key(layer)), generator.dims,
                                      storage_dtype=storage_dtype) for layer in generator.layers}
    keys, chunks, planted = [], [], []
    try:
        for unit, (trace_key, n_rows) in enumerate(units):
            factors = generator.factors(unit, n_rows)
            for layer, writer in writers.items():
                writer.append(generator.rows(factors, unit, layer))
            keys += [trace_key] * n_rows
            chunks.append(np.arange(n_rows))
            planted.append(factors @ direction)
        index = pd.DataFrame({"trace_key": keys, "chunk_idx": np.concatenate(chunks).astype(np.int64)})
        manifest = {"model_key": model_key, "storage_dtype": storage_dtype, "source": "synthetic low-rank benchmark",
                    "fingerprint": f"synthetic-{generator.seed}-{generator.dims}-{generator.rank}"}
        folders = {layer: writer.finish(index, {**manifest, "layer": int(layer)}) for layer, writer in writers.items()}
    except BaseException as error:
        for writer in writers.values():
            writer.abort(error)
        raise
    disk = sum(p.stat().st_size for folder in folders.values() for p in folder.iterdir() if p.is_file())
    return WrittenStudy(index.assign(planted=np.concatenate(planted)), folders, disk)


def noisy_labels(planted: np.ndarray, *, positive_rate: float, noise: float, seed: int) -> np.ndarray:
    """Binary labels: the planted score plus logistic noise above its ``1 - positive_rate`` quantile."""
    noisy = planted + noise * np.random.default_rng([seed, 19]).logistic(size=len(planted))
    return (noisy > np.quantile(noisy, 1 - positive_rate)).astype(int)
