"""Provenance of an activation partition, its fingerprint (the Dagster DataVersion), and the
content keys of the per-trace activation cache.

Why: activations are expensive; they must be recomputed exactly when something that determines
their numbers changes and reused otherwise. What determines them: the model weights (identity,
revision), the tokenizer, the exact text and character spans fed to the model, the special-token
setting, the pooling, the compute dtype and the extraction code. What does NOT: anchor labels (a
new anchor percentile changes no activation), the git commit (a commit that touches only the probes
must not re-extract a 14B model, and an uncommitted edit of the extractor must not be hidden behind
a "-dirty" suffix), the device kind and the batching (numerically equivalent up to float rounding).
So the code enters as a hash of the extraction modules' source (``extraction_code_hash``), read from
the files, committed or not.

Two levels of keys:
- ``trace_cache_key``: one trace's pooled rows (any layer) are stored under a hash of the activation
  identity (weights, tokenizer, pooling, dtype, code) and that trace's text and spans; adding a trace
  computes only that trace;
- ``provenance_fingerprint``: one ``<model_key>/<layer_key>`` partition = the identity + the layer +
  the whole input table in row order (trace keys, texts, spans, chunk ids, pass-through metadata) +
  the context limit that decides which traces are skipped.
Torch-free on purpose (imported by the Dagster code location).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ta_platform.common.hashing import sha256_bytes, sha256_file, stable_json_hash
from ta_platform.extraction.storage_dtypes import STORAGE_DTYPES

# 3: the sharded partition layout (store.LAYOUT) and storage_dtype taken from the registry: partitions
# written before are stale and rebuilt (from the cache when its entries are current).
MANIFEST_VERSION = 3
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
FINGERPRINT_FIELDS = (
    "model_key", "model_id", "revision", "weights_hash", "tokenizer_hash", "add_special_tokens", "layers",
    "pooling", "compute_dtype", "storage_dtype", "max_length", "inputs_hash", "code_hash", "manifest_version",
)
# The fields of one trace's cache key besides its text and spans (no layer: one entry per layer).
IDENTITY_FIELDS = ("model_id", "revision", "weights_hash", "tokenizer_hash", "add_special_tokens", "pooling",
                   "compute_dtype", "code_hash")

_PACKAGE = Path(__file__).resolve().parent
# The modules whose code decides the numbers of an activation row: tokenization and span mapping,
# the hooked forward pass, pooling, how the model is loaded (base model, dtype) and the dtype rule.
# Not batching.py (sequence grouping changes float rounding only), nor the storage modules (how rows
# are stored enters as the ``storage_dtype`` field and ``MANIFEST_VERSION``).
EXTRACTION_SOURCES: tuple[Path, ...] = tuple(
    _PACKAGE / name for name in ("extractor.py", "pooling.py", "pooling_names.py", "spans.py", "loading.py",
                                 "device.py"))
# Libraries whose version changes the kernels (and so the numbers) of the forward pass.
EXTRACTION_LIBRARIES = ("torch", "transformers")


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


def _library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def extraction_code_hash(sources: Sequence[str | os.PathLike[str]] | None = None) -> str:
    """Hash of the extraction source files (``EXTRACTION_SOURCES``) and the torch/transformers versions.

    Read from the files on every call (a few tens of kB), so an edit made in this process, committed
    or not, is seen at once. A missing source file is an error naming it, never a silent hash.
    """
    files = [Path(p) for p in (EXTRACTION_SOURCES if sources is None else sources)]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"extraction source file(s) to hash are missing: {missing}")
    return stable_json_hash({"sources": {p.name: sha256_file(p) for p in files},
                             "libraries": {name: _library_version(name) for name in EXTRACTION_LIBRARIES}})


def _spans_payload(char_spans: Iterable[Sequence[int]], token_positions: Iterable[int] | None) -> dict[str, Any]:
    """What selects a trace's rows: character spans, or (token-level studies) token positions."""
    payload: dict[str, Any] = {"spans": [[int(a), int(b)] for a, b in char_spans]}
    if token_positions is not None:
        payload["token_positions"] = [int(p) for p in token_positions]
    return payload


def trace_hash(key: str, text: str, char_spans: Iterable[Sequence[int]], chunk_ids: Iterable[int],
               meta: Mapping[str, Any] | None = None, token_positions: Iterable[int] | None = None) -> str:
    """Hash of one trace's row-index inputs: key, text, spans (or token positions), chunk ids and metadata."""
    return stable_json_hash({"key": key, "text_sha256": sha256_bytes(text.encode("utf-8")),
                             **_spans_payload(char_spans, token_positions),
                             "chunks": [int(c) for c in chunk_ids], "meta": dict(meta or {})})


def inputs_hash(trace_hashes: Sequence[str]) -> str:
    """Hash of the whole span table as seen by the extractor (trace order matters: it is row order)."""
    return stable_json_hash(list(trace_hashes))


def identity_hash(provenance: Mapping[str, Any]) -> str:
    """Hash of ``IDENTITY_FIELDS`` of a provenance record: everything but the inputs that decides a row."""
    missing = [name for name in IDENTITY_FIELDS if name not in provenance]
    if missing:
        raise KeyError(f"provenance lacks {missing}")
    return stable_json_hash({name: provenance[name] for name in IDENTITY_FIELDS})


def trace_cache_key(identity: str, text: str, char_spans: Iterable[Sequence[int]],
                    token_positions: Iterable[int] | None = None) -> str:
    """Content key of one trace's pooled rows: the activation identity + exact text + character spans.

    The trace key, chunk ids and metadata are left out on purpose: they name rows, they do not
    change a number, so a renamed or re-labelled trace reuses its activations.
    """
    return stable_json_hash({"identity": identity, "text_sha256": sha256_bytes(text.encode("utf-8")),
                             **_spans_payload(char_spans, token_positions)})


def build_provenance(*, model_key: str, model_id: str, revision: str, weights_hash: str, tokenizer_hash: str,
                     layers: Sequence[int], pooling: str, compute_dtype: str, max_length: int | None,
                     inputs_hash: str, code_hash: str, add_special_tokens: bool = True,
                     storage_dtype: str = "float32") -> dict[str, Any]:
    """The provenance record of one extraction run (all layers); see ``layer_provenance`` for one partition."""
    if storage_dtype not in STORAGE_DTYPES:  # float16 would overflow on Qwen2 outliers (storage_dtypes.py)
        raise ValueError(f"storage dtype {storage_dtype!r} refused: store float32 or bfloat16, never float16")
    return {
        "manifest_version": MANIFEST_VERSION, "model_key": model_key, "model_id": model_id, "revision": revision,
        "weights_hash": weights_hash, "tokenizer_hash": tokenizer_hash, "add_special_tokens": bool(add_special_tokens),
        "layers": sorted(int(x) for x in layers), "pooling": pooling, "compute_dtype": compute_dtype,
        "storage_dtype": storage_dtype, "max_length": max_length, "inputs_hash": inputs_hash, "code_hash": code_hash,
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
