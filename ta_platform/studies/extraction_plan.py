"""What an extraction run would cost, per model, before it starts (``ta-platform plan``).

Why: a paper-scale run (a 14B model over thousands of traces) costs GPU hours and hundreds of GB; a
user should see, without loading weights or computing anything, how much memory the weights take at
their dtype, how many traces and tokens each model will read, which traces exceed its context (they
will be skipped and recorded as faults), how much is already in the per-trace activation cache, and
the disk the rest will need. Token counts are exact where the tokenizer is available offline and
estimated (4 characters per token, marked) where it is not, e.g. a Hub model not yet downloaded.
A Hub model already in the cache under TA_STORAGE is read from there (``local_files_only``), so a
rerun after a download shows what is really cached; nothing is ever fetched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ta_platform.extraction.registry import ModelSpec

CHARS_PER_TOKEN_ESTIMATE = 4.0
BYTES_PER_PARAMETER = {"float32": 4, "bfloat16": 2}


@dataclass
class ModelPlan:
    """One model's side of the plan (the printed table row and the ``--json`` object)."""

    key: str
    source: str
    dtype: str
    parameters: int | None
    weights_gib: float | None
    traces: int
    tokens: int
    tokens_exact: bool
    over_context: int
    max_length: int | None
    layers: list[str]
    entries_cached: int
    entries_to_compute: int
    disk_needed_gib: float | None
    note: str = ""
    over_context_traces: list[str] = field(default_factory=list)  # keys, skipped and recorded as too_long
    layers_current: list[str] = field(default_factory=list)  # partitions whose fingerprint is current

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Identity:
    """The facts ``run_provenance`` needs (the attribute names of ``LoadedModel``), without the weights."""

    spec: ModelSpec
    tokenizer: Any
    dtype_name: str
    weights_hash: str
    tokenizer_hash: str
    max_length: int | None
    model: Any = None


def _config(folder: str) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _parameter_count(folder: str | Path) -> int | None:
    """Sum of tensor sizes from the safetensors headers (no tensor is read), without the LM head:
    extraction loads the base model (``AutoModel``), so the head's memory is never allocated."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="np") as handle:
            for name in handle.keys():
                if name.startswith("lm_head."):
                    continue
                count = 1
                for dim in handle.get_slice(name).get_shape():
                    count *= int(dim)
                total += count
    return total


def _hub_snapshot(where: Any) -> Path | None:
    """The cached snapshot folder of a Hub model's revision (where ``config.json`` resolves), else None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(where.source, "config.json", cache_dir=where.cache_dir, revision=where.revision)
    return Path(found).parent if isinstance(found, str) else None


def _offline_identity(spec: ModelSpec, dtype_name: str) -> tuple[_Identity | None, dict[str, Any], str]:
    """Tokenizer, weights identity and config of a model whose files are available offline, else None.

    The identity is the one ``loading.load_model`` records (a Hub model: ``hub:<snapshot commit>``),
    so the cache keys computed here are the run's. Nothing is downloaded: Hub files come from the
    cache with ``local_files_only``.
    """
    from transformers import AutoTokenizer

    from ta_platform.extraction.loading import locate_weights, weights_available_offline
    from ta_platform.extraction.provenance import tokenizer_hash

    offline, why = weights_available_offline(spec)
    if not offline:
        return None, {}, f"weights not available offline ({why}); tokens estimated"
    where = locate_weights(spec)
    if spec.source == "hub":
        snapshot = _hub_snapshot(where)
        if snapshot is None:
            return None, {}, f"{spec.hf_id}@{spec.revision}: no cached snapshot; tokens estimated"
        folder, weights_identity = snapshot, f"hub:{snapshot.name}"  # as loading._hub_commit resolves it
        tokenizer = AutoTokenizer.from_pretrained(where.source, revision=where.revision, cache_dir=where.cache_dir,
                                                  local_files_only=True)
    else:
        folder, weights_identity = Path(where.source), str(where.identity)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    config = _config(str(folder))
    max_length = spec.max_length or config.get("max_position_embeddings")
    identity = _Identity(spec, tokenizer, dtype_name, weights_identity, tokenizer_hash(tokenizer), max_length)
    config["_parameters"] = _parameter_count(folder)
    return identity, config, ""


