"""Quality checks of an activation partition, as plain functions (the lead wraps them as asset checks).

Why: a wrong activation matrix looks like any other matrix; these catch the failure modes that
would silently poison every probe downstream (misaligned rows, NaNs from overflow, a dead feature,
a pooling bug that gives two different sentences the same vector, exploding norms, an artifact
built from another config). Each returns ``(passed, details)`` where ``details`` names the
offending rows (capped at ``MAX_LISTED``) so the asset-check UI shows where to look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.extraction.provenance import provenance_fingerprint, provenance_mismatches

MAX_LISTED = 20
CheckResult = tuple[bool, dict[str, Any]]


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


def check_all_finite(embeddings: np.ndarray, index: pd.DataFrame) -> CheckResult:
    """No NaN or infinity anywhere (float16 overflow and bad masks show up here)."""
    bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    return bad.size == 0, {"n_bad_rows": int(bad.size), "rows": _rows(index, bad)}


def check_no_constant_column(embeddings: np.ndarray, *, atol: float = 0.0) -> CheckResult:
    """No feature is constant across all rows (a dead dimension hints at a wrong layer or pooling)."""
    if embeddings.shape[0] < 2:
        return True, {"n_rows": int(embeddings.shape[0]), "constant_columns": []}
    spread = embeddings.max(axis=0) - embeddings.min(axis=0)
    constant = np.flatnonzero(spread <= atol)
    return constant.size == 0, {"constant_columns": constant[:MAX_LISTED].tolist(), "n_constant": int(constant.size)}


def check_distinct_texts_distinct_vectors(embeddings: np.ndarray, index: pd.DataFrame, texts: Sequence[str]) -> CheckResult:
    """No two sentences with different text share an identical embedding (pooling/alignment bug).

    ``texts`` follows the rows. Rows hashed by their bytes: O(n), no pairwise distances.
    """
    if len(texts) != embeddings.shape[0]:
        raise ValueError(f"{len(texts)} texts for {embeddings.shape[0]} rows")
    first_row_of: dict[bytes, int] = {}
    clashes: list[dict[str, Any]] = []
    for row in range(embeddings.shape[0]):
        digest = np.ascontiguousarray(embeddings[row]).tobytes()
        other = first_row_of.setdefault(digest, row)
        if other != row and texts[other] != texts[row]:
            clashes.append({"rows": [other, row], "keys": _rows(index, np.array([other, row]))})
    return not clashes, {"n_clashes": len(clashes), "clashes": clashes[:MAX_LISTED]}


def check_norms_in_band(embeddings: np.ndarray, index: pd.DataFrame, *, max_ratio_to_median: float = 50.0,
                        min_ratio_to_median: float = 0.02) -> CheckResult:
    """Row norms stay within ``[min, max] x median norm`` (no exploding or vanishing vectors)."""
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
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
