"""Join sentence labels to an activation partition's rows, by key, never by position.

Why by key: a probe trained on activations whose rows are shifted by one sentence learns noise
and reports it as a result. Rows are matched on (trace_key, chunk_idx); labelled sentences with
no activation row (a trace skipped at extraction) are dropped and counted, and activation rows
with no label are an error (the partition belongs to other data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY = ["trace_key", "chunk_idx"]


@dataclass(frozen=True)
class JoinedSlice:
    frame: pd.DataFrame  # label rows, in activation row order
    X: np.ndarray
    n_labels_without_activations: int


def join_labels_to_activations(labels: pd.DataFrame, index: pd.DataFrame, X: np.ndarray) -> JoinedSlice:
    if len(index) != len(X):
        raise ValueError(f"activation index has {len(index)} rows but the matrix has {len(X)}")
    rows = index[KEY].reset_index(drop=True).assign(_row=np.arange(len(index)))
    merged = rows.merge(labels, on=KEY, how="left", indicator=True, validate="one_to_one")
    orphans = merged[merged["_merge"] != "both"]
    if len(orphans):
        examples = [f"{r.trace_key}#{r.chunk_idx}" for r in orphans.head(5).itertuples()]
        raise ValueError(f"{len(orphans)} activation rows have no sentence label (e.g. {examples}); "
                         "the activations were extracted from other data: re-materialise them")
    merged = merged.sort_values("_row", kind="stable")
    frame = merged.drop(columns=["_row", "_merge"]).reset_index(drop=True)
    missing = len(labels) - len(frame)
    return JoinedSlice(frame, np.asarray(X)[merged["_row"].to_numpy()], missing)