def plan_model(spec: ModelSpec, traces: Sequence[Any], activations_root: Path, *, device: str = "cpu",
               pooling: str = "mean", layers: Sequence[int] | None = None) -> ModelPlan:
    """The plan of one model over ``traces`` (``TraceInput``s) for its configured layers (or ``layers``).

    Entries are (trace, layer) pairs of the per-trace cache; a trace over the context is never an
    entry (the run skips it). Disk: the entries to compute, plus the partitions of the layers whose
    fingerprint is not current (a partition is rewritten whole, cached rows included): cache entries in
    float32, partitions in the model's ``storage_dtype``.
    """
    from ta_platform.extraction.device import select_dtype_name
    from ta_platform.extraction.provenance import (
        identity_hash,
        layer_provenance,
        provenance_fingerprint,
        trace_cache_key,
    )
    from ta_platform.extraction.registry import layer_key
    from ta_platform.extraction.resumable import run_provenance
    from ta_platform.extraction.storage_dtypes import word_dtype
    from ta_platform.extraction.store import cache_dir, partition_folder, read_entry
    from ta_platform.studies.sentence_extraction import recorded_fingerprint

    dtype_name = select_dtype_name(device, spec.dtype)
    layers = sorted({int(x) for x in layers}) if layers is not None else spec.layer_indices()
    identity, config, note = _offline_identity(spec, dtype_name)
    parameters = config.get("_parameters") or spec.extra.get("parameters")
    parameters = int(parameters) if parameters else None
    hidden = config.get("hidden_size") or spec.extra.get("hidden_size")
    max_length = identity.max_length if identity else (spec.max_length or spec.extra.get("max_position_embeddings"))
    if identity is not None:
        lengths = [len(identity.tokenizer(t.text, add_special_tokens=True)["input_ids"]) for t in traces]
    else:
        lengths = [int(len(t.text) / CHARS_PER_TOKEN_ESTIMATE) + 1 for t in traces]
    fits = [length <= max_length if max_length else True for length in lengths]
    fitting_rows = sum(len(t.chunk_index()) for t, fit in zip(traces, fits, strict=True) if fit)
    cached = to_compute = rows_to_compute = 0
    current: list[int] = []
    if identity is not None:
        provenance = run_provenance(identity, traces, layers, pooling=pooling)
        run_identity = identity_hash(provenance)
        current = [layer for layer in layers
                   if recorded_fingerprint(partition_folder(activations_root, spec.key, layer_key(layer)))
                   == provenance_fingerprint(layer_provenance(provenance, layer))]
        cache = cache_dir(activations_root, spec.key)
        for trace, fit in zip(traces, fits, strict=True):
            if not fit:
                continue
            key = trace_cache_key(run_identity, trace.text, trace.char_spans, trace.token_positions)
            for layer in layers:
                if read_entry(cache, key=key, layer=layer, n_rows=len(trace.chunk_index()), rows=False) is None:
                    to_compute += 1
                    rows_to_compute += len(trace.chunk_index())
                else:
                    cached += 1
    else:
        to_compute = sum(fits) * len(layers)
        rows_to_compute = fitting_rows * len(layers)
    # Cache entries are float32 rows; partitions store the registry's storage dtype (bfloat16: 2 bytes a value).
    partition_rows = fitting_rows * (len(layers) - len(current))
    disk = ((rows_to_compute * 4 + partition_rows * word_dtype(spec.storage_dtype).itemsize) * int(hidden) / 2**30
            if hidden else None)
    weights = parameters * BYTES_PER_PARAMETER[dtype_name] / 2**30 if parameters else None
    return ModelPlan(
        key=spec.key, source=spec.source, dtype=dtype_name, parameters=parameters,
        weights_gib=None if weights is None else round(weights, 3), traces=len(traces), tokens=sum(lengths),
        tokens_exact=identity is not None, over_context=len(fits) - sum(fits), max_length=max_length,
        layers=[layer_key(x) for x in layers], entries_cached=cached, entries_to_compute=to_compute,
        disk_needed_gib=None if disk is None else round(disk, 4), note=note,
        over_context_traces=[t.key for t, fit in zip(traces, fits, strict=True) if not fit],
        layers_current=[layer_key(x) for x in current],
    )


def format_plan(plans: Sequence[ModelPlan], title: str) -> str:
    """A fixed-width table for the terminal."""
    header = (f"{'model':<22} {'dtype':<9} {'weights':>10} {'traces':>7} {'tokens':>10} {'>ctx':>5} "
              f"{'cached':>7} {'compute':>8} {'disk':>10}  layers")
    lines = [title, header]
    for p in plans:
        weights = f"{p.weights_gib:.2f} GiB" if p.weights_gib is not None else "unknown"
        disk = f"{p.disk_needed_gib * 1024:.1f} MiB" if p.disk_needed_gib is not None else "unknown"
        tokens = f"{p.tokens}{'' if p.tokens_exact else '~'}"
        lines.append(f"{p.key:<22} {p.dtype:<9} {weights:>10} {p.traces:>7} {tokens:>10} {p.over_context:>5} "
                     f"{p.entries_cached:>7} {p.entries_to_compute:>8} {disk:>10}  {','.join(p.layers)}"
                     + (f"  ({p.note})" if p.note else ""))
    for p in plans:
        if p.over_context_traces:
            shown = ", ".join(p.over_context_traces[:5]) + (" ..." if len(p.over_context_traces) > 5 else "")
            lines.append(f"  {p.key}: over its context of {p.max_length} tokens: {shown}")
    lines.append("cached / compute count (trace, layer) entries of the per-trace activation cache; "
                 "~ marks tokens estimated at 4 characters per token; >ctx traces are skipped as faults.")
    return "\n".join(lines)
