"""Train and evaluate every probe on every slice for one seed; tripwires once per slice.

Outputs per seed under ``<root>/seed_<s>/``: predictions (Parquet), linear probe weights (NPZ) and
a provenance JSON (probe config, activation manifests, labels provenance, code version), all written
atomically; the long metric and margin rows are returned for DuckDB.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ta_platform.anchors.invariants import labels_match_recomputed
from ta_platform.common.atomic import atomic_write_bytes, atomic_write_json
from ta_platform.common.hashing import code_version, sha256_file, stable_json_hash
from ta_platform.common.parquet_io import write_parquet
from ta_platform.common.threads import single_blas_thread
from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.suite import (
    TooFewProblems,
    check_enough_problems,
    dataset_assignment,
    evaluation_scheme,
    run_probe_suite_seeds,
)
from ta_platform.probing.tripwires import run_tripwires
from ta_platform.studies.activation_slices import ProbeSlice

Log = Callable[[str], None]
LAYER_FREE_PROBES = ("position_baseline", "text_baseline")  # they read no activations


def _with_scope(frame: pd.DataFrame, probe_slice: ProbeSlice) -> pd.DataFrame:
    return frame.assign(**probe_slice.scope)


def _weights_npz(weights: dict[str, dict[str, np.ndarray]]) -> bytes:
    buffer = io.BytesIO()
    flat = {f"{probe}/{name}": np.asarray(array) for probe, arrays in weights.items() for name, array in arrays.items()}
    np.savez(buffer, **flat)
    return buffer.getvalue()


def config_hash(config: ProbeConfig) -> str:
    """What keys every probe artifact and metric row: results of another config are never mixed in."""
    return stable_json_hash(config.as_dict())[:16]


def seed_folder(out_dir: Path, seed: int) -> Path:
    return out_dir / f"seed_{seed}"


def run_seed(seed: int, slices: Iterable[ProbeSlice], config: ProbeConfig, out_dir: Path,
             labels_provenance: dict, problem_ids: Iterable[str], log: Log = print) -> tuple[pd.DataFrame, dict]:
    """All probes on all slices for one seed: ``run_seeds`` of one seed. Returns (metric rows, provenance)."""
    return run_seeds([seed], slices, config, out_dir, labels_provenance, problem_ids, log)[seed]


def run_seeds(seeds: Iterable[int], slices: Iterable[ProbeSlice], config: ProbeConfig, out_dir: Path,
              labels_provenance: dict, problem_ids: Iterable[str], log: Log = print) -> dict[int, tuple[pd.DataFrame, dict]]:
    """All probes on all slices for each seed: seed -> (metric rows, provenance).

    One split (or one set of folds) per seed for the whole dataset (``problem_ids``: every labelled
    problem), so a problem sits in the same split in every model, layer and setting; it is recorded
    with the predictions (``split``/``fold`` per row, and ``split.json``), which is what the
    split-leakage check reads. Each slice is read once for all seeds, and the engine probes of every
    seed are heads of one engine call per slice (``run_probe_suite_seeds``): at the anchors paper's
    scale (20 seeds) that is one pass over the activations per iteration instead of twenty. Fewer than
    ``MIN_PROBLEMS`` labelled problems stop here, before any fit, with a message naming the minimum.
    """
    problem_ids = sorted({str(pid) for pid in problem_ids})
    check_enough_problems(len(problem_ids), "the labelled dataset")
    assignments = {int(seed): dataset_assignment(problem_ids, int(seed), config) for seed in seeds}
    with single_blas_thread():
        return _run_seeds(assignments, slices, config, out_dir, labels_provenance, log)


def _baselines_of(result, rows: pd.DataFrame) -> tuple[pd.DataFrame, ...] | None:
    """The baselines' metric, prediction and selection rows of a suite run, if they are for ``rows``."""
    frames = (result.metrics, result.predictions, result.selection)
    return tuple(frame[frame["probe"].isin(LAYER_FREE_PROBES)] for frame in frames) + (rows,)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return len(a) == len(b) and bool((a[["trace_key", "chunk_idx"]].to_numpy() == b[["trace_key", "chunk_idx"]]
                                      .to_numpy()).all())


def _run_suites(probe_slice: ProbeSlice, config: ProbeConfig, assignments: dict[int, dict[str, str]]):
    """``run_probe_suite_seeds`` on one slice; a slice with too few problems is named in the error."""
    try:
        return run_probe_suite_seeds(probe_slice.frame, probe_slice.X, assignments, config)
    except TooFewProblems as error:
        where = f"{probe_slice.model_key}/{probe_slice.layer_key}/{probe_slice.setting}"
        raise TooFewProblems(f"slice {where}: {error}") from None


def _with_reused_baselines(result, reused: tuple):
    return replace(result, **{
        name: pd.concat([base, own], ignore_index=True)
        for name, base, own in zip(("metrics", "predictions", "selection"), reused[:3],
                                   (result.metrics, result.predictions, result.selection), strict=True)})


