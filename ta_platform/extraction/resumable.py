"""One extraction run that writes every requested layer's partition of one model from a per-trace cache.

Why a content cache: extracting a 14B model over thousands of traces takes hours, and most later
runs change little (one added trace, a new anchor percentile, another layer). Each trace's pooled
rows are stored per layer under a content key (weights, tokenizer, text, spans, pooling, dtype,
extraction code: ``provenance.trace_cache_key``); a partition is assembled from those entries. So:
- adding a trace computes only that trace; a label change computes nothing (labels are not an
  input of extraction); an edited extraction module, another pooling or dtype computes everything;
- a layer requested later than the others is computed alone for the cached traces, in one pass
  per trace that stops after the deepest MISSING layer (the cached layers are not recomputed);
- a killed run (SIGKILL) resumes from the entries written before it died: every batch's entries
  are written atomically as soon as its forward pass ends. Batches are planned over the traces
  still missing, with the same deterministic longest-first plan, so when the kill falls between
  batches the resumed run runs exactly the batches the uninterrupted run would have run and the
  partitions are byte-identical (tested with a real SIGKILL);
- partitions are written atomically, manifest last.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.common.faults import FaultRecord
from ta_platform.extraction.batching import default_token_budget, plan_batches
from ta_platform.extraction.loading import LoadedModel
from ta_platform.extraction.provenance import (
    build_provenance,
    extraction_code_hash,
    identity_hash,
    inputs_hash,
    layer_provenance,
    provenance_fingerprint,
    trace_cache_key,
    trace_hash,
)
from ta_platform.extraction.registry import layer_key
from ta_platform.extraction.store import cache_dir, partition_folder, read_entry, write_entry, write_partition

Progress = Callable[[int, int], None]  # (traces done, traces to compute)


@dataclass
class RunSummary:
    """What a run wrote: one partition folder and fingerprint per layer, and what it computed.

    ``traces_computed``: traces that needed a forward pass (at least one layer missing from the
    cache); ``traces_reused``: traces whose every requested layer came from the cache;
    ``computed_by_layer``: layer -> traces computed for it.
    """

    run_fingerprint: str
    partitions: dict[int, Path]
    fingerprints: dict[int, str]
    n_rows: int
    failures: list[FaultRecord]
    traces_computed: int
    traces_reused: int
    provenance: dict[str, Any] = field(default_factory=dict)
    computed_by_layer: dict[int, int] = field(default_factory=dict)


def run_provenance(loaded: LoadedModel, traces: Sequence[Any], layers: Sequence[int], *, pooling: str,
                   code_hash: str | None = None, add_special_tokens: bool = True) -> dict[str, Any]:
    """The run's provenance (cheap: no forward pass). ``code_hash`` defaults to the current
    ``extraction_code_hash()``."""
    hashes = [trace_hash(t.key, t.text, t.char_spans, t.chunk_index(), t.meta, t.token_positions) for t in traces]
    return build_provenance(
        model_key=loaded.spec.key, model_id=loaded.spec.model_id, revision=loaded.spec.revision,
        weights_hash=loaded.weights_hash, tokenizer_hash=loaded.tokenizer_hash, layers=layers, pooling=pooling,
        compute_dtype=loaded.dtype_name, max_length=loaded.max_length, inputs_hash=inputs_hash(hashes),
        code_hash=code_hash or extraction_code_hash(), add_special_tokens=add_special_tokens,
    )


def trace_keys(provenance: dict[str, Any], traces: Sequence[Any]) -> list[str]:
    """The cache key of every trace (input order) under the identity of ``provenance``."""
    identity = identity_hash(provenance)
    return [trace_cache_key(identity, t.text, t.char_spans, t.token_positions) for t in traces]


def extract_to_partitions(loaded: LoadedModel, traces: Sequence[Any], layers: Sequence[int],
                          out_root: str | os.PathLike[str], *, pooling: str = "mean", token_budget: int | None = None,
                          code_hash: str | None = None, progress: Progress | None = None) -> RunSummary:
    """Extract ``layers`` (absolute indices) for ``traces`` and write ``<out_root>/<model_key>/L<i>/``.

    Rows come from the cache ``<out_root>/<model_key>/.cache``; only missing (trace, layer) entries
    are computed. Failed traces (too long, misaligned) are skipped, listed in every manifest and
    returned. ``code_hash`` overrides the extraction-code hash (tests).
    """
    from ta_platform.extraction.extractor import (
        TraceEmbeddings,
        index_frame,
        iter_batch_embeddings,
        prepare_traces,
        validate_layers,
    )

    model = loaded.model
    layers = validate_layers(model, layers)
    budget = default_token_budget(loaded.device_type) if token_budget is None else int(token_budget)
    provenance = run_provenance(loaded, traces, layers, pooling=pooling, code_hash=code_hash)
    fingerprint = provenance_fingerprint(provenance)
    keys = trace_keys(provenance, traces)  # by input position (duplicate trace keys are refused below)
    prepared, failures = prepare_traces(loaded.tokenizer, traces, max_length=loaded.max_length)
    cache = cache_dir(out_root, loaded.spec.key)

    def missing_layers(p: Any) -> tuple[int, ...]:
        n_rows = len(p.token_spans)
        return tuple(layer for layer in layers
                     if read_entry(cache, key=keys[p.position], layer=layer, n_rows=n_rows, rows=False) is None)

    groups: dict[tuple[int, ...], list[Any]] = {}
    for p in prepared:
        missing = missing_layers(p)
        if missing:
            groups.setdefault(missing, []).append(p)
    to_compute = sum(len(group) for group in groups.values())
    done = 0
    for missing, group in sorted(groups.items()):
        batches = plan_batches([len(p.input_ids) for p in group], budget)
        for finished in iter_batch_embeddings(model, group, batches, list(missing), pooling):
            for trace in finished:
                for layer in missing:
                    write_entry(cache, key=keys[trace.position], layer=layer, rows=trace.by_layer[layer],
                                device_type=loaded.device_type)
            done += len(finished)
            if progress is not None:
                progress(done, to_compute)

    per_layer: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    devices: set[str] = set()
    for p in prepared:
        for layer in layers:
            entry = read_entry(cache, key=keys[p.position], layer=layer, n_rows=len(p.token_spans))
            if entry is None:
                raise RuntimeError(f"{cache}: the cache entry of {p.trace.key} (layer {layer}) vanished or is "
                                   "corrupt; delete it and rerun")
            per_layer[layer].append(entry[0])
            devices.add(entry[1])
    index = _index_of(prepared, index_frame, TraceEmbeddings)
    hidden = int(model.config.hidden_size)
    failure_rows = [f.as_row() for f in failures]
    partitions: dict[int, Path] = {}
    fingerprints: dict[int, str] = {}
    for layer in layers:
        matrix = np.concatenate(per_layer[layer], axis=0) if prepared else np.zeros((0, hidden), np.float32)
        layer_prov = layer_provenance(provenance, layer)
        fingerprints[layer] = provenance_fingerprint(layer_prov)
        manifest = {**layer_prov, "layer_key": layer_key(layer), "fingerprint": fingerprints[layer],
                    "run_fingerprint": fingerprint, "failures": failure_rows, "n_traces": len(prepared),
                    "computed_on": sorted(devices)}
        partitions[layer] = write_partition(partition_folder(out_root, loaded.spec.key, layer_key(layer)),
                                            matrix, index, manifest)
    computed_by_layer = {layer: sum(len(g) for m, g in groups.items() if layer in m) for layer in layers}
    return RunSummary(fingerprint, partitions, fingerprints, len(index), failures, traces_computed=to_compute,
                      traces_reused=len(prepared) - to_compute, provenance=provenance,
                      computed_by_layer=computed_by_layer)


def _index_of(prepared: Sequence[Any], index_frame: Callable[..., pd.DataFrame], embeddings_type: type) -> pd.DataFrame:
    """The row index of the prepared traces (input order) without needing their embeddings."""
    return index_frame([embeddings_type(p.position, p.trace, p.chunk_ids, len(p.input_ids), {}) for p in prepared])
