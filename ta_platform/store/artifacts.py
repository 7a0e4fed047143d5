"""Where the thought-anchor tables are written under the storage root (Parquet beside DuckDB).

DuckDB holds the queryable metadata; the Parquet copies are what downstream Python reads, so a
long extraction never holds the DuckDB lock while it works.
"""

from __future__ import annotations

from pathlib import Path

from ta_platform.common.paths import storage_dir, storage_path


def thought_anchor_file(name: str) -> Path:
    return storage_path("thought_anchors", name)


SNAPSHOT = "traces.parquet"
LABELS = "sentence_labels.parquet"
CHAR_SPANS = "sentence_spans.parquet"
TOKEN_SPANS = "token_spans.parquet"


def activations_root() -> Path:
    """Sentence activations: ``<storage>/activations/<model>/L<i>/`` plus each model's per-trace cache."""
    return storage_dir("activations")


def prompt_root() -> Path:
    """Prompt (last-token) activations of the preference study, laid out like ``activations_root()``."""
    return storage_dir("prompt_activations")


def pref_file(name: str) -> Path:
    """A preference-study artifact (task pool, outcomes, utilities) under ``<storage>/preferences``."""
    return storage_path("preferences", name)


def needle_path(*parts: str) -> Path:
    """A needle-study artifact (dataset, token labels, activations, probes, run records) under ``<storage>/needle``."""
    return storage_path("needle", *parts)
