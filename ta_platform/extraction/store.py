"""On-disk layout of activation partitions and of the per-trace activation cache.

Partition ``<root>/<model_key>/<layer_key>/``: ``embeddings.npy`` (float32, rows in index order),
``index.parquet`` (``trace_key, chunk_idx`` + pass-through columns) and ``manifest.json``
(provenance, fingerprint, shapes, content hashes). The manifest is written last, so a folder
without one is an unfinished write; ``load_partition`` verifies it against the files.

Cache ``<root>/<model_key>/.cache/<key[:2]>/<key>.L<layer>.npz``: one trace's pooled rows of one
layer, under the trace's content key (``provenance.trace_cache_key``: weights, tokenizer, text,
spans, pooling, dtype, extraction code). An entry is written atomically as soon as its batch's
forward pass is done, so it is both the resume point of a killed run and the reuse point of a later
run with more traces or new labels. Entries are never trusted blindly: ``read_entry`` checks the
key, layer, row count and dtype recorded inside the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ta_platform.common.atomic import atomic_path, atomic_write_json
from ta_platform.common.hashing import sha256_file

EMBEDDINGS_FILE = "embeddings.npy"
INDEX_FILE = "index.parquet"
MANIFEST_FILE = "manifest.json"
CACHE_DIR = ".cache"
CACHE_FORMAT = 1  # bump when the entry layout changes
REQUIRED_INDEX_COLUMNS = ("trace_key", "chunk_idx")


class PartitionError(ValueError):
    """A partition folder that is missing files or disagrees with its manifest."""


@dataclass
class Partition:
    """A loaded, verified partition."""

    folder: Path
    embeddings: np.ndarray
    index: pd.DataFrame
    manifest: dict[str, Any]

    def __iter__(self):
        """Unpack as ``embeddings, index, manifest = load_partition(folder)``."""
        return iter((self.embeddings, self.index, self.manifest))


def partition_folder(root: str | os.PathLike[str], model_key: str, layer_key: str) -> Path:
    return Path(root) / model_key / layer_key


def write_partition(folder: str | os.PathLike[str], embeddings: np.ndarray, index: pd.DataFrame,
                    manifest: Mapping[str, Any]) -> Path:
    """Write one partition atomically (data first, manifest last). Refuses float16 and row mismatches."""
    folder = Path(folder)
    if embeddings.dtype == np.float16:
        raise ValueError("float16 embeddings refused (overflow on Qwen2 activations); store float32")
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(index):
        raise ValueError(f"embeddings {embeddings.shape} do not match {len(index)} index rows")
    missing = [c for c in REQUIRED_INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks columns {missing}")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / EMBEDDINGS_FILE) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, embeddings, allow_pickle=False)
    with atomic_path(folder / INDEX_FILE) as tmp:
        pq.write_table(pa.Table.from_pandas(index.reset_index(drop=True), preserve_index=False), tmp)
    full = {**manifest, "n_rows": int(embeddings.shape[0]), "hidden_size": int(embeddings.shape[1]),
            "dtype": "float32", "files": {EMBEDDINGS_FILE: sha256_file(folder / EMBEDDINGS_FILE),
                                          INDEX_FILE: sha256_file(folder / INDEX_FILE)}}
    atomic_write_json(folder / MANIFEST_FILE, full)
    return folder


def load_partition(folder: str | os.PathLike[str], *, verify_hashes: bool = True) -> Partition:
    """Read a partition and check it: manifest present, shapes and dtype as recorded, hashes match."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.exists():
        raise PartitionError(f"{folder}: no {MANIFEST_FILE} (unfinished or missing partition)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name in (EMBEDDINGS_FILE, INDEX_FILE):
        if not (folder / name).exists():
            raise PartitionError(f"{folder}: {name} is missing")
        if verify_hashes and sha256_file(folder / name) != manifest.get("files", {}).get(name):
            raise PartitionError(f"{folder}: {name} does not match the hash in its manifest")
    embeddings = np.load(folder / EMBEDDINGS_FILE, allow_pickle=False)
    index = pq.read_table(folder / INDEX_FILE).to_pandas()
    expected = (manifest.get("n_rows"), manifest.get("hidden_size"))
    if embeddings.dtype != np.float32 or embeddings.shape != expected or len(index) != expected[0]:
        raise PartitionError(f"{folder}: embeddings {embeddings.dtype}{embeddings.shape} / {len(index)} index rows "
                             f"disagree with the manifest ({expected[0]} x {expected[1]} float32)")
    return Partition(folder, embeddings, index, manifest)


def cache_dir(root: str | os.PathLike[str], model_key: str) -> Path:
    """The folder of one model's per-trace activation cache."""
    return Path(root) / model_key / CACHE_DIR


def entry_path(cache: str | os.PathLike[str], key: str, layer: int) -> Path:
    """One file per (trace content key, layer); the first two hex digits fan the folder out."""
    return Path(cache) / key[:2] / f"{key}.L{int(layer)}.npz"


def write_entry(cache: str | os.PathLike[str], *, key: str, layer: int, rows: np.ndarray, device_type: str) -> Path:
    """Store one trace's pooled rows of one layer atomically (float32), stamped with key and layer."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    meta = json.dumps({"format": CACHE_FORMAT, "key": key, "layer": int(layer), "n_rows": int(rows.shape[0]),
                       "device_type": device_type})
    path = entry_path(cache, key, layer)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(meta), rows=rows)
    return path


def read_entry(cache: str | os.PathLike[str], *, key: str, layer: int, n_rows: int,
               rows: bool = True) -> tuple[np.ndarray | None, str] | None:
    """``(rows, device_type)`` of a valid entry, else ``None`` (missing, unreadable or not this trace/layer).

    ``rows=False`` reads only the small metadata member (the cache lookup before a run), returning
    ``(None, device_type)`` for an entry whose recorded key, layer and row count match.
    """
    path = entry_path(cache, key, layer)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            matrix = data["rows"] if rows else None
    except (OSError, ValueError, KeyError):
        return None
    if (meta.get("format"), meta.get("key"), meta.get("layer"), meta.get("n_rows")) != (
            CACHE_FORMAT, key, int(layer), int(n_rows)):
        return None
    if matrix is not None and (matrix.ndim != 2 or matrix.shape[0] != n_rows or matrix.dtype != np.float32):
        return None
    return matrix, str(meta.get("device_type", ""))