def _run_seeds(assignments, slices, config, out_dir, labels_provenance, log):
    outputs = {seed: {"metrics": [], "predictions": [], "selection": [], "weights": {}} for seed in assignments}
    manifests: dict[str, str] = {}
    started = time.monotonic()
    n_slices = 0
    # The baselines read no activations: fitted on the first layer of a (model, setting), reused for its
    # other layers when they hold the same rows (the same traces, one extraction pass), not refitted.
    baselines: dict[tuple[str, str], dict[int, tuple]] = {}
    activation_only = replace(config, probes=tuple(p for p in config.probes if p not in LAYER_FREE_PROBES))
    for probe_slice in slices:
        slice_started = time.monotonic()
        key = (probe_slice.model_key, probe_slice.setting)
        reused = baselines.get(key)
        if reused is not None and activation_only.probes and _same_rows(next(iter(reused.values()))[3],
                                                                         probe_slice.frame):
            results = {seed: _with_reused_baselines(result, reused[seed])
                       for seed, result in _run_suites(probe_slice, activation_only, assignments).items()}
        else:
            results = _run_suites(probe_slice, config, assignments)
            baselines[key] = {seed: _baselines_of(result, probe_slice.frame) for seed, result in results.items()}
        name = f"{probe_slice.model_key}/{probe_slice.layer_key}/{probe_slice.setting}"
        for seed, result in results.items():
            out = outputs[seed]
            out["metrics"].append(_with_scope(result.metrics, probe_slice))
            out["predictions"].append(_with_scope(result.predictions, probe_slice))
            out["selection"].append(_with_scope(result.selection, probe_slice))
            out["weights"].update({f"{name}/{probe}": arrays for probe, arrays in result.weights.items()})
        manifests[f"{probe_slice.model_key}/{probe_slice.layer_key}"] = probe_slice.manifest.get("fingerprint", "")
        n_slices += 1
        rate = len(probe_slice.frame) * len(results) / max(time.monotonic() - slice_started, 1e-9)
        for seed, result in results.items():
            log(f"seed {seed}: {name} ({len(probe_slice.frame)} sentences, "
                f"{evaluation_scheme(probe_slice.frame, config)}); linear PR-AUC "
                f"{result.metric('linear_probe', 'pr_auc'):.3f} vs position "
                f"{result.metric('position_baseline', 'pr_auc'):.3f}")
        log(f"{name}: {len(results)} seed(s) in {time.monotonic() - slice_started:.1f}s "
            f"({rate:.0f} sentence-seeds/s)")
    if not n_slices:
        raise ValueError("no activation partitions to train on: materialise sentence_activations first")
    done = {seed: _write_seed_folder(seed, outputs[seed], assignment, config, manifests, labels_provenance, out_dir)
            for seed, assignment in assignments.items()}
    log(f"seeds {sorted(done)}: {n_slices} slices in {time.monotonic() - started:.1f}s")
    return done


def _write_seed_folder(seed, out, assignment, config, manifests, labels_provenance, out_dir):
    """Write one seed's predictions, selection, split and weights, provenance last; (metrics, provenance)."""
    provenance = {"seed": seed, "config_hash": config_hash(config), "probe_config": config.as_dict(),
                  "scheme": config.scheme_for(len(assignment)), "activation_fingerprints": dict(manifests),
                  "labels": labels_provenance, "code_version": code_version()}
    folder = seed_folder(out_dir, seed)
    write_parquet(pd.concat(out["predictions"], ignore_index=True), folder / "predictions.parquet", provenance)
    write_parquet(pd.concat(out["selection"], ignore_index=True), folder / "selection.parquet", provenance)
    atomic_write_json(folder / "split.json", assignment)
    atomic_write_bytes(folder / "weights.npz", _weights_npz(out["weights"]))
    # the sha256 of every file of the folder: a truncated or bit-flipped one is named and never used
    provenance = {**provenance, "files": {name: sha256_file(folder / name) for name in SEED_FILES}}
    atomic_write_json(folder / "provenance.json", provenance)  # last: a seed folder is complete when this exists
    return pd.concat(out["metrics"], ignore_index=True).assign(config_hash=provenance["config_hash"]), provenance


SEED_FILES = ("predictions.parquet", "selection.parquet", "split.json", "weights.npz")


def verify_seed_folder(provenance_path: Path) -> dict:
    """The seed folder's provenance after checking each file against the sha256 it records.

    Raises ``ValueError`` naming the bad file and how to recover: a probe artifact that no longer
    matches what was written (truncated copy, bit flip, a hand edit) must never be scored.
    """
    provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
    seed = provenance.get("seed")
    for name, expected in provenance.get("files", {}).items():
        path = provenance_path.parent / name
        found = sha256_file(path) if path.is_file() else "missing"
        if found != expected:
            raise ValueError(f"{path}: {'missing' if found == 'missing' else 'does not match the sha256 recorded in'} "
                             f"{provenance_path.name} (truncated or corrupted); re-materialise this seed: "
                             f"ta-platform materialize --stage probes --seeds {seed}...{seed}")
    return provenance


