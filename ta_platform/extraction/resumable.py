"""One resumable extraction run that writes every requested layer's partition of one model.

Why: extracting a 14B model over thousands of traces takes hours; a killed run must resume where it
stopped and still produce the same bytes as an uninterrupted run. How:
- the batch plan is computed over ALL traces (deterministic), and a batch is skipped only when every
  trace in it has a valid shard; a partly-finished batch reruns whole, with the same composition,
  so its numbers are bit-identical to the uninterrupted run;
- each finished trace is written as an atomic shard stamped with the run fingerprint, so a shard
  from another model, layer set, pooling, dtype, input table or code version is never reused;
- partitions are assembled from shards in trace order and written atomically, manifest last.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.common.faults import FaultRecord
from ta_platform.common.hashing import code_version as current_code_version
from ta_platform.extraction.batching import default_token_budget, plan_batches
from ta_platform.extraction.loading import LoadedModel
from ta_platform.extraction.provenance import (
    build_provenance,
    inputs_hash,
    layer_provenance,
    provenance_fingerprint,
    trace_hash,
)
from ta_platform.extraction.registry import layer_key
from ta_platform.extraction.store import (
    WORK_DIR,
    partition_folder,
    read_shard,
    shard_path,
    write_partition,
    write_shard,
)

Progress = Callable[[int, int], None]  # (traces done, traces total)


@dataclass
class RunSummary:
    """What a run wrote: one partition folder and fingerprint per layer, plus what it skipped."""

    run_fingerprint: str
    partitions: dict[int, Path]
    fingerprints: dict[int, str]
    n_rows: int
    failures: list[FaultRecord]
    traces_computed: int
    traces_reused: int
    provenance: dict[str, Any] = field(default_factory=dict)


def run_provenance(loaded: LoadedModel, traces: Sequence[Any], layers: Sequence[int], *, pooling: str,
                   token_budget: int, input_versions: Mapping[str, str] | None, code_version: str | None,
                   add_special_tokens: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The run's provenance and each trace's hash (input order). Cheap: no forward pass."""
    hashes = [trace_hash(t.key, t.text, t.char_spans, t.chunk_index(), t.meta) for t in traces]
    provenance = build_provenance(
        model_key=loaded.spec.key, model_id=loaded.spec.model_id, revision=loaded.spec.revision,
        weights_hash=loaded.weights_hash, tokenizer_hash=loaded.tokenizer_hash, layers=layers, pooling=pooling,
        compute_dtype=loaded.dtype_name, device_type=loaded.device_type, token_budget=token_budget,
        max_length=loaded.max_length, inputs_hash=inputs_hash(hashes), input_versions=input_versions,
        code_version=code_version or current_code_version(), add_special_tokens=add_special_tokens,
    )
    return provenance, hashes


def extract_to_partitions(loaded: LoadedModel, traces: Sequence[Any], layers: Sequence[int],
                          out_root: str | os.PathLike[str], *, pooling: str = "mean", token_budget: int | None = None,
                          input_versions: Mapping[str, str] | None = None, code_version: str | None = None,
                          progress: Progress | None = None, keep_shards: bool = False) -> RunSummary:
    """Extract ``layers`` (absolute indices) for ``traces`` and write ``<out_root>/<model_key>/L<i>/``.

    Resumes from valid shards in ``<out_root>/<model_key>/.work``; ``input_versions`` (e.g. the data
    versions of the span and label tables) enter the provenance. Failed traces are skipped, listed in
    every manifest and returned. Shards are deleted once the partitions are written unless
    ``keep_shards``.
    """
    from ta_platform.extraction.extractor import (
        index_frame,
        iter_batch_embeddings,
        prepare_traces,
        validate_layers,
    )

    model = loaded.model
    layers = validate_layers(model, layers)
    budget = default_token_budget(loaded.device_type) if token_budget is None else int(token_budget)
    provenance, hashes = run_provenance(loaded, traces, layers, pooling=pooling, token_budget=budget,
                                        input_versions=input_versions, code_version=code_version)
    fingerprint = provenance_fingerprint(provenance)
    hash_of = {t.key: h for t, h in zip(traces, hashes, strict=True)}
    prepared, failures = prepare_traces(loaded.tokenizer, traces, max_length=loaded.max_length)
    work_dir = Path(out_root) / loaded.spec.key / WORK_DIR
    work_dir.mkdir(parents=True, exist_ok=True)

    def shard_of(p: Any) -> dict[int, np.ndarray] | None:
        return read_shard(shard_path(work_dir, p.trace.key), trace_key=p.trace.key, fingerprint=fingerprint,
                          trace_hash=hash_of[p.trace.key], layers=layers, n_rows=len(p.token_spans))

    batches = plan_batches([len(p.input_ids) for p in prepared], budget)
    valid = [shard_of(p) is not None for p in prepared]
    complete = [all(valid[i] for i in batch) for batch in batches]
    pending = [batch for batch, ok in zip(batches, complete, strict=True) if not ok]
    reused = sum(len(batch) for batch, ok in zip(batches, complete, strict=True) if ok)
    done = reused
    for finished in iter_batch_embeddings(model, prepared, pending, layers, pooling):
        for trace in finished:
            write_shard(shard_path(work_dir, trace.trace.key), trace_key=trace.trace.key, fingerprint=fingerprint,
                        trace_hash=hash_of[trace.trace.key], by_layer=trace.by_layer)
        done += len(finished)
        if progress is not None:
            progress(done, len(prepared))

    per_layer: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    for p in prepared:
        shard = shard_of(p)
        if shard is None:
            raise RuntimeError(f"shard of {p.trace.key} vanished or went stale during the run")
        for layer in layers:
            per_layer[layer].append(shard[layer])
    index = _index_of(prepared, index_frame)
    hidden = int(model.config.hidden_size)
    failure_rows = [f.as_row() for f in failures]
    partitions: dict[int, Path] = {}
    fingerprints: dict[int, str] = {}
    for layer in layers:
        matrix = np.concatenate(per_layer[layer], axis=0) if prepared else np.zeros((0, hidden), np.float32)
        layer_prov = layer_provenance(provenance, layer)
        fingerprints[layer] = provenance_fingerprint(layer_prov)
        manifest = {**layer_prov, "layer_key": layer_key(layer), "fingerprint": fingerprints[layer],
                    "run_fingerprint": fingerprint, "failures": failure_rows, "n_traces": len(prepared)}
        partitions[layer] = write_partition(partition_folder(out_root, loaded.spec.key, layer_key(layer)),
                                            matrix, index, manifest)
    if not keep_shards:
        shutil.rmtree(work_dir, ignore_errors=True)
    return RunSummary(fingerprint, partitions, fingerprints, len(index), failures,
                      traces_computed=len(prepared) - reused, traces_reused=reused, provenance=provenance)


def _index_of(prepared: Sequence[Any], index_frame: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    """The row index of the prepared traces (input order) without needing their embeddings."""
    from ta_platform.extraction.extractor import TraceEmbeddings

    return index_frame([TraceEmbeddings(p.position, p.trace, p.chunk_ids, len(p.input_ids), {}) for p in prepared])
