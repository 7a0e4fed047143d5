"""Resources shared by every domain: the metadata store, the rollouts source, study settings."""

from __future__ import annotations

import os

import dagster as dg
import pandas as pd

from ta_platform.anchors.labels import AnchorLabelConfig
from ta_platform.common.faults import FaultRecord
from ta_platform.store.metadata_store import MetadataStore


class MetadataStoreResource(dg.ConfigurableResource):
    """The project's DuckDB file (``storage/metadata.duckdb`` unless ``db_path`` or TA_DUCKDB_PATH)."""

    db_path: str = ""

    def store(self) -> MetadataStore:
        """The store; each table an asset writes through it lands in that asset's metadata as
        ``dagster/row_count`` and ``dagster/column_schema`` (``defs/summary_metadata.py``)."""
        from ta_platform.defs.summary_metadata import RecordingMetadataStore

        return RecordingMetadataStore(self.db_path or None)

    def record_faults(self, stage: str, faults: list[FaultRecord]) -> None:
        """Replace this stage's fault rows: what is skipped is always visible in DuckDB."""
        frame = pd.DataFrame([f.as_row() for f in faults], columns=["stage", "item", "path", "kind", "problem"])
        if frame.empty:
            frame = pd.DataFrame({c: pd.Series(dtype=str) for c in ["stage", "item", "path", "kind", "problem"]})
        self.store().replace_slice("faults", frame, {"stage": stage})


class RolloutsResource(dg.ConfigurableResource):
    """Which rollouts to read. ``source``: "embedded", a local folder in the Hub layout, or
    ``hf://<repo_id>[@revision]``; empty means the TA_DATA_SOURCE environment variable (default
    "embedded"), the one switch that points the whole pipeline at another dataset."""

    source: str = ""
    models: list[str] = []
    splits: list[str] = ["correct_base_solution", "incorrect_base_solution"]
    problem_ids: list[str] = []
    max_problems: int = 0

    def source_spec(self) -> str:
        return self.source or os.environ.get("TA_DATA_SOURCE", "") or "embedded"

    def problem_limit(self) -> int:
        """``max_problems``, else ``$TA_MAX_PROBLEMS`` (what ``materialize --pilot N`` sets); 0 = all."""
        return self.max_problems or int(os.environ.get("TA_MAX_PROBLEMS", "0") or 0)

    def load(self):
        from ta_platform.rollouts.sources import load_traces, source_from_spec

        source = source_from_spec(self.source_spec())
        wanted = self.problem_ids or "all"
        limit = self.problem_limit()
        if limit > 0:  # the first N problems by id: a pilot sees every model and split of those problems
            refs = source.list_traces(models=self.models or None, splits=self.splits, problem_ids=wanted)
            wanted = sorted({ref.problem_id for ref in refs})[:limit]
        return source, *load_traces(source, models=self.models or None, splits=self.splits, problem_ids=wanted)


class StudySettings(dg.ConfigurableResource):
    """Anchor label definition, problem split and the invariant bands; all stored as provenance."""

    anchor_score: str = "abs"
    anchor_percentile: float = 90.0
    drop_last_chunk: bool = True
    zero_threshold: float = 1e-9
    split_seed: int = 0
    split_fractions: list[float] = [0.7, 0.15, 0.15]
    prevalence_low: float = 0.03
    prevalence_high: float = 0.25

    def label_config(self) -> AnchorLabelConfig:
        return AnchorLabelConfig(
            score=self.anchor_score, percentile=self.anchor_percentile,
            drop_last_chunk=self.drop_last_chunk, zero_threshold=self.zero_threshold,
        )
