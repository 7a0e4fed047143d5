"""The needle study's tripwires: each names the fault it trips on (tests plant every one).

- ``val_auroc_above_chance``: the seed's "all AUROC ~0.5 means not learning", with an interval: the
  lower end of the problem-group bootstrap interval of validation AUROC must exceed 0.5. A FINDING
  (the check warns: "bugs block, findings warn", docs/probing.md): a probe that does not learn on
  sound data is a result, not a broken pipeline.
- ``metadata_complete``: every probe metadata JSON holds the keys the seed names, its weights file
  exists and matches the recorded hash.
- ``no_document_in_two_splits``: a document, a group (the problem its haystack came from) or a
  CONTENT (the same text under another id: ``content_id``) with tokens in two splits.
- ``permutation_null``: random labels that are a fixed function of (document CONTENT, token
  position) -- the same token of the same text gets the same random label under any id -- must not
  be learnable: a training document copied into validation, renamed or not, makes them so.
- ``planted_signal``: ceil(sqrt(dims)) features each equal to the label plus noise must be
  recovered through the same fit/evaluate path (test AUROC >= 0.95): fails when labels and rows
  drift apart on the way. Why sqrt(dims) columns (as the anchors study): with one column the L2
  probe's weight on the thousands of noise dimensions can drown it on sound data (a false red).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.common.hashing import sha256_file
from ta_platform.needle.evaluate import evaluate_slice, split_rows
from ta_platform.needle.probe import NeedleProbeConfig, fit_probe
from ta_platform.probing.features import ProbeInputs
from ta_platform.probing.metrics import auroc
from ta_platform.probing.tripwires import TripwireResult, planted_columns

REQUIRED_METADATA = ("selected_l2", "l2_grid", "train_stats", "val_stats", "val_metrics", "config", "provenance",
                     "weights_file", "weights_sha256")
REQUIRED_VAL_METRICS = ("auroc", "pr_auc", "f1")


def _ok(name: str, metrics: dict | None = None, detail: str = "") -> TripwireResult:
    return TripwireResult(name, True, "ok", metrics or {}, detail)


def _fail(name: str, reason: str, detail: str, metrics: dict | None = None) -> TripwireResult:
    return TripwireResult(name, False, reason, metrics or {}, detail)


def val_auroc_above_chance(val_metrics: dict[str, Any], where: str) -> TripwireResult:
    name = "val_auroc_above_chance"
    low = val_metrics.get("auroc_ci_low", float("nan"))
    metrics = {"auroc": val_metrics.get("auroc"), "auroc_ci_low": low}
    if not np.isfinite(low):
        return _fail(name, "no_interval", f"{where}: validation AUROC has no interval", metrics)
    if low <= 0.5:
        return _fail(name, "not_learning", f"{where}: validation AUROC {val_metrics.get('auroc'):.3f}, interval "
                                           f"low {low:.3f} <= 0.5 (chance)", metrics)
    return _ok(name, metrics)


def metadata_complete(path: Path) -> TripwireResult:
    name = "metadata_complete"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return _fail(name, "unreadable", f"{path}: {error}")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    missing += [f"val_metrics.{k}" for k in REQUIRED_VAL_METRICS if k not in meta.get("val_metrics", {})]
    if missing:
        return _fail(name, "missing_keys", f"{path}: missing {missing}")
    weights = path.parent / str(meta["weights_file"])
    if not weights.is_file():
        return _fail(name, "missing_weights", f"{path}: weights file {weights} does not exist")
    if sha256_file(weights) != meta["weights_sha256"]:
        return _fail(name, "weights_hash_mismatch", f"{path}: {weights} does not match the recorded sha256")
    return _ok(name)


def no_document_in_two_splits(frames: Iterable[tuple[str, pd.DataFrame]]) -> TripwireResult:
    """``frames``: (what, frame with doc_id, split and, where known, group and content_id) -- the dataset, every
    label and activation table. ``content_id`` catches a document copied under a new id and group."""
    name = "no_document_in_two_splits"
    leaks: list[str] = []
    checked = 0
    for what, frame in frames:
        checked += 1
        for unit in ("doc_id", "group", "content_id"):
            if unit not in frame:
                continue
            n_splits = frame.groupby(frame[unit].astype(str))["split"].nunique()
            leaks += [f"{what}: {unit} {u!r} in {sorted(frame.loc[frame[unit].astype(str) == u, 'split'].unique())}"
                      for u in n_splits[n_splits > 1].index[:5]]
    if leaks:
        return _fail(name, "split_leak", "; ".join(leaks[:10]), {"n_leaks": len(leaks)})
    return _ok(name, {"n_tables": checked})


def hashed_labels(frame: pd.DataFrame, rate: float, seed: int) -> np.ndarray:
    """Random labels that depend only on (content_id, position): the same token of the same text gets the same
    label under any doc id or group -- so a renamed copy of a training document carries its labels along."""
    if "content_id" not in frame:
        raise ValueError("the token labels have no content_id column (written by an older version): "
                         "re-materialise needle_token_labels")
    keys = frame["content_id"].astype(str) + "#" + frame["position"].astype(str)
    draws = np.array([int(hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:12], 16) / 16 ** 12 for k in keys])
    return draws < rate


def permutation_null(frame: pd.DataFrame, X: np.ndarray, seed: int, config: NeedleProbeConfig,
                     n_draws: int = 3, l2: float = 1.0) -> TripwireResult:
    """Train on hashed random labels (weak L2: room to memorise), score validation against them.

    Passes iff the mean validation AUROC stays within max(4 standard errors, 0.05) of 0.5; the
    standard error is the Mann-Whitney one for the validation class sizes, over ``n_draws`` draws.
    """
    name = "permutation_null"
    rows = split_rows(frame, seed, config)
    rate = float(frame["is_needle"].to_numpy(bool)[rows["train"]].mean())
    fixed = replace(config, l2_grid=(l2,), class_balance="weighted")
    values, sizes = [], (0, 0)
    for draw in range(n_draws):
        random_labels = hashed_labels(frame, rate, seed * 1000 + draw)
        train = ProbeInputs(frame.iloc[rows["train"]].reset_index(drop=True), X[rows["train"]])
        val = ProbeInputs(frame.iloc[rows["val"]].reset_index(drop=True), X[rows["val"]])
        y_train, y_val = random_labels[rows["train"]], random_labels[rows["val"]]
        probe = fit_probe("linear_probe", train, y_train, val, y_val, seed, fixed)
        values.append(auroc(y_val, probe.score(val)))
        sizes = (int(y_val.sum()), int((~y_val).sum()))
    n_pos, n_neg = sizes
    se = float(np.sqrt((n_pos + n_neg + 1) / (12.0 * max(n_pos, 1) * max(n_neg, 1))) / np.sqrt(n_draws))
    band = 0.5 + max(4 * se, 0.05)
    metrics = {"null_val_auroc": [round(v, 4) for v in values], "band_upper": band}
    mean = float(np.nanmean(values))
    if mean > band:
        return _fail(name, "null_learnable", f"random labels reach validation AUROC {mean:.3f} > {band:.3f}: "
                                             "train and validation share document content (a leak)", metrics)
    return _ok(name, metrics)


def planted_signal(frame: pd.DataFrame, X: np.ndarray, seed: int, config: NeedleProbeConfig,
                   noise_sd: float = 0.1, threshold: float = 0.95) -> TripwireResult:
    """Append ceil(sqrt(dims)) columns of label + N(0, sd^2) to the activations; the linear probe's test AUROC
    must reach ``threshold`` (``probing.tripwires.planted_columns``: the anchors study's design)."""
    name = "planted_signal"
    rng = np.random.default_rng([seed, 104729])
    label = frame["is_needle"].to_numpy(np.float64)
    n_planted = planted_columns(np.asarray(X).shape[1])
    columns = label[:, None] + rng.normal(0, noise_sd, (label.size, n_planted))
    planted = np.hstack([np.asarray(X, np.float32), columns.astype(np.float32)])
    try:
        result = evaluate_slice(frame, planted, seed, config, probes=("linear_probe",))
    except ValueError as error:
        return _fail(name, "cannot_train", str(error))
    value = float(result.metrics.query("probe == 'linear_probe' and split == 'test' and metric == 'auroc'")
                  ["value"].iloc[0])
    metrics = {"test_auroc": value, "threshold": threshold, "noise_sd": noise_sd, "n_planted_columns": n_planted}
    if not value >= threshold:
        return _fail(name, "planted_signal_not_recovered", f"test AUROC {value:.3f} < {threshold} on {n_planted} "
                                                           "features equal to label + noise", metrics)
    return _ok(name, metrics)


def missing_probe(where: str) -> TripwireResult:
    """A (model, layer) with stored activations but no probe metadata."""
    return _fail("metadata_complete", "missing_probe", f"{where}: no probe metadata")


def errored(name: str, detail: str) -> TripwireResult:
    """A tripwire that could not be evaluated (its inputs could not be read): failed, with the reason."""
    return _fail(name, "error", detail)
