"""A probe seed folder whose files no longer match what was written is named and never scored.

Each seed folder records the sha256 of its predictions, selection, split and weights in its
provenance (written last); the summary verifies them before reading a seed. Planted: one flipped bit
in the weights (same size), a truncated predictions file, a deleted split file.
"""

from __future__ import annotations

import numpy as np
import pytest

from ta_platform.anchors.labels import AnchorLabelConfig, build_label_table
from ta_platform.probing.config import ProbeConfig
from ta_platform.rollouts.generator import generate_dataset
from ta_platform.rollouts.source_base import LocalRolloutSource
from ta_platform.rollouts.sources import load_traces
from ta_platform.studies.activation_slices import ProbeSlice
from ta_platform.studies.anchor_probes import config_hash, run_seed
from ta_platform.studies.anchor_summary import load_current_seeds

pytestmark = pytest.mark.fault

CONFIG = ProbeConfig(probes=("position_baseline", "linear_probe"), bootstrap_resamples=0)


@pytest.fixture
def seed_folder(tmp_path):
    generate_dataset(tmp_path / "data", seed=0, n_problems=6)
    traces, _ = load_traces(LocalRolloutSource(tmp_path / "data"))
    labels = build_label_table(traces, AnchorLabelConfig(), {t.problem_id: "train" for t in traces})
    frame = labels[labels["setting"] == "correct"].reset_index(drop=True)
    X = np.random.default_rng(0).normal(size=(len(frame), 8)).astype(np.float32)
    piece = ProbeSlice("m", "L4", "correct", frame, X, frame[["trace_key", "chunk_idx"]], {})
    out = tmp_path / "probes"
    run_seed(0, [piece], CONFIG, out, {}, labels["problem_id"], log=lambda line: None)
    return out, labels


def _load(out, labels):
    return load_current_seeds(out, config_hash(CONFIG), {"m/L4": ""}, labels, labels_provenance={})


def test_an_intact_folder_is_read(seed_folder):
    out, labels = seed_folder
    assert _load(out, labels).seeds == [0]


@pytest.mark.parametrize("name, damage", [
    ("weights.npz", "flip"), ("predictions.parquet", "truncate"), ("split.json", "delete"),
    ("selection.parquet", "flip"),
])
def test_a_damaged_file_is_named_with_how_to_recover(seed_folder, name, damage):
    out, labels = seed_folder
    path = out / "seed_0" / name
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()
    with pytest.raises(ValueError, match=rf"{path}: .*(sha256|missing).*--stage probes --seeds 0\.\.\.0"):
        _load(out, labels)
