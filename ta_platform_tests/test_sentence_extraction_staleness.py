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


def _extract(loaded, traces, root, layers, logs, **options):
    return extract_stale_layers(loaded, traces, layers, root, pooling="mean", token_budget=0, log=logs.append,
                                **options)


def test_unchanged_inputs_are_never_recomputed_and_changed_ones_are(loaded, traces, tmp_path):
    logs: list[str] = []
    first = _extract(loaded, traces, tmp_path, [2, 4], logs)
    assert first.summary is not None and first.reused_layers == [] and first.traces_computed == len(traces)
    manifest = (tmp_path / "tiny-llama" / "L2" / "manifest.json").read_bytes()

    again = _extract(loaded, traces, tmp_path, [2, 4], logs)
    assert again.summary is None and again.reused_layers == ["L2", "L4"]
    assert (tmp_path / "tiny-llama" / "L2" / "manifest.json").read_bytes() == manifest

    # A changed span of one trace: every partition is stale (its input table changed), but only that
    # trace is recomputed; the new layer L6 is computed for every trace.
    edited = [*traces[:-1], TraceInput(traces[-1].key, traces[-1].text, [(a, b - 1) for a, b in traces[-1].char_spans])]
    changed = _extract(loaded, edited, tmp_path, [2, 4, 6], logs)
    assert changed.summary is not None and changed.reused_layers == []
    assert changed.summary.computed_by_layer == {2: 1, 4: 1, 6: len(traces)}
    assert json.loads((tmp_path / "tiny-llama" / "L2" / "manifest.json").read_text())["inputs_hash"] != (
        json.loads(manifest)["inputs_hash"])
    assert changed.fingerprints["L2"] != first.fingerprints["L2"]

    mixed = _extract(loaded, edited, tmp_path, [2, 6, 7], logs)
    assert mixed.reused_layers == ["L2", "L6"] and sorted(mixed.summary.partitions) == [7]
    assert mixed.summary.computed_by_layer == {7: len(traces)}


def test_spot_check_passes_on_stored_rows_and_catches_rows_rolled_within_a_trace(loaded, traces, tmp_path):
    import numpy as np

    from ta_platform.extraction.store import load_partition

    _extract(loaded, traces, tmp_path, [2], [])
    embeddings, index, _ = load_partition(tmp_path / "tiny-llama" / "L2")
    passed, details = spot_check_rows(loaded, traces, {2: (embeddings, index)}, pooling="mean")
    assert passed, details
    rolled = embeddings.copy()
    for rows in index.groupby("trace_key").indices.values():
        rolled[rows] = embeddings[np.roll(rows, 1)]
    passed, details = spot_check_rows(loaded, traces, {2: (rolled, index)}, pooling="mean")
    assert not passed and details["L2"]["reason_code"] == "misaligned"
