"""The thought-anchor scaling summary: which seed results count, the cells, and the report files.

Plain Python (no Dagster): ``defs/probes/summary.py`` builds the summary, and the release gate
(``defs/gate/checks.py``) re-stamps the same report with its final verdict, so the two share this.

Which seeds count: only seed folders made under the current probe config (``config_hash``), on
the activations stored now (their recorded fingerprints equal the partitions' manifests) AND against
the labels stored now (their recorded labels provenance equals the labels file's, code version
aside: a new anchor percentile relabels sentences, and a seed trained on the old labels must not be
scored against the new ones). Any other seed is listed as excluded, with the reason, in the report:
never silently averaged in.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ta_platform.common.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ta_platform.common.parquet_io import read_provenance
from ta_platform.common.paths import storage_path
from ta_platform.probing.report import markdown_report, matrix_png
from ta_platform.probing.selection import probe_cells
from ta_platform.store import artifacts
from ta_platform.studies.anchor_probes import verify_seed_folder

REPORT_NAME = "scaling_summary"


@dataclass
class SeedResults:
    """The predictions and validation choices of the seeds that count, and what was left out."""

    predictions: pd.DataFrame
    selection: pd.DataFrame
    seeds: list[int] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def labels_identity(provenance: dict) -> dict:
    """What identifies a labels artifact: its provenance without the code version (a code change that
    leaves the label config and the snapshot alone makes the same labels)."""
    return {key: value for key, value in (provenance or {}).items() if key != "code_version"}


def labels_difference(recorded: dict, current: dict) -> str:
    """The labels provenance fields that differ, e.g. ``label_config.percentile 90.0 -> 80.0``; '' if none."""
    def flat(record: dict, prefix: str = "") -> dict:
        items = {}
        for key, value in labels_identity(record).items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    before, after = flat(recorded), flat(current)
    return ", ".join(f"{key} {before.get(key, 'unrecorded')} -> {after.get(key, 'absent')}"
                     for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key))


def stale_labels_reason(seed, provenance: dict, current_labels: dict) -> str | None:
    """Why a seed folder was trained on other labels than the current ones (None: the same labels)."""
    difference = labels_difference(provenance.get("labels", {}), current_labels)
    return f"seed {seed}: trained on other labels ({difference})" if difference else None


def load_current_seeds(out_dir: Path, config_hash: str, fingerprints: dict[str, str],
                       labels: pd.DataFrame, labels_provenance: dict | None = None) -> SeedResults:
    """Seed folders of this config on these activations and these labels, predictions joined to their
    labels by key. ``labels_provenance``: the current labels file's (read from the store when None)."""
    if labels_provenance is None:
        labels_provenance = read_provenance(artifacts.thought_anchor_file(artifacts.LABELS))
    predictions, selection, seeds, excluded = [], [], [], []
    for path in sorted(out_dir.glob("seed_*/provenance.json")):
        provenance = verify_seed_folder(path)  # a corrupt artifact is named, never scored
        seed = provenance.get("seed")
        if provenance.get("config_hash") != config_hash:
            excluded.append(f"seed {seed}: probe config {provenance.get('config_hash', 'unrecorded')} "
                            f"is not the current {config_hash}")
            continue
        stale = sorted(part for part, fp in provenance.get("activation_fingerprints", {}).items()
                       if fingerprints.get(part) != fp)
        if stale:
            excluded.append(f"seed {seed}: trained on activations since replaced ({', '.join(stale)})")
            continue
        other_labels = stale_labels_reason(seed, provenance, labels_provenance)
        if other_labels:
            excluded.append(other_labels)
            continue
        predictions.append(pd.read_parquet(path.parent / "predictions.parquet").assign(seed=int(seed)))
        selection.append(pd.read_parquet(path.parent / "selection.parquet"))
        seeds.append(int(seed))
    if not predictions:
        return SeedResults(pd.DataFrame(), pd.DataFrame(), [], excluded)
    joined = pd.concat(predictions, ignore_index=True).merge(
        labels[["trace_key", "chunk_idx", "anchor"]].rename(columns={"anchor": "label"}),
        on=["trace_key", "chunk_idx"], how="left", validate="many_to_one")
    if joined["label"].isna().any():
        missing = joined.loc[joined["label"].isna(), "trace_key"].unique()[:5].tolist()
        raise ValueError(f"probe predictions name sentences the labels file lacks (e.g. {missing}): "
                         "re-materialise probes after sentence_labels")
    return SeedResults(joined, pd.concat(selection, ignore_index=True), seeds, excluded)


def summary_cells(results: SeedResults, tripwire_status: pd.DataFrame, *, n_resamples: int,
                  config_hash: str) -> pd.DataFrame:
    """The cells (``selection.probe_cells``) with each cell's tripwire status and config hash."""
    cells = probe_cells(results.predictions, results.selection, n_resamples=n_resamples)
    status = tripwire_status[["model_key", "setting", "tripwire_status"]] if len(tripwire_status) else \
        pd.DataFrame(columns=["model_key", "setting", "tripwire_status"])
    cells = cells.merge(status, on=["model_key", "setting"], how="left")
    cells["tripwire_status"] = cells["tripwire_status"].fillna("not evaluated")
    return cells.assign(config_hash=config_hash)


def averaged_text(results: SeedResults, config_hash: str) -> str:
    text = f"seeds {', '.join(map(str, results.seeds)) or 'none'} of probe config {config_hash}"
    return text + (f"; excluded: {'; '.join(results.excluded)}" if results.excluded else "; nothing excluded")


def gate_line(verdict, n_checks: int, *, pending: bool = False) -> str:
    """One line for the report: PASS / FAIL with the failing and missing checks, or PENDING."""
    problems = [*verdict.failing, *verdict.missing]
    if pending:
        so_far = f"; failing so far: {', '.join(verdict.failing)}" if verdict.failing else ""
        return f"PENDING: NOT RELEASED until the release gate passes{so_far}"
    if verdict.passed:
        return f"PASS ({n_checks} checks; {len(verdict.warnings)} warning(s))"
    return f"FAIL, NOT RELEASED: {'; '.join(problems[:12])}{' ...' if len(problems) > 12 else ''}"


def write_reports(cells: pd.DataFrame, gate: str, averaged: str, run_id: str) -> tuple[str, bytes]:
    """``storage/reports/scaling_summary.{md,png,json}``, each written atomically; returns (md, png)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report = markdown_report(cells, gate, generated=f"{stamp} by run {run_id}", averaged=averaged)
    png = matrix_png(cells, gate)
    atomic_write_text(storage_path("reports", f"{REPORT_NAME}.md"), report)
    atomic_write_bytes(storage_path("reports", f"{REPORT_NAME}.png"), png)
    atomic_write_json(storage_path("reports", f"{REPORT_NAME}.json"),
                      {"gate": gate, "averaged": averaged, "run_id": run_id,
                       "cells": json.loads(cells.to_json(orient="records"))})
    return report, png


def restamp_reports(gate: str, run_id: str) -> tuple[str, bytes] | None:
    """Rewrite the last summary's reports with the release gate's final verdict (None: no summary yet)."""
    path = storage_path("reports", f"{REPORT_NAME}.json")
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    cells = pd.DataFrame(stored["cells"])
    return write_reports(cells, gate, stored["averaged"], f"{stored['run_id']} (gate: run {run_id})")
