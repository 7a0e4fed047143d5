"""Quality checks of an activation partition, as plain functions (the lead wraps them as asset checks).

Why: a wrong activation matrix looks like any other matrix; these catch the failure modes that
would silently poison every probe downstream (misaligned rows, NaNs from overflow, a dead feature,
a pooling bug that gives two different sentences the same vector, exploding norms, an artifact
built from another config). Each returns ``(passed, details)`` where ``details`` names the
offending rows (capped at ``MAX_LISTED``) so the asset-check UI shows where to look.

The matrix checks read their rows block by block, so they accept an in-memory matrix or a
``store.Partition`` (anything with ``shape`` and ``iter_blocks``): given the partition, a check of a
layer larger than memory holds one block (``store.READ_BLOCK_BYTES``) plus O(rows) bookkeeping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.extraction.provenance import provenance_fingerprint, provenance_mismatches

MAX_LISTED = 20
BLOCK_BYTES = 64 * 2**20  # float32 bytes per block when an in-memory matrix is walked
CheckResult = tuple[bool, dict[str, Any]]


def _blocks(embeddings: Any) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, float32 block)`` over a matrix or a partition, in row order."""
    if hasattr(embeddings, "iter_blocks"):
        for rows, block in embeddings.iter_blocks():
            yield int(rows[0]), block
        return
    step = max(1, BLOCK_BYTES // (4 * max(1, embeddings.shape[1])))
    for start in range(0, embeddings.shape[0], step):
        yield start, np.asarray(embeddings[start:start + step])


def _rows(index: pd.DataFrame, positions: np.ndarray) -> list[dict[str, Any]]:
    return [{"row": int(i), "trace_key": str(index.iloc[i]["trace_key"]), "chunk_idx": int(index.iloc[i]["chunk_idx"])}
            for i in positions[:MAX_LISTED]]


def check_rows_match_keys(index: pd.DataFrame, expected: Sequence[tuple[str, int]] | pd.DataFrame) -> CheckResult:
    """The row index equals the expected ``(trace_key, chunk_idx)`` sentence keys, in order."""
    if isinstance(expected, pd.DataFrame):
        expected = list(zip(expected["trace_key"], expected["chunk_idx"].astype(int), strict=True))
    actual = list(zip(index["trace_key"], index["chunk_idx"].astype(int), strict=True))
    expected = [(str(k), int(c)) for k, c in expected]
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    first_diff = next((i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b), None)
    passed = actual == expected
    return passed, {"n_rows": len(actual), "n_expected": len(expected), "missing": missing[:MAX_LISTED],
                    "unexpected": extra[:MAX_LISTED], "first_out_of_order_row": None if passed else first_diff}


def check_all_finite(embeddings: Any, index: pd.DataFrame) -> CheckResult:
    """No NaN or infinity anywhere (float16 overflow and bad masks show up here)."""
    found = [start + np.flatnonzero(~np.isfinite(block).all(axis=1)) for start, block in _blocks(embeddings)]
    bad = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    return bad.size == 0, {"n_bad_rows": int(bad.size), "rows": _rows(index, bad)}


def check_no_constant_column(embeddings: Any, *, atol: float = 0.0) -> CheckResult:
    """No feature is constant across all rows (a dead dimension hints at a wrong layer or pooling)."""
    if embeddings.shape[0] < 2:
        return True, {"n_rows": int(embeddings.shape[0]), "constant_columns": []}
    high = np.full(embeddings.shape[1], -np.inf)
    low = np.full(embeddings.shape[1], np.inf)
    for _, block in _blocks(embeddings):
        high = np.maximum(high, block.max(axis=0))
        low = np.minimum(low, block.min(axis=0))
    spread = high - low
    constant = np.flatnonzero(spread <= atol)
    return constant.size == 0, {"constant_columns": constant[:MAX_LISTED].tolist(), "n_constant": int(constant.size)}


def check_distinct_texts_distinct_vectors(embeddings: Any, index: pd.DataFrame, texts: Sequence[str]) -> CheckResult:
    """No two sentences with different text share an identical embedding (pooling/alignment bug).

    ``texts`` follows the rows. Rows keyed by a 16-byte BLAKE2b digest of their bytes: O(n), no
    pairwise distances, and 16 bytes per row rather than a copy of the matrix.
    """
    if len(texts) != embeddings.shape[0]:
        raise ValueError(f"{len(texts)} texts for {embeddings.shape[0]} rows")
    first_row_of: dict[bytes, int] = {}
    clashes: list[dict[str, Any]] = []
    for start, block in _blocks(embeddings):
        block = np.ascontiguousarray(block)
        for offset in range(block.shape[0]):
            row = start + offset
            digest = hashlib.blake2b(block[offset].tobytes(), digest_size=16).digest()
            other = first_row_of.setdefault(digest, row)
            if other != row and texts[other] != texts[row]:
                clashes.append({"rows": [other, row], "keys": _rows(index, np.array([other, row]))})
    return not clashes, {"n_clashes": len(clashes), "clashes": clashes[:MAX_LISTED]}


def check_norms_in_band(embeddings: Any, index: pd.DataFrame, *, max_ratio_to_median: float = 50.0,
                        min_ratio_to_median: float = 0.02) -> CheckResult:
    """Row norms stay within ``[min, max] x median norm`` (no exploding or vanishing vectors)."""
    found = [np.linalg.norm(block.astype(np.float64), axis=1) for _, block in _blocks(embeddings)]
    norms = np.concatenate(found) if found else np.zeros(0)
    if norms.size == 0:
        return True, {"n_rows": 0}
    median = float(np.median(norms))
    low, high = median * min_ratio_to_median, median * max_ratio_to_median
    bad = np.flatnonzero((norms < low) | (norms > high) | (median == 0))
    return bad.size == 0, {"median_norm": median, "band": [low, high], "n_outside": int(bad.size),
                           "rows": _rows(index, bad)}


def check_provenance_current(manifest: Mapping[str, Any], current: Mapping[str, Any]) -> CheckResult:
    """The partition was built from the current config: fingerprints match (differing fields named)."""
    recorded = manifest.get("fingerprint")
    expected = provenance_fingerprint(current)
    mismatches = provenance_mismatches(manifest, current)
    passed = recorded == expected and not mismatches
    return passed, {"recorded": recorded, "current": expected,
                    "differing_fields": {k: {"recorded": v[0], "current": v[1]} for k, v in mismatches.items()}}
