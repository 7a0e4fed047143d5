"""The per-trace activation cache: what recomputes activations and what does not.

Real tiny models, real files. Each case counts what the run computed vs reused (from the run's
summary) and, where rows are reused, checks they equal a fresh extraction bit for bit:
- one added trace -> only that trace is computed;
- a new anchor percentile (labels change, spans unchanged) -> nothing is computed (the Dagster asset
  itself, invoked on a storage holding the embedded data's tables);
- an edited extraction module (a real edit of a copy of the sources the code hash reads) -> every
  trace is recomputed, and ``provenance_current`` fails on the partitions built before the edit;
- another pooling or dtype -> every trace is recomputed;
- a layer added later -> only that layer, in a pass that stops at it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ta_platform.extraction import provenance  # noqa: E402
from ta_platform.extraction.extractor import TraceInput  # noqa: E402
from ta_platform.extraction.loading import load_model  # noqa: E402
from ta_platform.extraction.registry import DEFAULT_REGISTRY, get_model_spec  # noqa: E402
from ta_platform.extraction.resumable import extract_to_partitions  # noqa: E402
from ta_platform.extraction.store import load_partition  # noqa: E402
from ta_platform.extraction.synthetic import synthetic_traces  # noqa: E402
from ta_platform_tests.torch_threads import one_thread  # noqa: F401,E402  (autouse fixture)

LAYERS = [2, 4]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def llama(model_cache):
    spec = get_model_spec("tiny-llama", profile="embedded", path=DEFAULT_REGISTRY)
    return load_model(spec, device="cpu", cache_dir=model_cache)


def _traces(n: int, seed: int = 7) -> list[TraceInput]:
    return [TraceInput(t.key, t.text, t.char_spans, meta={"split": "correct_base_solution"})
            for t in synthetic_traces(n, 4, 14, seed=seed)]


def _run(loaded, traces, root, layers=LAYERS, **options):
    return extract_to_partitions(loaded, traces, layers, root, token_budget=0, **options)


def _assert_same_partitions(root_a: Path, root_b: Path, layers=LAYERS) -> None:
    for layer in layers:
        a, index_a, manifest_a = load_partition(root_a / "tiny-llama" / f"L{layer}")
        b, index_b, manifest_b = load_partition(root_b / "tiny-llama" / f"L{layer}")
        assert index_a.equals(index_b)
        np.testing.assert_array_equal(a, b)
        assert manifest_a["fingerprint"] == manifest_b["fingerprint"]


def test_adding_one_trace_computes_only_that_trace(llama, tmp_path):
    traces = _traces(5)
    first = _run(llama, traces[:4], tmp_path / "cached")
    assert (first.traces_computed, first.traces_reused) == (4, 0)
    grown = [traces[0], traces[4], *traces[1:4]]  # the new trace lands in the middle of the row order
    second = _run(llama, grown, tmp_path / "cached")
    assert (second.traces_computed, second.traces_reused) == (1, 4)
    assert second.computed_by_layer == {2: 1, 4: 1}
    assert second.fingerprints != first.fingerprints  # the partition's input table changed
    fresh = _run(llama, grown, tmp_path / "fresh")
    assert fresh.traces_computed == 5
    _assert_same_partitions(tmp_path / "cached", tmp_path / "fresh")


def test_edited_extraction_module_recomputes_every_trace(llama, tmp_path, monkeypatch):
    copies = tmp_path / "sources"
    copies.mkdir()
    for source in provenance.EXTRACTION_SOURCES:
        shutil.copy2(source, copies / source.name)
    monkeypatch.setattr(provenance, "EXTRACTION_SOURCES", tuple(copies / s.name for s in provenance.EXTRACTION_SOURCES))
    traces = _traces(3)
    before = _run(llama, traces, tmp_path / "out")
    unchanged = _run(llama, traces, tmp_path / "out")
    assert (unchanged.traces_computed, unchanged.traces_reused) == (0, 3)
    assert unchanged.fingerprints == before.fingerprints

    with open(copies / "extractor.py", "a", encoding="utf-8") as handle:  # an uncommitted edit of the extractor
        handle.write("\n# an edit that could change how rows are pooled\n")
    edited = _run(llama, traces, tmp_path / "out")
    assert (edited.traces_computed, edited.traces_reused) == (3, 0)
    assert all(edited.fingerprints[layer] != before.fingerprints[layer] for layer in LAYERS)
    assert edited.provenance["code_hash"] != before.provenance["code_hash"]


@pytest.mark.parametrize("change", ["pooling", "dtype"])
def test_pooling_or_dtype_change_recomputes_every_trace(llama, model_cache, tmp_path, change):
    traces = _traces(3)
    base = _run(llama, traces, tmp_path)
    if change == "pooling":
        other = _run(llama, traces, tmp_path, pooling="last")
    else:
        spec = get_model_spec("tiny-llama", profile="embedded", path=DEFAULT_REGISTRY)
        bf16 = load_model(spec, device="cpu", dtype="bfloat16", cache_dir=model_cache)
        assert bf16.dtype_name == "bfloat16"
        other = _run(bf16, traces, tmp_path)
    assert (other.traces_computed, other.traces_reused) == (3, 0)
    assert other.fingerprints[2] != base.fingerprints[2]
    back = _run(llama, traces, tmp_path)  # both variants stay cached side by side
    assert (back.traces_computed, back.traces_reused) == (0, 3) and back.fingerprints == base.fingerprints


def test_a_layer_added_later_is_computed_alone_in_a_pass_that_stops_at_it(llama, tmp_path):
    traces = _traces(3)
    _run(llama, traces, tmp_path / "cached", layers=[4])
    calls = [0] * llama.model.config.num_hidden_layers
    handles = [block.register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, block in enumerate(llama.model.layers)]
    try:
        both = _run(llama, traces, tmp_path / "cached", layers=[2, 4])
    finally:
        for handle in handles:
            handle.remove()
    assert both.computed_by_layer == {2: 3, 4: 0} and both.traces_computed == 3
    assert calls[:3] == [3, 3, 3] and calls[3:] == [0] * (len(calls) - 3)  # stopped after L2
    _run(llama, traces, tmp_path / "fresh", layers=[2, 4])
    _assert_same_partitions(tmp_path / "cached", tmp_path / "fresh", layers=[2, 4])


# --------------------------------------------------------------------------- labels: the asset itself


def _write_tables(traces, percentile: float) -> None:
    """The three thought-anchor tables sentence_activations and its checks read, as the data stage writes them."""
    from ta_platform.anchors.labels import AnchorLabelConfig, build_label_table
    from ta_platform.anchors.spans import char_span_table
    from ta_platform.anchors.trace_table import trace_snapshot
    from ta_platform.common.parquet_io import write_parquet
    from ta_platform.probing.splits import problem_level_split
    from ta_platform.store import artifacts

    snapshot = trace_snapshot(traces)
    spans, _ = char_span_table(snapshot)
    splits = problem_level_split(sorted({t.problem_id for t in traces}), 0, (0.7, 0.15, 0.15))
    labels = build_label_table(traces, AnchorLabelConfig(percentile=percentile), splits)
    write_parquet(snapshot, artifacts.thought_anchor_file(artifacts.SNAPSHOT))
    write_parquet(spans, artifacts.thought_anchor_file(artifacts.CHAR_SPANS))
    write_parquet(labels, artifacts.thought_anchor_file(artifacts.LABELS), {"percentile": percentile})


def test_new_anchor_percentile_recomputes_no_activation(model_cache, tmp_path, monkeypatch):
    import dagster as dg
    import pandas as pd

    from ta_platform.defs.activations.assets import sentence_activations
    from ta_platform.defs.activations.checks import _input_hashers, _provenance
    from ta_platform.defs.compute import ComputeResource
    from ta_platform.defs.resources import MetadataStoreResource
    from ta_platform.rollouts.sources import load_traces, source_from_spec
    from ta_platform.store import artifacts

    monkeypatch.setenv("TA_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("TA_MODEL_CACHE", str(model_cache))
    monkeypatch.delenv("TA_MODEL_REGISTRY", raising=False)
    monkeypatch.delenv("TA_MODEL_PROFILE", raising=False)
    source = source_from_spec("embedded")
    traces, _ = load_traces(source, models=["deepseek-r1-distill-llama-8b"],
                            splits=["correct_base_solution", "incorrect_base_solution"], problem_ids="all")
    traces = sorted(traces, key=lambda t: t.key)[:6]
    compute = ComputeResource(device="cpu", token_budget=0)
    store = MetadataStoreResource(db_path=str(tmp_path / "metadata.duckdb"))

    def materialize() -> dict:
        context = dg.build_asset_context(partition_key="tiny-llama/L4")
        return sentence_activations(context, compute=compute, metadata_store=store).metadata

    _write_tables(traces, percentile=90.0)
    first = materialize()
    assert first["traces_computed"] == 6 and first["reused_partitions"] == []
    labels_90 = pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS))

    _write_tables(traces, percentile=70.0)  # a new anchor percentile: labels change, spans do not
    labels_70 = pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS))
    assert labels_70["anchor"].sum() > labels_90["anchor"].sum()
    second = materialize()
    assert second["traces_computed"] == 0 and second["reused_partitions"] == ["tiny-llama/L4"]
    assert second["fingerprints"] == first["fingerprints"]

    # provenance_current: current after the label change; not current once the extraction code changes.
    embeddings, index, manifest = load_partition(tmp_path / "storage" / "activations" / "tiny-llama" / "L4")
    spans = pd.read_parquet(artifacts.thought_anchor_file(artifacts.CHAR_SPANS))
    spec = compute.registry()["tiny-llama"]
    ctx = {"spec": spec, "compute": compute, **_input_hashers(spans)}
    passed, details = _provenance(embeddings, index, manifest, ctx)
    assert passed, details
    copies = tmp_path / "sources"
    copies.mkdir()
    for path in provenance.EXTRACTION_SOURCES:
        shutil.copy2(path, copies / path.name)
    (copies / "pooling.py").write_text((copies / "pooling.py").read_text() + "\n# edited\n")
    monkeypatch.setattr(provenance, "EXTRACTION_SOURCES", tuple(copies / p.name for p in provenance.EXTRACTION_SOURCES))
    passed, details = _provenance(embeddings, index, manifest, {**ctx, **_input_hashers(spans)})
    assert not passed and set(details["differing_fields"]) == {"code_hash"}
    third = materialize()  # the edit is seen without any commit: every trace is recomputed
    assert third["traces_computed"] == 6 and third["reused_partitions"] == []
