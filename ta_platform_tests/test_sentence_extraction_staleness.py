"""Activation partitions: current ones are reused without a forward pass, stale ones recomputed."""

from __future__ import annotations

import json

import pytest

from ta_platform.extraction.extractor import TraceInput
from ta_platform.extraction.loading import load_model
from ta_platform.extraction.registry import load_registry
from ta_platform.extraction.synthetic import synthetic_traces
from ta_platform.studies.sentence_extraction import extract_stale_layers, spot_check_rows


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    spec = load_registry("embedded")["tiny-llama"]
    return load_model(spec, device="cpu", cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def traces():
    return [TraceInput(t.key, t.text, t.char_spans) for t in synthetic_traces(4, 5, 12, seed=1)]


def _extract(loaded, traces, root, layers, versions, logs):
    return extract_stale_layers(loaded, traces, layers, root, pooling="mean", token_budget=0,
                                input_versions=versions, log=logs.append)


def test_unchanged_inputs_are_never_recomputed_and_changed_ones_are(loaded, traces, tmp_path):
    logs: list[str] = []
    first = _extract(loaded, traces, tmp_path, [2, 4], {"labels": "v1"}, logs)
    assert first.summary is not None and first.reused_layers == []
    manifest = (tmp_path / "tiny-llama" / "L2" / "manifest.json").read_bytes()

    again = _extract(loaded, traces, tmp_path, [2, 4], {"labels": "v1"}, logs)
    assert again.summary is None and again.reused_layers == ["L2", "L4"]
    assert (tmp_path / "tiny-llama" / "L2" / "manifest.json").read_bytes() == manifest

    changed = _extract(loaded, traces, tmp_path, [2, 4, 6], {"labels": "v2"}, logs)
    assert changed.summary is not None and changed.reused_layers == []
    assert json.loads((tmp_path / "tiny-llama" / "L2" / "manifest.json").read_text())["input_versions"] == {"labels": "v2"}
    assert changed.fingerprints["L2"] != first.fingerprints["L2"]

    mixed = _extract(loaded, traces, tmp_path, [2, 6, 7], {"labels": "v2"}, logs)
    assert mixed.reused_layers == ["L2", "L6"] and sorted(mixed.summary.partitions) == [7]


def test_spot_check_passes_on_stored_rows_and_catches_rows_rolled_within_a_trace(loaded, traces, tmp_path):
    import numpy as np

    from ta_platform.extraction.store import load_partition

    _extract(loaded, traces, tmp_path, [2], {"labels": "v1"}, [])
    embeddings, index, _ = load_partition(tmp_path / "tiny-llama" / "L2")
    passed, details = spot_check_rows(loaded, traces, {2: (embeddings, index)}, pooling="mean")
    assert passed, details
    rolled = embeddings.copy()
    for rows in index.groupby("trace_key").indices.values():
        rolled[rows] = embeddings[np.roll(rows, 1)]
    passed, details = spot_check_rows(loaded, traces, {2: (rolled, index)}, pooling="mean")
    assert not passed and details["L2"]["reason_code"] == "misaligned"
