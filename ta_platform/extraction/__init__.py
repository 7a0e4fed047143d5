"""Activation extraction: model registry, tiny offline models, device/dtype choice, token spans,
batched multi-layer extraction in one forward pass, resumable partition writer, provenance, checks.

Importing this package is cheap (no torch); the names below are loaded on first use, so
``from ta_platform.extraction import extract_sentence_embeddings`` works anywhere.
Modules safe to import at Dagster definition time (torch-free): ``registry``, ``config``,
``provenance``, ``store``, ``checks``, ``spans``, ``batching``, ``device``, ``resumable``, ``loading``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TraceInput": "extractor", "ExtractionResult": "extractor", "extract_sentence_embeddings": "extractor",
    "naive_sentence_embeddings": "naive",
    "tokenize_with_offsets": "spans", "char_spans_to_token_spans": "spans",
    "select_device": "device", "select_dtype_name": "device",
    "ModelSpec": "registry", "load_registry": "registry", "get_model_spec": "registry", "resolve_layer": "registry",
    "resolve_layers": "registry", "layer_key": "registry", "UnknownModelError": "registry",
    "ExtractionConfig": "config",
    "LoadedModel": "loading", "load_model": "loading",
    "build_provenance": "provenance", "provenance_fingerprint": "provenance",
    "write_partition": "store", "load_partition": "store", "Partition": "store",
    "extract_to_partitions": "resumable", "RunSummary": "resumable",
    "ensure_tiny_model": "tiny_models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