TRIPWIRE_COLUMNS = ["tripwire", "model_key", "layer_key", "setting", "passed", "reason_code", "detail", "metrics"]


def run_slice_tripwires(slices: Iterable[ProbeSlice], config: ProbeConfig, seed: int = 0, log: Log = print,
                        expected_sha1: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every slice tripwire on every slice, all reported (one failure never hides another).

    ``expected_sha1`` (``trace_key, chunk_idx, text_sha1`` from the stored texts and spans) lets
    ``misaligned_rows`` compare each row's sentence with the text its activation was computed from.
    """
    with single_blas_thread():
        rows = [row for probe_slice in slices
                for row in _slice_tripwire_rows(probe_slice, config, seed, log, expected_sha1)]
    return pd.DataFrame(rows, columns=TRIPWIRE_COLUMNS)


def labels_consistent_row(stored: pd.DataFrame, recomputed: pd.DataFrame) -> dict:
    """The dataset-wide ``labels_consistent`` row: stored labels vs labels recomputed from raw data."""
    result = labels_match_recomputed(stored, recomputed)
    return _tripwire_row("labels_consistent", result.passed, "ok" if result.passed else "labels_inconsistent",
                         f"{result.summary}: {result.offenders[:10]}", {"n_offenders": len(result.offenders)},
                         DATASET_SCOPE)


def expected_text_sha1(snapshot: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """``trace_key, chunk_idx, text_sha1`` of every sentence, from the stored trace texts and spans."""
    text_of = dict(zip(snapshot["trace_key"], snapshot["full_cot"], strict=True))
    hashes = [hashlib.sha1(text_of[key][int(a):int(b)].encode("utf-8")).hexdigest() if key in text_of else ""
              for key, a, b in zip(spans["trace_key"], spans["char_start"], spans["char_end"], strict=True)]
    return spans[["trace_key", "chunk_idx"]].assign(text_sha1=hashes)


def problem_keys(snapshot: pd.DataFrame) -> dict[str, str]:
    """trace_key -> a hash of the problem statement: a problem's identity independent of its id."""
    def statement(problem_json: str) -> str:
        problem = json.loads(problem_json)
        text = problem.get("problem", problem_json) if isinstance(problem, dict) else problem_json
        return " ".join(str(text).split())

    return {key: stable_json_hash(statement(problem_json))[:16]
            for key, problem_json in zip(snapshot["trace_key"], snapshot["problem_json"], strict=True)}


def recorded_assignments(out_dir: Path, seeds: Iterable[int], problem_key_of: dict[str, str]) -> pd.DataFrame:
    """``seed, scope, problem_id, problem_key, split`` of every recorded prediction of these seeds."""
    frames = []
    for seed in seeds:
        predictions = pd.read_parquet(seed_folder(out_dir, seed) / "predictions.parquet",
                                      columns=["trace_key", "problem_id", "split", "fold", "model_key", "layer_key",
                                               "setting"]).drop_duplicates()
        frames.append(pd.DataFrame({
            "seed": seed,
            "scope": predictions["model_key"] + "/" + predictions["layer_key"] + "/" + predictions["setting"],
            "problem_id": predictions["problem_id"].astype(str),
            "problem_key": predictions["trace_key"].map(problem_key_of).fillna("unknown:" + predictions["trace_key"]),
            "split": predictions["split"].where(predictions["fold"] == "holdout", predictions["fold"]),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["seed", "scope", "problem_id", "problem_key", "split"])


DATASET_SCOPE = {"model_key": "all", "layer_key": "all", "setting": "all"}


def _tripwire_row(name: str, passed: bool, reason: str, detail: str, metrics: dict, scope: dict) -> dict:
    """One ``tripwire_results`` row (TRIPWIRE_COLUMNS) for a slice or the whole dataset."""
    return {"tripwire": name, **scope, "passed": bool(passed), "reason_code": reason, "detail": detail,
            "metrics": json.dumps(metrics, default=float, sort_keys=True)}


def _slice_tripwire_rows(probe_slice: ProbeSlice, config: ProbeConfig, seed: int, log: Log,
                         expected_sha1: pd.DataFrame | None) -> list[dict]:
    results = run_tripwires(probe_slice.frame, probe_slice.X, seed, config, index=probe_slice.index,
                            expected_sha1=expected_sha1)
    failed = [f"{r.name}:{r.reason_code}" for r in results if not r.passed]
    log(f"tripwires {probe_slice.model_key}/{probe_slice.layer_key}/{probe_slice.setting}: "
        f"{len(results) - len(failed)}/{len(results)} pass {failed or ''}")
    return [_tripwire_row(r.name, r.passed, r.reason_code, r.detail, r.metrics, probe_slice.scope) for r in results]
