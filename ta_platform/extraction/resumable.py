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
- partitions are streamed from the entries into shards, trace by trace (peak memory follows the
  longest trace, not the dataset), manifest last; a corrupt entry (its rows' sha256 disagrees with its
  meta, or it cannot be read) is logged, never used, and recomputed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from ta_platform.extraction.store import (
    PartitionWriter,
    cache_dir,
    entry_path,
    partition_folder,
    read_entry,
    write_entry,
)

Progress = Callable[[int, int], None]  # (traces done, traces to compute)


@dataclass
class RunSummary:
    """What a run wrote: one partition folder and fingerprint per layer, and what it computed.

    ``traces_computed``: traces that needed a forward pass (at least one layer missing from the
    cache); ``traces_reused``: traces whose every requested layer came from the cache;
    ``computed_by_layer``: layer -> traces computed for it (twice for a trace whose entry was corrupt).
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
    corrupt_entries: list[str] = field(default_factory=list)  # cache entries found corrupt, recomputed


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
        storage_dtype=loaded.spec.storage_dtype,
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
    are computed. Each layer's partition is then streamed from the entries into a ``PartitionWriter``
    (one trace's rows in memory at a time), stored as the model's registry ``storage_dtype``. An
    entry found corrupt while streaming (``read_entry`` logs and deletes it) aborts that layer's
    write; its traces are recomputed and the layer written again (once: corrupt again is an error).
    Failed traces (too long, misaligned) are skipped, listed in every manifest and returned.
    ``code_hash`` overrides the extraction-code hash (tests).
    """
    from ta_platform.extraction.extractor import TraceEmbeddings, index_frame, prepare_traces, validate_layers

    model = loaded.model
    layers = validate_layers(model, layers)
    budget = default_token_budget(loaded.device_type) if token_budget is None else int(token_budget)
    provenance = run_provenance(loaded, traces, layers, pooling=pooling, code_hash=code_hash)
    fingerprint = provenance_fingerprint(provenance)
    keys = trace_keys(provenance, traces)  # by input position (duplicate trace keys are refused below)
    prepared, failures = prepare_traces(loaded.tokenizer, traces, max_length=loaded.max_length)
    cache = cache_dir(out_root, loaded.spec.key)
    index = _index_of(prepared, index_frame, TraceEmbeddings)
    failure_rows = [f.as_row() for f in failures]
    computed: set[int] = set()
    computed_by_layer = {layer: 0 for layer in layers}
    corrupt: list[str] = []
    partitions: dict[int, Path] = {}
    fingerprints = {layer: provenance_fingerprint(layer_provenance(provenance, layer)) for layer in layers}
    pending = list(layers)
    for attempt in range(2):
        for missing, group in _compute_missing(loaded, prepared, keys, pending, cache, budget, pooling, progress):
            computed.update(p.position for p in group)
            for layer in missing:
                computed_by_layer[layer] += len(group)
        for layer in list(pending):
            manifest = {**layer_provenance(provenance, layer), "layer_key": layer_key(layer),
                        "fingerprint": fingerprints[layer], "run_fingerprint": fingerprint, "failures": failure_rows,
                        "n_traces": len(prepared)}
            folder = partition_folder(out_root, loaded.spec.key, layer_key(layer))
            bad = _stream_layer(folder, cache, keys, prepared, layer, int(model.config.hidden_size), index, manifest)
            if bad:
                corrupt += bad
            else:
                partitions[layer] = folder
                pending.remove(layer)
        if not pending:
            break
        if attempt:
            raise RuntimeError(f"{cache}: cache entries were corrupt again right after being recomputed "
                               f"({corrupt[-5:]}): check the disk, delete the folder and rerun")
    return RunSummary(fingerprint, partitions, fingerprints, len(index), failures, traces_computed=len(computed),
                      traces_reused=len(prepared) - len(computed), provenance=provenance,
                      computed_by_layer=computed_by_layer, corrupt_entries=corrupt)


def _compute_missing(loaded: LoadedModel, prepared: Sequence[Any], keys: Sequence[str], layers: Sequence[int],
                     cache: Path, budget: int, pooling: str,
                     progress: Progress | None) -> list[tuple[tuple[int, ...], list[Any]]]:
    """Compute and cache every (trace, layer) entry missing from ``cache``; returns the groups computed.

    Traces with the same missing layers share passes (hooks on those layers, stop after the deepest);
    batches follow the deterministic longest-first plan over the traces still missing.
    """
    from ta_platform.extraction.extractor import iter_batch_embeddings

    groups: dict[tuple[int, ...], list[Any]] = {}
    for p in prepared:
        n_rows = len(p.token_spans)
        missing = tuple(layer for layer in layers
                        if read_entry(cache, key=keys[p.position], layer=layer, n_rows=n_rows, rows=False) is None)
        if missing:
            groups.setdefault(missing, []).append(p)
    to_compute = sum(len(group) for group in groups.values())
    done = 0
    for missing, group in sorted(groups.items()):
        batches = plan_batches([len(p.input_ids) for p in group], budget)
        for finished in iter_batch_embeddings(loaded.model, group, batches, list(missing), pooling):
            for trace in finished:
                for layer in missing:
                    write_entry(cache, key=keys[trace.position], layer=layer, rows=trace.by_layer[layer],
                                device_type=loaded.device_type)
            done += len(finished)
            if progress is not None:
                progress(done, to_compute)
    return sorted(groups.items())


class _CorruptEntries(Exception):
    """Raised inside a layer's write to abort it (the writer removes what it wrote)."""


def _stream_layer(folder: Path, cache: Path, keys: Sequence[str], prepared: Sequence[Any], layer: int, hidden: int,
                  index: pd.DataFrame, manifest: dict[str, Any]) -> list[str]:
    """Write one layer's partition from the cache, trace by trace, in row order; ``[]`` when written, else
    the paths of the entries found corrupt (already logged and deleted by ``read_entry``; nothing written)."""
    bad: list[str] = []
    devices: set[str] = set()
    try:
        with PartitionWriter(folder, hidden, storage_dtype=manifest["storage_dtype"]) as writer:
            for p in prepared:
                entry = read_entry(cache, key=keys[p.position], layer=layer, n_rows=len(p.token_spans))
                if entry is None:
                    bad.append(str(entry_path(cache, keys[p.position], layer)))
                elif not bad:
                    writer.append(entry[0])
                    devices.add(entry[1])
            if bad:
                raise _CorruptEntries
            writer.finish(index, {**manifest, "computed_on": sorted(devices)})
    except _CorruptEntries:
        return bad
    return []


def _index_of(prepared: Sequence[Any], index_frame: Callable[..., pd.DataFrame], embeddings_type: type) -> pd.DataFrame:
    """The row index of the prepared traces (input order) without needing their embeddings."""
    return index_frame([embeddings_type(p.position, p.trace, p.chunk_ids, len(p.input_ids), {}) for p in prepared])
