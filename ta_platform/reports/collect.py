"""What goes into ``storage/reports/index.html``: each study's tables (metadata store, or the study's own
parquet), its figures (the PNGs its stages write under ``storage/reports/``) and the provenance.

Why a table of sources here rather than in each study: the page is read from the stores after the runs,
so it needs no Dagster and no study code; a new study adds one ``SOURCES`` entry (docs/new_study.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ta_platform.common.atomic import atomic_write_text
from ta_platform.common.hashing import code_version
from ta_platform.common.parquet_io import read_provenance
from ta_platform.reports.html import GateView, Section, render_report
from ta_platform.store.metadata_store import MetadataStore

REPORT_NAME = "index.html"


@dataclass(frozen=True)
class StudySource:
    """Where a study's results live: metadata-store tables, parquet files under the storage, PNG globs."""

    title: str
    tables: Sequence[tuple[str, str]] = ()  # (caption, table name)
    files: Sequence[tuple[str, str]] = ()  # (caption, path relative to the storage root)
    images: Sequence[str] = ()  # globs under storage/reports/
    drop: Sequence[str] = ("gate",)  # columns not shown (the verdict is the gate's, shown above)


SOURCES: dict[str, StudySource] = {
    "anchors": StudySource("Thought anchors", tables=[("Scaling summary (chosen on validation, test margins)",
                                                       "scaling_summary")], images=["scaling_summary.png"]),
    "preferences": StudySource("Preferences (Thurstonian utilities and utility probes)",
                               tables=[("Utility fits (held-out pairs)", "thurstonian_fit_summary"),
                                       ("Utility probes vs content baseline", "preference_summary")],
                               images=["preference_summary.png"]),
    "backtracking": StudySource("Backtracking lag probes",
                                tables=[("Margins over every baseline (seed-averaged, chain-problem intervals)",
                                         "backtracking_margin_summary")],
                                images=["backtracking_*.png"]),
    "needle": StudySource("Needle token probes", tables=[("Needle summary", "needle_summary")],
                          images=["needle_summary.png"]),
    "ood": StudySource("OOD system prompts", tables=[("Probe vs behavioural deltas", "ood_results")],
                       images=["ood_scatter.png"]),
    "function_tags": StudySource("Function tags (sentence roles)",
                                 files=[("Probe vs position and text baselines", "function_tags/summary.parquet")]),
}


def collect_sections(studies: Sequence[str], store: MetadataStore, storage: Path,
                     gates: dict[str, GateView] | None = None) -> list[Section]:
    """One section per study, in order; a study without results gets an empty section that says so."""
    sections = []
    for key in studies:
        source = SOURCES.get(key, StudySource(key))
        tables = [(caption, store.read_table(name)) for caption, name in source.tables]
        tables += [(caption, pd.read_parquet(storage / rel)) for caption, rel in source.files if (storage / rel).exists()]
        tables = [(caption, frame.drop(columns=[c for c in source.drop if c in frame])) for caption, frame in tables
                  if len(frame)]
        images = [(path.stem, path.read_bytes()) for pattern in source.images
                  for path in sorted((storage / "reports").glob(pattern))]
        sections.append(Section(key, source.title, (gates or {}).get(key), tables, images))
    return sections


def collect_provenance(store: MetadataStore, storage: Path, models: pd.DataFrame) -> dict[str, object]:
    """Data source, models and revisions, config hashes, code version, seeds averaged."""
    def distinct(table: str, column: str) -> list[str]:
        frame = store.read_table(table)
        return sorted(frame[column].dropna().astype(str).unique()) if column in frame else []

    scaling = storage / "reports" / "scaling_summary.json"
    function_tags = storage / "function_tags" / "summary.parquet"
    traces = store.read_table("problem_index")
    return {
        "data source": [f"{source} ({count} traces)" for source, count in
                        traces.groupby("source").size().items()] if "source" in traces else [],
        "models": models,
        "probe config hashes": distinct("probe_metrics", "config_hash"),
        "seeds averaged (thought anchors)": json.loads(scaling.read_text()).get("averaged", "") if scaling.exists() else "",
        "function tags": _provenance_line(function_tags, ("tag", "settings")),
        "code version (report)": code_version(),
    }


def _provenance_line(path: Path, keys: Sequence[str]) -> str:
    if not path.exists():
        return ""
    stored = read_provenance(path)
    return "; ".join(f"{k}={stored.get(k)}" for k in keys)


def write_report(storage: Path, gate: GateView, sections: list[Section], provenance: dict[str, object]) -> Path:
    """Render and write ``<storage>/reports/index.html`` atomically (temp name + rename)."""
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return atomic_write_text(storage / "reports" / REPORT_NAME, render_report(gate, sections, provenance, generated))
