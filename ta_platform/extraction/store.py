"""On-disk layout of activation partitions and of the per-trace resumable shards.

Partition ``<root>/<model_key>/<layer_key>/``: ``embeddings.npy`` (float32, rows in index order),
``index.parquet`` (``trace_key, chunk_idx`` + pass-through columns) and ``manifest.json``
(provenance, fingerprint, shapes, content hashes). The manifest is written last, so a folder
without one is an unfinished write; ``load_partition`` verifies it against the files.

Shards ``<root>/<model_key>/.work/<hash of trace key>.npz`` hold one trace's rows for every layer of
a run plus the run fingerprint and the trace hash; a shard whose fingerprint or trace hash differs
from the current run is stale and is never reused. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ta_platform.common.atomic import atomic_path, atomic_write_json
from ta_platform.common.hashing import sha256_bytes, sha256_file

EMBEDDINGS_FILE = "embeddings.npy"
INDEX_FILE = "index.parquet"
MANIFEST_FILE = "manifest.json"
WORK_DIR = ".work"
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


def shard_path(work_dir: str | os.PathLike[str], trace_key: str) -> Path:
    """One shard per trace; the file name is a hash so any trace key is a safe name."""
    return Path(work_dir) / f"{sha256_bytes(trace_key.encode('utf-8'))[:24]}.npz"


def write_shard(path: str | os.PathLike[str], *, trace_key: str, fingerprint: str, trace_hash: str,
                by_layer: Mapping[int, np.ndarray]) -> None:
    """Store one finished trace (all layers) atomically, stamped with the run fingerprint."""
    meta = json.dumps({"trace_key": trace_key, "fingerprint": fingerprint, "trace_hash": trace_hash,
                       "layers": sorted(int(k) for k in by_layer)})
    arrays = {f"L{layer}": np.ascontiguousarray(m, dtype=np.float32) for layer, m in by_layer.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(meta), **arrays)


def read_shard(path: str | os.PathLike[str], *, trace_key: str, fingerprint: str, trace_hash: str,
               layers: Sequence[int], n_rows: int) -> dict[int, np.ndarray] | None:
    """The shard's matrices if it is valid for this run, else ``None`` (missing, unreadable or stale)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if (meta.get("trace_key"), meta.get("fingerprint"), meta.get("trace_hash")) != (trace_key, fingerprint, trace_hash):
                return None
            by_layer = {int(layer): data[f"L{layer}"] for layer in layers}
    except (OSError, ValueError, KeyError):
        return None
    if any(m.shape[0] != n_rows or m.dtype != np.float32 for m in by_layer.values()):
        return None
    return by_layer
