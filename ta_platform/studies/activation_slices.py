"""The (model, layer, setting) slices a probe study runs on, joined to their labels by key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ta_platform.anchors.activation_join import join_labels_to_activations

SETTINGS = ("correct", "incorrect")


@dataclass(frozen=True)
class ProbeSlice:
    model_key: str
    layer_key: str
    setting: str
    frame: pd.DataFrame
    X: np.ndarray
    index: pd.DataFrame
    manifest: dict

    @property
    def scope(self) -> dict[str, str]:
        return {"model_key": self.model_key, "layer_key": self.layer_key, "setting": self.setting}


def activation_partitions(root: Path) -> list[tuple[str, str, Path]]:
    """(model_key, layer_key, folder) of every complete partition under ``root`` (sorted)."""
    found = []
    for manifest in sorted(root.glob("*/*/manifest.json")):
        folder = manifest.parent
        found.append((folder.parent.name, folder.name, folder))
    return found


def iter_probe_slices(labels: pd.DataFrame, root: Path,
                      trace_model_of: dict[str, tuple[str, ...]]) -> Iterator[ProbeSlice]:
    """Every partition x setting, with labels of the traces the partition model reads (its trace folders) joined by key.

    The join runs on row numbers (a one-column stand-in for the matrix), then each setting reads only
    its own rows from the memory-mapped partition: one setting's float32 rows in memory at a time,
    never the whole layer plus a joined copy.
    """
    from ta_platform.extraction.store import load_partition

    for model_key, layer_key, folder in activation_partitions(root):
        if model_key not in trace_model_of:
            continue  # a partition of a model no longer in the registry
        partition = load_partition(folder)
        index, manifest = partition.index, partition.manifest
        model_labels = labels[labels["model"].isin(list(trace_model_of[model_key]))]
        joined = join_labels_to_activations(model_labels, index, np.arange(len(index))[:, None])
        rows = joined.X[:, 0]
        for setting in SETTINGS:
            keep = (joined.frame["setting"] == setting).to_numpy()
            if keep.any():
                yield ProbeSlice(model_key, layer_key, setting, joined.frame[keep].reset_index(drop=True),
                                 partition.rows(rows[keep]), index.iloc[rows[keep]].reset_index(drop=True), manifest)
