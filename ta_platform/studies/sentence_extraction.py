"""Sentence activations for one model: which layers are stale, then one pass for all of them.

Why the staleness check first: a partition whose manifest fingerprint equals the fingerprint the
current model, inputs and extraction code would produce is not even reassembled. A stale partition
is rebuilt from the per-trace activation cache (``extraction.resumable``), which computes only the
(trace, layer) pairs it lacks. The fingerprint follows what decides the numbers (weights, tokenizer,
text and spans, pooling, dtype, extraction source) and not the labels or the git commit: a new
anchor percentile recomputes nothing, an edited extractor recomputes everything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ta_platform.extraction.extractor import TraceInput
from ta_platform.extraction.loading import LoadedModel
from ta_platform.extraction.provenance import (
    inputs_hash,
    layer_provenance,
    provenance_fingerprint,
    trace_hash,
)
from ta_platform.extraction.registry import layer_key
from ta_platform.extraction.resumable import RunSummary, extract_to_partitions, run_provenance
from ta_platform.extraction.store import partition_folder

Log = Callable[[str], None]


def sentence_trace_inputs(snapshot: pd.DataFrame, char_spans: pd.DataFrame,
                          trace_models: str | Iterable[str], max_problems: int | None = None) -> list[TraceInput]:
    """One input per aligned trace of ``trace_models``: full_cot and its sentences' character spans.

    ``max_problems`` keeps the first N problems by id (a registry knob that sizes what an expensive
    reader model reads); every trace of a kept problem is read, in every folder and split.
    """
    wanted = {trace_models} if isinstance(trace_models, str) else set(trace_models)
    rows = snapshot[snapshot["model"].isin(wanted)]
    rows = rows[within_problem_limit(rows["problem_id"], max_problems)]
    spans_of = {key: group.sort_values("chunk_idx") for key, group in char_spans.groupby("trace_key")}
    inputs = []
    for row in rows.itertuples():
        spans = spans_of.get(row.trace_key)
        if spans is None:
            continue  # not aligned: recorded as a fault by sentence_spans
        inputs.append(TraceInput(
            key=row.trace_key, text=row.full_cot,
            char_spans=[tuple(s) for s in spans[["char_start", "char_end"]].to_numpy().tolist()],
            chunk_ids=spans["chunk_idx"].tolist(),
            meta={"model": row.model, "split": row.split, "problem_id": row.problem_id},
        ))
    return inputs


def within_problem_limit(problem_ids: pd.Series, max_problems: int | None) -> pd.Series:
    """Mask of the rows whose problem is among the first ``max_problems`` ids (sorted); all if None."""
    ids = problem_ids.astype(str)
    if not max_problems:
        return pd.Series(True, index=problem_ids.index)
    return ids.isin(sorted(ids.unique())[:max_problems])


def prompt_trace_inputs(tasks: pd.DataFrame) -> list[TraceInput]:
    """One input per task prompt with a single span over the whole prompt (pooled with "last")."""
    return [TraceInput(key=row.task_id, text=row.prompt, char_spans=[(0, len(row.prompt))], chunk_ids=[0],
                       meta={"topic": row.topic, "task_set": row.task_set})
            for row in tasks.itertuples()]


def traces_inputs_hash(traces: Sequence[TraceInput]) -> str:
    """The ``inputs_hash`` a partition built from ``traces`` records (no model needed)."""
    return inputs_hash([trace_hash(t.key, t.text, t.char_spans, t.chunk_index(), t.meta, t.token_positions) for t in traces])


@dataclass
class ExtractionOutcome:
    fingerprints: dict[str, str]  # layer_key -> fingerprint
    reused_layers: list[str]
    summary: RunSummary | None

    @property
    def traces_computed(self) -> int:
        return 0 if self.summary is None else self.summary.traces_computed

    @property
    def traces_reused(self) -> int:
        return 0 if self.summary is None else self.summary.traces_reused


def current_fingerprints(loaded: LoadedModel, traces: Sequence[TraceInput], layers: Sequence[int], *,
                         pooling: str, code_hash: str | None = None) -> dict[int, str]:
    provenance = run_provenance(loaded, traces, layers, pooling=pooling, code_hash=code_hash)
    return {layer: provenance_fingerprint(layer_provenance(provenance, layer)) for layer in layers}


def recorded_fingerprint(folder: Path) -> str | None:
    manifest = folder / "manifest.json"
    return json.loads(manifest.read_text()).get("fingerprint") if manifest.exists() else None


def extract_stale_layers(loaded: LoadedModel, traces: Sequence[TraceInput], layers: Sequence[int], out_root: Path, *,
                         pooling: str, token_budget: int, code_hash: str | None = None,
                         log: Log = print) -> ExtractionOutcome:
    """Rebuild only the layers whose stored fingerprint differs from the current one, from the cache.

    ``code_hash`` overrides the extraction-code hash (tests point it at a copy of the sources).
    """
    wanted = current_fingerprints(loaded, traces, layers, pooling=pooling, code_hash=code_hash)
    stale = [layer for layer in layers
             if recorded_fingerprint(partition_folder(out_root, loaded.spec.key, layer_key(layer))) != wanted[layer]]
    reused = [layer_key(layer) for layer in layers if layer not in stale]
    if reused:
        log(f"{loaded.spec.key}: layers {reused} are current (fingerprint matches); not recomputed")
    summary = None
    if stale:
        started = time.monotonic()
        last = [started]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 5 or done == total:
                last[0] = now
                log(f"{loaded.spec.key}: {done}/{total} traces ({done / max(now - started, 1e-9):.1f} traces/s)")

        summary = extract_to_partitions(loaded, traces, stale, out_root, pooling=pooling, token_budget=token_budget,
                                        code_hash=code_hash, progress=progress)
        seconds = time.monotonic() - started
        log(f"{loaded.spec.key}: layers {[layer_key(x) for x in stale]} from one pass: {summary.n_rows} sentences "
            f"in {seconds:.1f}s ({summary.traces_computed} traces computed, {summary.traces_reused} from the "
            f"activation cache, {len(summary.failures)} skipped)")
    return ExtractionOutcome({layer_key(x): f for x, f in wanted.items()}, reused, summary)


BFLOAT16_RELATIVE = 2.0 ** -8  # bfloat16 keeps 8 significant bits: rounding moves a value by at most 2^-8 of it


def spot_check_rows(loaded: LoadedModel, traces: Sequence[TraceInput], stored: Mapping[int, tuple], *,
                    pooling: str, n_traces: int = 2) -> tuple[bool, dict]:
    """Recompute the first ``n_traces`` traces (by key) and compare with the stored rows of each layer.

    Why: key checks cannot see rows whose keys are right but whose vectors belong to another
    sentence (a shifted span, a reordered write). Recomputing a deterministic sample catches that,
    and any corruption or stale partition, at the cost of a forward pass over two traces.
    ``stored`` maps layer index -> (embeddings, index) of the partition; ``embeddings`` is a matrix or
    a ``store.Partition`` (only the sampled rows are read from its maps). Rows stored as bfloat16 are
    rounded to 8 significant bits, so their tolerance grows by 2^-8 of the row's largest value.
    """
    import numpy as np

    from ta_platform.extraction.extractor import extract_sentence_embeddings

    stored_keys = {key for _, index in stored.values() for key in index["trace_key"]}
    # traces with stored rows: one skipped by the extraction (too long for the model) has none to compare
    sample = sorted((t for t in traces if t.key in stored_keys), key=lambda t: t.key)[:n_traces]
    if not sample:
        return False, {"reason_code": "no_traces"}
    result = extract_sentence_embeddings(loaded.model, loaded.tokenizer, sample, list(stored), pooling=pooling,
                                         token_budget=0, max_length=loaded.max_length)
    compute_tolerance = 1e-3 if loaded.dtype_name == "float32" else 5e-2
    details, passed = {}, True
    keys = list(zip(result.index["trace_key"], result.index["chunk_idx"].astype(int), strict=True))
    for layer, (embeddings, index) in stored.items():
        row_of = {key: row for row, key in enumerate(zip(index["trace_key"], index["chunk_idx"].astype(int),
                                                         strict=True))}
        missing = [k for k in keys if k not in row_of]
        if missing:
            passed = False
            details[layer_key(layer)] = {"reason_code": "misaligned", "missing_rows": missing[:10]}
            continue
        wanted = [row_of[k] for k in keys]
        stored_rows = (embeddings.rows(wanted) if hasattr(embeddings, "rows") else embeddings[wanted]).astype(np.float64)
        tolerance = compute_tolerance + (BFLOAT16_RELATIVE if str(getattr(embeddings, "dtype", "")) == "bfloat16"
                                         else 0.0)
        fresh = result.embeddings[layer].astype(np.float64)
        scale = np.maximum(np.abs(fresh).max(axis=1, keepdims=True), 1e-6)
        error = (np.abs(stored_rows - fresh) / scale).max(axis=1)
        bad = np.flatnonzero(error > tolerance)
        details[layer_key(layer)] = {"max_relative_error": float(error.max()), "n_rows": len(keys)}
        if bad.size:
            passed = False
            details[layer_key(layer)].update(reason_code="misaligned",
                                             rows=[f"{keys[i][0]}#{keys[i][1]}" for i in bad[:10]])
    return passed, details
