"""Provenance of an activation partition, and the fingerprint used as its Dagster DataVersion.

Why: activations are expensive; they must be recomputed exactly when something that determines
them changes (weights, revision, tokenizer, layer, pooling, dtype, device kind, batching, input
spans, labels, code) and reused otherwise. The fingerprint is a hash of exactly those fields, so
the same inputs give the same string on every machine and any change gives a new one. The same
fingerprint guards resumable shards: a shard written under another fingerprint is stale.
Torch-free on purpose (imported by the Dagster code location).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ta_platform.common.hashing import sha256_bytes, sha256_file, stable_json_hash

MANIFEST_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
FINGERPRINT_FIELDS = (
    "model_key", "model_id", "revision", "weights_hash", "tokenizer_hash", "add_special_tokens", "layers",
    "pooling", "compute_dtype", "storage_dtype", "device_type", "token_budget", "max_length", "inputs_hash",
    "input_versions", "code_version", "manifest_version",
)


def weights_hash(folder: str | os.PathLike[str]) -> str:
    """Hash of a local checkpoint: config + every weight file (name and content hash), order-independent."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    if not files:
        raise FileNotFoundError(f"{folder}: no weight files to hash")
    return stable_json_hash({p.name: sha256_file(p) for p in files})


def tokenizer_hash(tokenizer: Any) -> str:
    """Hash of everything that decides token ids: the backend's JSON (vocab, merges, normalizer,
    pre-tokenizer, post-processor with its special tokens) plus the tokenizer's special-token map."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(f"{type(tokenizer).__name__} has no backend tokenizer (a fast tokenizer is required)")
    specials = {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())}
    return sha256_bytes(backend.to_str().encode("utf-8") + stable_json_hash(specials).encode())


def trace_hash(key: str, text: str, char_spans: Iterable[Sequence[int]], chunk_ids: Iterable[int],
               meta: Mapping[str, Any] | None = None) -> str:
    """Hash of one trace's text, spans, chunk ids and pass-through metadata."""
    return stable_json_hash({"key": key, "text_sha256": sha256_bytes(text.encode("utf-8")),
                             "spans": [[int(a), int(b)] for a, b in char_spans],
                             "chunks": [int(c) for c in chunk_ids], "meta": dict(meta or {})})


def inputs_hash(trace_hashes: Sequence[str]) -> str:
    """Hash of the whole span table as seen by the extractor (trace order matters: it is row order)."""
    return stable_json_hash(list(trace_hashes))


def build_provenance(*, model_key: str, model_id: str, revision: str, weights_hash: str, tokenizer_hash: str,
                     layers: Sequence[int], pooling: str, compute_dtype: str, device_type: str, token_budget: int,
                     max_length: int | None, inputs_hash: str, input_versions: Mapping[str, str] | None,
                     code_version: str, add_special_tokens: bool = True,
                     storage_dtype: str = "float32") -> dict[str, Any]:
    """The provenance record of one extraction run (all layers); see ``layer_provenance`` for one partition."""
    if storage_dtype not in ("float32", "bfloat16"):
        raise ValueError(f"storage dtype {storage_dtype!r} refused: store float32 or bfloat16, never float16")
    return {
        "manifest_version": MANIFEST_VERSION, "model_key": model_key, "model_id": model_id, "revision": revision,
        "weights_hash": weights_hash, "tokenizer_hash": tokenizer_hash, "add_special_tokens": bool(add_special_tokens),
        "layers": sorted(int(x) for x in layers), "pooling": pooling, "compute_dtype": compute_dtype,
        "storage_dtype": storage_dtype, "device_type": device_type, "token_budget": int(token_budget),
        "max_length": max_length, "inputs_hash": inputs_hash, "input_versions": dict(sorted((input_versions or {}).items())),
        "code_version": code_version,
    }


def layer_provenance(run: Mapping[str, Any], layer: int) -> dict[str, Any]:
    """The provenance of one ``<model_key>/<layer_key>`` partition: the run's record narrowed to ``layer``."""
    if layer not in run["layers"]:
        raise ValueError(f"layer {layer} was not extracted in this run (layers {run['layers']})")
    return {**run, "layers": [int(layer)], "layer": int(layer)}


def provenance_fingerprint(provenance: Mapping[str, Any]) -> str:
    """A short stable string (usable as a Dagster ``DataVersion``) over the fields that decide the output.

    Changes when any of ``FINGERPRINT_FIELDS`` changes, and only then (dict order is irrelevant).
    """
    missing = [name for name in FINGERPRINT_FIELDS if name not in provenance]
    if missing:
        raise KeyError(f"provenance lacks {missing}")
    return "act-" + stable_json_hash({name: provenance[name] for name in FINGERPRINT_FIELDS})[:32]


def provenance_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields (of ``FINGERPRINT_FIELDS``) whose recorded and current values differ: ``name -> (recorded, current)``."""
    return {name: (recorded.get(name), current.get(name)) for name in FINGERPRINT_FIELDS
            if recorded.get(name) != current.get(name)}
