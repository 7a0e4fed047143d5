"""On-disk layout of activation partitions and of the per-trace activation cache.

Why shards and memory maps: at the seeds' scale one layer is gigabytes (516k tokens x 4096 dims in
float32 = 8.5 GB), more than a worker should hold, let alone copy. So a partition is written
incrementally (rows appended trace by trace into fixed-size shards, never one layer in memory) and
read through memory maps (rows and columns on demand, the page cache shared between processes).

Partition ``<root>/<model_key>/<layer_key>/`` (layout ``shards-v1``):
- ``shard-00000.bin``, ``shard-00001.bin``, ...: raw little-endian rows in index order, row-major,
  ``rows_per_shard`` rows each (the last one shorter), at most ``max_shard_bytes`` (256 MiB) each;
  the words are float32 or bfloat16 (``storage_dtypes``: the upper half of the float32, as uint16);
- ``index.parquet``: ``trace_key, chunk_idx`` + pass-through columns, one row per stored row;
- ``manifest.json``, written last: provenance, fingerprint, ``n_rows``, ``hidden_size``, ``dtype``
  (the storage dtype), ``rows_per_shard``, ``shards`` (file, rows, bytes, sha256 of each) and
  ``files`` (sha256 of every data file). A folder without a manifest is an unfinished write: a new
  write removes the old manifest before its first shard and removes leftover files after its own.

Verification is per shard and lazy: ``load_partition`` checks that every shard exists with its
recorded size (a truncated shard fails at once, without reading it) and hashes the small index;
a shard's sha256 is checked the first time a row of it is read, once per process (keyed by the
file's inode, size and mtime, so a replaced file is checked again), or all at once by
``Partition.verify()``. A failure is a ``PartitionError`` naming the file and how to recover.

Cache ``<root>/<model_key>/.cache/<key[:2]>/<key>.L<layer>.npz``: one trace's pooled float32 rows
of one layer, under the trace's content key (``provenance.trace_cache_key``). An entry is written
atomically as soon as its batch's forward pass is done, so it is both the resume point of a killed
run and the reuse point of a later run. Entries are never trusted blindly: ``read_entry`` checks the
key, layer, row count and dtype recorded inside the file and, when it reads the rows, their sha256;
a corrupt entry is logged with its path, deleted and reported missing, so the run recomputes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ta_platform.common.atomic import atomic_path, atomic_write_json
from ta_platform.common.hashing import sha256_file
from ta_platform.extraction.storage_dtypes import (
    DEFAULT_STORAGE_DTYPE,
    check_storage_dtype,
    decode,
    encode,
    word_dtype,
)

INDEX_FILE = "index.parquet"
MANIFEST_FILE = "manifest.json"
SHARD_PATTERN = "shard-{:05d}.bin"
LAYOUT = "shards-v1"
DEFAULT_SHARD_BYTES = 256 * 2**20
READ_BLOCK_BYTES = 64 * 2**20  # float32 bytes per block of rows() / iter_blocks() (bounds their temporaries)
CACHE_DIR = ".cache"
CACHE_FORMAT = 2  # bump when the entry layout changes (2: sha256 of the rows in the meta)
REQUIRED_INDEX_COLUMNS = ("trace_key", "chunk_idx")

log = logging.getLogger(__name__)


class PartitionError(ValueError):
    """A partition folder that is missing files or disagrees with its manifest."""


def _recovery(folder: Path) -> str:
    return (f"; recover by rerunning the stage that wrote it (e.g. `ta-platform materialize --stage activations`), "
            f"or delete {folder} and rerun")


def partition_folder(root: str | os.PathLike[str], model_key: str, layer_key: str) -> Path:
    return Path(root) / model_key / layer_key


def _remove(path: Path) -> None:
    """Delete a local file and its copy in a remote artifact store (``TA_STORAGE=s3://...``), if any."""
    from ta_platform.common import remote_store

    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    remote_store.delete(path)


class PartitionWriter:
    """Write one partition incrementally: ``append`` rows (a trace at a time), then ``finish``.

    Memory: the rows passed to one ``append`` (plus their encoded copy); nothing is buffered, every
    append goes to the open shard's file. Each shard is written under a temporary name and renamed
    when full (``common.atomic``: fsync, rename, upload to a remote store), its sha256 computed on
    the way. ``finish`` writes the index and then the manifest. Used as a context manager, an
    exception aborts the write: the open shard's temporary file and the shards already renamed are
    removed, and the folder stays without a manifest (unfinished).
    """

    def __init__(self, folder: str | os.PathLike[str], hidden_size: int, *,
                 storage_dtype: str = DEFAULT_STORAGE_DTYPE, max_shard_bytes: int = DEFAULT_SHARD_BYTES):
        self.folder = Path(folder)
        self.hidden_size = int(hidden_size)
        if self.hidden_size <= 0:
            raise ValueError(f"{self.folder}: hidden size must be positive, got {hidden_size}")
        self.storage_dtype = check_storage_dtype(storage_dtype, str(self.folder))
        self.word = word_dtype(self.storage_dtype)
        self.rows_per_shard = max(1, int(max_shard_bytes) // (self.hidden_size * self.word.itemsize))
        self.n_rows = 0
        self._shards: list[dict[str, Any]] = []
        self._open: tuple[Any, Any, Any, Any] | None = None  # (name, atomic context, handle, sha256)
        self._open_rows = 0
        self._done = False
        self._published = False  # the manifest is written: nothing of this write may be removed any more
        self.folder.mkdir(parents=True, exist_ok=True)
        _remove(self.folder / MANIFEST_FILE)  # from here on the folder is an unfinished write

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort(exc)

    def append(self, rows: np.ndarray) -> None:
        """Append rows (``[n, hidden_size]``, any float dtype but float16) after those already written."""
        if self._done:
            raise RuntimeError(f"{self.folder}: append after finish/abort")
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.hidden_size:
            raise ValueError(f"{self.folder}: rows of shape {rows.shape} appended to a partition of "
                             f"{self.hidden_size} columns")
        words = encode(rows, self.storage_dtype)
        start = 0
        while start < len(words):
            if self._open is None:
                self._open_shard()
            take = min(len(words) - start, self.rows_per_shard - self._open_rows)
            data = memoryview(words[start:start + take]).cast("B")
            self._open[2].write(data)
            self._open[3].update(data)
            self._open_rows += take
            self.n_rows += take
            start += take
            if self._open_rows == self.rows_per_shard:
                self._close_shard()

    def finish(self, index: pd.DataFrame, manifest: Mapping[str, Any]) -> Path:
        """Close the last shard, write the index and the manifest (last); remove stale files. Returns the folder."""
        if self._done:
            raise RuntimeError(f"{self.folder}: finish after finish/abort")
        if len(index) != self.n_rows:
            raise ValueError(f"{self.folder}: {self.n_rows} rows written but the index has {len(index)} rows")
        missing = [c for c in REQUIRED_INDEX_COLUMNS if c not in index.columns]
        if missing:
            raise ValueError(f"{self.folder}: index lacks columns {missing}")
        recorded = manifest.get("storage_dtype")
        if recorded is not None and recorded != self.storage_dtype:
            raise ValueError(f"{self.folder}: manifest says storage_dtype {recorded!r} but the rows were written as "
                             f"{self.storage_dtype!r}")
        if self._open is not None:
            self._close_shard()
        with atomic_path(self.folder / INDEX_FILE) as tmp:
            pq.write_table(pa.Table.from_pandas(index.reset_index(drop=True), preserve_index=False), tmp)
        files = {s["file"]: s["sha256"] for s in self._shards}
        files[INDEX_FILE] = sha256_file(self.folder / INDEX_FILE)
        full = {**manifest, "layout": LAYOUT, "n_rows": self.n_rows, "hidden_size": self.hidden_size,
                "dtype": self.storage_dtype, "rows_per_shard": self.rows_per_shard, "shards": list(self._shards),
                "files": files}
        atomic_write_json(self.folder / MANIFEST_FILE, full)
        self._done = self._published = True
        keep = {*files, MANIFEST_FILE}
        for path in self.folder.iterdir():  # an older write's files (more shards, the old embeddings.npy)
            if path.is_file() and path.name not in keep and not path.name.startswith("."):
                _remove(path)
        return self.folder

    def abort(self, error: BaseException | None = None) -> None:
        """Drop what this write produced: the open shard's temporary file and the renamed shards.

        ``error`` (what made the write fail) goes through the open shard's ``atomic_path``, which
        turns a full disk into ``NoSpaceError`` naming the shard (raised from here in that case).
        """
        if self._published:
            return
        pending, self._open, self._done = self._open, None, True
        try:
            if pending is not None:
                _, context, handle, _ = pending
                with contextlib.suppress(OSError):  # flushing onto a full disk fails again
                    handle.close()
                error = error if error is not None else RuntimeError(f"{self.folder}: write aborted")
                context.__exit__(type(error), error, error.__traceback__)  # removes the temporary file
        finally:
            for shard in self._shards:
                _remove(self.folder / shard["file"])
            self._shards = []

    def _open_shard(self) -> None:
        name = SHARD_PATTERN.format(len(self._shards))
        context = atomic_path(self.folder / name)
        tmp = context.__enter__()
        self._open = (name, context, open(tmp, "wb"), hashlib.sha256())  # noqa: SIM115 (closed in _close_shard)
        self._open_rows = 0

    def _close_shard(self) -> None:
        name, context, handle, digest = self._open
        handle.close()
        self._open = None
        context.__exit__(None, None, None)  # fsync, rename onto the shard's name, upload
        self._shards.append({"file": name, "rows": self._open_rows,
                             "bytes": self._open_rows * self.hidden_size * self.word.itemsize,
                             "sha256": digest.hexdigest()})


def write_partition(folder: str | os.PathLike[str], embeddings: np.ndarray, index: pd.DataFrame,
                    manifest: Mapping[str, Any], *, storage_dtype: str | None = None,
                    max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write a whole in-memory matrix as one partition (tests, small rewrites): a ``PartitionWriter`` fed
    in blocks. ``storage_dtype`` defaults to the manifest's ``storage_dtype``, else float32."""
    embeddings = np.asarray(embeddings)
    if embeddings.dtype == np.float16:
        raise ValueError("float16 embeddings refused (overflow on Qwen2 activations); pass float32")
    if embeddings.ndim != 2 or embeddings.shape[0] != len(index):
        raise ValueError(f"embeddings {embeddings.shape} do not match {len(index)} index rows")
    dtype = storage_dtype or manifest.get("storage_dtype") or DEFAULT_STORAGE_DTYPE
    with PartitionWriter(folder, embeddings.shape[1], storage_dtype=dtype, max_shard_bytes=max_shard_bytes) as writer:
        step = max(1, READ_BLOCK_BYTES // (4 * max(1, embeddings.shape[1])))
        for start in range(0, len(embeddings), step):
            writer.append(embeddings[start:start + step])
        return writer.finish(index, manifest)


# Files whose sha256 this process has already checked: (path, inode, size, mtime_ns, sha256).
_VERIFIED: set[tuple[str, int, int, int, str]] = set()
_VERIFIED_LOCK = threading.Lock()


def _verify_file(path: Path, expected: str | None, folder: Path) -> None:
    """Check ``path``'s sha256 against ``expected``, once per process per version of the file."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, str(expected))
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            return
    if expected is None or sha256_file(path) != expected:
        raise PartitionError(f"{path}: does not match the sha256 in its manifest (corrupt or modified)"
                             + _recovery(folder))
    with _VERIFIED_LOCK:
        _VERIFIED.add(key)


class Partition:
    """A partition opened for reading: the index and manifest in memory, the rows memory-mapped.

    Out-of-core API (the probe engine, the studies): ``n_rows``, ``dims``, ``dtype`` (storage dtype),
    ``rows(row_indices, columns=None)`` and ``iter_blocks(row_indices=None, block_rows=None)``, both
    float32. Memory: ``rows`` returns ``len(rows) x len(columns)`` float32 and reads whole rows of the
    shards (row-major), in blocks of ``READ_BLOCK_BYTES``; ``iter_blocks`` holds one block at a time
    (``block_rows`` rows, default ``READ_BLOCK_BYTES`` of float32). Pages of the maps belong to the OS
    page cache, shared and evictable, not to the process.

    Legacy API: ``embeddings`` (and ``X, index, manifest = partition``) is the whole matrix as float32:
    for one float32 shard a read-only view of its memory map (no copy); otherwise one float32 array of
    ``n_rows x dims x 4`` bytes, decoded once and kept on this object. Prefer ``rows``/``iter_blocks``.
    """

    def __init__(self, folder: Path, index: pd.DataFrame, manifest: dict[str, Any], *, verify_hashes: bool = True):
        self.folder = folder
        self.index = index
        self.manifest = manifest
        self.verify_hashes = verify_hashes
        self.n_rows = int(manifest["n_rows"])
        self.dims = int(manifest["hidden_size"])
        self.dtype = str(manifest["dtype"])
        self.rows_per_shard = int(manifest["rows_per_shard"])
        self.shards: list[dict[str, Any]] = list(manifest["shards"])
        self._maps: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._embeddings: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.dims

    def __len__(self) -> int:
        return self.n_rows

    def __iter__(self):
        """Unpack as ``embeddings, index, manifest = load_partition(folder)`` (see ``embeddings``)."""
        return iter((self.embeddings, self.index, self.manifest))

    def shard_path(self, shard: int) -> Path:
        return self.folder / self.shards[shard]["file"]

    def verify(self) -> None:
        """Hash every shard and the index now (``PartitionError`` naming the first bad file)."""
        for shard in range(len(self.shards)):
            self._check_size(shard)
            _verify_file(self.shard_path(shard), self.shards[shard].get("sha256"), self.folder)
        _verify_file(self.folder / INDEX_FILE, self.manifest["files"].get(INDEX_FILE), self.folder)

    @property
    def embeddings(self) -> np.ndarray:
        if self._embeddings is None:
            if len(self.shards) == 1 and self.dtype == "float32":
                self._embeddings = np.asarray(self._shard(0))  # a read-only view of the map
            else:
                self._embeddings = self.rows(slice(None))
        return self._embeddings

    def rows(self, row_indices: Any, columns: Any = None) -> np.ndarray:
        """Float32 ``[len(row_indices), len(columns)]`` in the order asked (indices, a slice or a boolean mask)."""
        rows = self._indices(row_indices)
        width = len(range(self.dims)[columns]) if isinstance(columns, slice) else (
            self.dims if columns is None else len(np.asarray(columns).reshape(-1)))
        out = np.empty((len(rows), width), dtype=np.float32)
        if not len(rows):
            return out
        shard_of = rows // self.rows_per_shard
        order = np.argsort(shard_of, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(shard_of[order]) != 0])
        step = max(1, READ_BLOCK_BYTES // (4 * self.dims))
        for begin, end in zip(starts, [*starts[1:], len(order)], strict=True):
            shard = int(shard_of[order[begin]])
            words = self._shard(shard)
            for lo in range(begin, end, step):
                targets = order[lo:min(end, lo + step)]
                local = rows[targets] - shard * self.rows_per_shard
                contiguous = local[-1] - local[0] + 1 == len(local) and bool(np.all(np.diff(local) == 1))
                block = decode(words[local[0]:local[-1] + 1] if contiguous else words[local], self.dtype)
                out[targets] = block if columns is None else block[:, columns]
        return out

    def iter_blocks(self, row_indices: Any = None, block_rows: int | None = None,
                    columns: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(row indices, float32 block)`` over ``row_indices`` (all rows in order by default), one block at a time."""
        rows = np.arange(self.n_rows) if row_indices is None else self._indices(row_indices)
        step = int(block_rows) if block_rows else max(1, READ_BLOCK_BYTES // (4 * self.dims))
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            yield chunk, self.rows(chunk, columns)

    def _indices(self, row_indices: Any) -> np.ndarray:
        if isinstance(row_indices, slice):
            return np.arange(self.n_rows)[row_indices]
        rows = np.asarray(row_indices)
        if rows.dtype == bool:
            if rows.shape != (self.n_rows,):
                raise IndexError(f"{self.folder}: boolean mask of shape {rows.shape} for {self.n_rows} rows")
            return np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise IndexError(f"{self.folder}: row indices outside [0, {self.n_rows})")
        return rows

    def _check_size(self, shard: int) -> None:
        path, record = self.shard_path(shard), self.shards[shard]
        expected = int(record["rows"]) * self.dims * word_dtype(self.dtype).itemsize
        if not path.is_file():
            raise PartitionError(f"{path}: shard is missing" + _recovery(self.folder))
        size = path.stat().st_size
        if size != expected:
            raise PartitionError(f"{path}: shard is {size} bytes, its manifest says {expected} (truncated or "
                                 "overwritten)" + _recovery(self.folder))

    def _shard(self, shard: int) -> np.ndarray:
        """The memory map of one shard, its size and (once per process) its sha256 checked on first use."""
        with self._lock:
            found = self._maps.get(shard)
            if found is not None:
                return found
            self._check_size(shard)
            path, rows = self.shard_path(shard), int(self.shards[shard]["rows"])
            if self.verify_hashes:
                _verify_file(path, self.shards[shard].get("sha256"), self.folder)
            word = word_dtype(self.dtype)
            mapped = (np.memmap(path, dtype=word, mode="r", shape=(rows, self.dims)) if rows
                      else np.empty((0, self.dims), dtype=word))
            self._maps[shard] = mapped
            return mapped


class PartitionRows:
    """Some rows of a partition, in a study's order (e.g. the tokens joined to their labels), read on demand.

    Why: a study selects and reorders rows (chains with labels, one setting's sentences); copying them
    out of the partition holds a second copy of the layer, the thing paper scale cannot afford. This
    view gives the probe engine ``shape`` and ``rows(indices)`` (``probing/engine_data.RowSource``) and
    ``np.asarray`` materialises it only where a small slice is wanted whole.
    """

    def __init__(self, partition: Partition, rows: Any):
        self.partition = partition
        self.index_rows = partition._indices(rows)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.index_rows.size), self.partition.dims

    def __len__(self) -> int:
        return int(self.index_rows.size)

    def rows(self, row_indices: Any, columns: Any = None) -> np.ndarray:
        """Float32 rows at positions ``row_indices`` of this view (indices, a slice or a boolean mask)."""
        if isinstance(row_indices, slice):
            picked = self.index_rows[row_indices]
        else:
            positions = np.asarray(row_indices)
            picked = self.index_rows[np.flatnonzero(positions) if positions.dtype == bool else positions]
        return self.partition.rows(picked, columns)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        block = self.rows(slice(None))
        return block if dtype is None else block.astype(dtype, copy=False)


def load_partition(folder: str | os.PathLike[str], *, verify_hashes: bool = True) -> Partition:
    """Open a partition: manifest present and of this layout, every shard present with its size, the
    index hashed and of ``n_rows`` rows. Shard hashes are checked lazily (see the module docstring);
    ``verify_hashes=False`` skips every hash (sizes are still checked)."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.exists():
        raise PartitionError(f"{folder}: no {MANIFEST_FILE} (an unfinished or missing partition)" + _recovery(folder))
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PartitionError(f"{manifest_path}: unreadable manifest ({error})" + _recovery(folder)) from error
    if not isinstance(manifest, dict) or manifest.get("layout") != LAYOUT:
        raise PartitionError(f"{folder}: written in another layout than {LAYOUT!r} (an older platform's "
                             "embeddings.npy?)" + _recovery(folder))
    missing = [k for k in ("n_rows", "hidden_size", "dtype", "rows_per_shard", "shards", "files") if k not in manifest]
    if missing:
        raise PartitionError(f"{manifest_path}: manifest lacks {missing}" + _recovery(folder))
    try:
        check_storage_dtype(manifest["dtype"], str(manifest_path))
    except ValueError as error:
        raise PartitionError(str(error) + _recovery(folder)) from error
    if sum(int(s["rows"]) for s in manifest["shards"]) != int(manifest["n_rows"]):
        raise PartitionError(f"{manifest_path}: shard rows do not add up to n_rows" + _recovery(folder))
    index_path = folder / INDEX_FILE
    if not index_path.is_file():
        raise PartitionError(f"{index_path}: missing" + _recovery(folder))
    if verify_hashes:
        _verify_file(index_path, manifest["files"].get(INDEX_FILE), folder)
    index = pq.read_table(index_path).to_pandas()
    partition = Partition(folder, index, manifest, verify_hashes=verify_hashes)
    if len(index) != partition.n_rows:
        raise PartitionError(f"{index_path}: {len(index)} rows, the manifest says {partition.n_rows}" + _recovery(folder))
    for shard in range(len(partition.shards)):
        partition._check_size(shard)
    return partition


def cache_dir(root: str | os.PathLike[str], model_key: str) -> Path:
    """The folder of one model's per-trace activation cache."""
    return Path(root) / model_key / CACHE_DIR


def entry_path(cache: str | os.PathLike[str], key: str, layer: int) -> Path:
    """One file per (trace content key, layer); the first two hex digits fan the folder out."""
    return Path(cache) / key[:2] / f"{key}.L{int(layer)}.npz"


def _rows_digest(rows: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(rows, dtype="<f4")).cast("B")).hexdigest()


def write_entry(cache: str | os.PathLike[str], *, key: str, layer: int, rows: np.ndarray, device_type: str) -> Path:
    """Store one trace's pooled rows of one layer atomically (float32), stamped with key, layer and sha256."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    meta = json.dumps({"format": CACHE_FORMAT, "key": key, "layer": int(layer), "n_rows": int(rows.shape[0]),
                       "device_type": device_type, "sha256": _rows_digest(rows)})
    path = entry_path(cache, key, layer)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(meta), rows=rows)
    return path


def _discard_corrupt(path: Path, why: str) -> None:
    log.warning("%s: corrupt activation cache entry (%s): ignored and deleted; it will be recomputed", path, why)
    with contextlib.suppress(OSError):
        _remove(path)


def read_entry(cache: str | os.PathLike[str], *, key: str, layer: int, n_rows: int,
               rows: bool = True) -> tuple[np.ndarray | None, str] | None:
    """``(rows, device_type)`` of a valid entry, else ``None`` (missing, stale, corrupt, or not this trace/layer).

    ``rows=False`` reads only the small metadata member (the cache lookup before a run), returning
    ``(None, device_type)`` for an entry whose recorded key, layer and row count match. ``rows=True``
    also checks the rows' sha256. An entry that cannot be read, or whose content disagrees with its
    own meta, is corrupt: logged with its path, deleted (so a rerun recomputes it) and reported
    missing. An entry of an older cache format is just missing (rewritten when recomputed).
    """
    path = entry_path(cache, key, layer)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            matrix = data["rows"] if rows else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        _discard_corrupt(path, f"unreadable: {type(error).__name__}: {error}")
        return None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return None
    if (meta.get("key"), meta.get("layer")) != (key, int(layer)):
        _discard_corrupt(path, f"records key {meta.get('key')!r} layer {meta.get('layer')!r}")
        return None
    if meta.get("n_rows") != int(n_rows):
        return None  # a caller counting rows differently: not this entry's fault, so not deleted
    if matrix is not None:
        if matrix.ndim != 2 or matrix.shape[0] != n_rows or matrix.dtype != np.float32:
            _discard_corrupt(path, f"rows {matrix.dtype}{matrix.shape}, expected {n_rows} float32 rows")
            return None
        if _rows_digest(matrix) != meta.get("sha256"):
            _discard_corrupt(path, "rows do not match the sha256 in its meta")
            return None
    return matrix, str(meta.get("device_type", ""))

