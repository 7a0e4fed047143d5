"""Train and evaluate every probe on every slice for one seed; tripwires once per slice.

Outputs per seed under ``<root>/seed_<s>/``: predictions (Parquet), linear probe weights (NPZ) and
a provenance JSON (probe config, activation manifests, labels provenance, code version), all written
atomically; the long metric and margin rows are returned for DuckDB.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ta_platform.anchors.invariants import labels_match_importance
from ta_platform.anchors.labels import AnchorLabelConfig
from ta_platform.common.atomic import atomic_write_bytes, atomic_write_json
from ta_platform.common.hashing import code_version, stable_json_hash
from ta_platform.common.parquet_io import write_parquet
from ta_platform.common.threads import single_blas_thread
from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.suite import run_probe_suite
from ta_platform.probing.tripwires import run_tripwires, split_leakage
from ta_platform.studies.activation_slices import ProbeSlice

Log = Callable[[str], None]


def _with_scope(frame: pd.DataFrame, probe_slice: ProbeSlice) -> pd.DataFrame:
    return frame.assign(**probe_slice.scope)


def _weights_npz(weights: dict[str, dict[str, np.ndarray]]) -> bytes:
    buffer = io.BytesIO()
    flat = {f"{probe}/{name}": np.asarray(array) for probe, arrays in weights.items() for name, array in arrays.items()}
    np.savez(buffer, **flat)
    return buffer.getvalue()


def run_seed(seed: int, slices: Iterable[ProbeSlice], config: ProbeConfig, out_dir: Path,
             labels_provenance: dict, log: Log = print) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """All probes on all slices for one seed. Returns (metric rows, margin rows, provenance)."""
    with single_blas_thread():
        return _run_seed(seed, slices, config, out_dir, labels_provenance, log)


def _run_seed(seed, slices, config, out_dir, labels_provenance, log):
    metrics, margins, predictions, manifests = [], [], [], {}
    weights: dict[str, dict[str, np.ndarray]] = {}
    started = time.monotonic()
    n_slices = 0
    for probe_slice in slices:
        slice_started = time.monotonic()
        result = run_probe_suite(probe_slice.frame, probe_slice.X, seed, config)
        metrics.append(_with_scope(result.metrics, probe_slice))
        margins.append(_with_scope(result.margins, probe_slice))
        predictions.append(_with_scope(result.predictions, probe_slice))
        name = f"{probe_slice.model_key}/{probe_slice.layer_key}/{probe_slice.setting}"
        weights.update({f"{name}/{probe}": arrays for probe, arrays in result.weights.items()})
        manifests[f"{probe_slice.model_key}/{probe_slice.layer_key}"] = probe_slice.manifest.get("fingerprint", "")
        n_slices += 1
        rate = len(probe_slice.frame) / max(time.monotonic() - slice_started, 1e-9)
        log(f"seed {seed}: {name} ({len(probe_slice.frame)} sentences, {rate:.0f} sentences/s); "
            f"linear PR-AUC {result.metric('linear_probe', 'pr_auc'):.3f} vs position "
            f"{result.metric('position_baseline', 'pr_auc'):.3f}")
    if not n_slices:
        raise ValueError("no activation partitions to train on: materialise sentence_activations first")
    provenance = {"seed": seed, "probe_config": config.as_dict(), "activation_fingerprints": manifests,
                  "labels": labels_provenance, "code_version": code_version()}
    seed_dir = out_dir / f"seed_{seed}"
    write_parquet(pd.concat(predictions, ignore_index=True), seed_dir / "predictions.parquet", provenance)
    atomic_write_bytes(seed_dir / "weights.npz", _weights_npz(weights))
    atomic_write_json(seed_dir / "provenance.json", provenance)
    log(f"seed {seed}: {n_slices} slices in {time.monotonic() - started:.1f}s")
    return pd.concat(metrics, ignore_index=True), pd.concat(margins, ignore_index=True), provenance


TRIPWIRE_COLUMNS = ["tripwire", "model_key", "layer_key", "setting", "passed", "reason_code", "detail", "metrics"]


def run_slice_tripwires(slices: Iterable[ProbeSlice], config: ProbeConfig, seed: int = 0,
                        log: Log = print, labels: pd.DataFrame | None = None,
                        label_config: AnchorLabelConfig | None = None) -> pd.DataFrame:
    """Every tripwire on every slice, all reported (one failure never hides another).

    ``labels`` (all settings together) adds dataset-wide rows: split leakage (a slice holds one
    setting only, so it cannot see a problem whose correct and incorrect traces sit in two splits)
    and, with ``label_config``, labels recomputed from importance (shuffled or stale labels).
    """
    with single_blas_thread():
        rows = [row for probe_slice in slices for row in _slice_tripwire_rows(probe_slice, config, seed, log)]
    if labels is not None:
        leak = split_leakage(labels)
        rows.append(_tripwire_row(leak.name, leak.passed, leak.reason_code, leak.detail, leak.metrics, DATASET_SCOPE))
    if labels is not None and label_config is not None:
        consistent = labels_match_importance(labels, label_config)
        rows.append(_tripwire_row("labels_consistent", consistent.passed,
                                  "ok" if consistent.passed else "labels_inconsistent",
                                  f"{consistent.summary}: {consistent.offenders[:10]}", {}, DATASET_SCOPE))
    return pd.DataFrame(rows, columns=TRIPWIRE_COLUMNS)


DATASET_SCOPE = {"model_key": "all", "layer_key": "all", "setting": "all"}


def _tripwire_row(name: str, passed: bool, reason: str, detail: str, metrics: dict, scope: dict) -> dict:
    """One ``tripwire_results`` row (TRIPWIRE_COLUMNS) for a slice or the whole dataset."""
    return {"tripwire": name, **scope, "passed": bool(passed), "reason_code": reason, "detail": detail,
            "metrics": json.dumps(metrics, default=float, sort_keys=True)}


def _slice_tripwire_rows(probe_slice: ProbeSlice, config: ProbeConfig, seed: int, log: Log) -> list[dict]:
    results = run_tripwires(probe_slice.frame, probe_slice.X, seed, config, index=probe_slice.index)
    failed = [f"{r.name}:{r.reason_code}" for r in results if not r.passed]
    log(f"tripwires {probe_slice.model_key}/{probe_slice.layer_key}/{probe_slice.setting}: "
        f"{len(results) - len(failed)}/{len(results)} pass {failed or ''}")
    return [_tripwire_row(r.name, r.passed, r.reason_code, r.detail, r.metrics, probe_slice.scope) for r in results]


def seed_data_version(provenance: dict) -> str:
    return stable_json_hash({k: v for k, v in provenance.items() if k != "code_version"})
