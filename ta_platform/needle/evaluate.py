"""One (model, layer, seed) slice: the token probe, its baselines and the document monitor.

Rows: the seed's rows (``labels.seed_rows``: needle tokens and the seed's sampled negatives in
train documents, every token of validation and test documents), aligned with the stored activations
by ``(doc_id, position)``. Train -> fit (caps, class balance), val -> L2 and F1 threshold and the
reported ``val_metrics``, test -> the token metrics and the document monitor (and its token-identity
baseline). The per-seed intervals resample PROBLEM GROUPS (``probing.bootstrap.bootstrap_intervals``
with the ``group`` column), recomputing AUROC per draw: the dataset splits by group, and up to ~8
documents of one problem share most of their text, so neither tokens nor documents are independent.
The test predictions of every probe come back with the result (``predictions``, ``documents``): the
summary's across-seed interval resamples groups over them (``needle.summary``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.needle.labels import ALL, TokenLabelConfig, seed_rows
from ta_platform.needle.monitor import MONITOR_PROBES, document_scores, monitor_metrics
from ta_platform.needle.probe import (
    PROBES,
    FittedProbe,
    NeedleProbeConfig,
    balance_rows,
    cap_rows,
    fit_probe,
    row_stats,
    token_metrics,
)
from ta_platform.probing.bootstrap import bootstrap_intervals
from ta_platform.probing.engine_data import as_row_source
from ta_platform.probing.features import ProbeInputs

METRIC_COLUMNS = ["probe", "split", "metric", "value"]
PREDICTION_KEYS = ["doc_id", "group", "token_position", "has_needle", "is_needle"]  # + a score column per probe
INTERVAL_UNIT = "problem group"  # what every needle interval resamples


class StaleActivationsError(ValueError):
    """Label rows without a stored activation: the activations predate the labels or another seed set."""


def align(labels: pd.DataFrame, keep: np.ndarray, X, index: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The label rows in ``keep`` and their activation rows (by ``doc_id, position`` = ``trace_key, chunk_idx``)."""
    wanted = labels[keep].reset_index(drop=True)
    row_of = pd.Series(np.arange(len(index)), index=pd.MultiIndex.from_arrays(
        [index["trace_key"].astype(str).to_numpy(), index["chunk_idx"].to_numpy(dtype=np.int64)]))
    keys = pd.MultiIndex.from_arrays([wanted["doc_id"].astype(str).to_numpy(), wanted["position"].to_numpy(np.int64)])
    rows = row_of.reindex(keys).to_numpy()
    missing = np.flatnonzero(pd.isna(rows))
    if missing.size:
        first = wanted.iloc[int(missing[0])]
        raise StaleActivationsError(
            f"{missing.size} of {len(wanted)} label rows have no stored activation (first: {first['doc_id']} token "
            f"{int(first['position'])}); re-materialise needle_token_activations")
    return wanted, as_row_source(X).rows(rows.astype(np.int64))  # only the seed's rows; a partition is read on demand


def seed_slice(labels: pd.DataFrame, X, index: pd.DataFrame, seed: int,
               label_config: TokenLabelConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """The seed's rows with their activations; a seed whose negatives were not stored is a clear error."""
    if label_config.negatives_per_doc != ALL and seed not in label_config.seeds:
        raise ValueError(f"seed {seed}: its negatives were not sampled (token labels were built for seeds "
                         f"{list(label_config.seeds)}); add it to the needle settings' label seeds")
    return align(labels, seed_rows(labels, seed, label_config), X, index)


@dataclass
class SliceResult:
    metrics: pd.DataFrame  # probe, split, metric, value
    metadata: dict[str, Any]
    weights: dict[str, np.ndarray]
    fitted: dict[str, FittedProbe] = field(default_factory=dict)
    documents: pd.DataFrame | None = None  # test documents: monitor scores of each probe (``monitor``)
    predictions: pd.DataFrame | None = None  # test tokens: PREDICTION_KEYS + one score column per probe


def _inputs(frame: pd.DataFrame, X: np.ndarray, rows: np.ndarray) -> tuple[ProbeInputs, np.ndarray]:
    return ProbeInputs(frame.iloc[rows].reset_index(drop=True), X[rows]), frame["is_needle"].to_numpy(bool)[rows]


def split_rows(frame: pd.DataFrame, seed: int, config: NeedleProbeConfig) -> dict[str, np.ndarray]:
    """Row positions of train (capped, balanced), val (capped) and test."""
    split = frame["split"].to_numpy()
    labels = frame["is_needle"].to_numpy(bool)
    train = cap_rows(frame, np.flatnonzero(split == "train"), config.max_train_docs, config.max_train_tokens, seed,
                     "train")
    return {"train": balance_rows(labels, train, config.class_balance, seed),
            "val": cap_rows(frame, np.flatnonzero(split == "val"), config.max_val_docs, config.max_val_tokens, seed,
                            "val"),
            "test": np.flatnonzero(split == "test")}


def evaluate_slice(frame: pd.DataFrame, X: np.ndarray, seed: int, config: NeedleProbeConfig,
                   probes: tuple[str, ...] = tuple(PROBES)) -> SliceResult:
    """Fit every probe on the seed's rows and report val/test token metrics and the document monitor."""
    rows = split_rows(frame, seed, config)
    for name in ("train", "val"):
        y = frame["is_needle"].to_numpy(bool)[rows[name]]
        if y.size == 0 or y.all() or not y.any():
            raise ValueError(f"the {name} split has {int(y.sum())} needle tokens of {y.size}: both classes are needed "
                             "(more documents, or a larger needle_rate)")
    (train, y_train), (val, y_val), (test, y_test) = (_inputs(frame, X, rows[s]) for s in ("train", "val", "test"))
    records: list[dict[str, Any]] = []
    fitted: dict[str, FittedProbe] = {}
    scores: dict[str, dict[str, np.ndarray]] = {"val": {}, "test": {}}
    for name in probes:
        probe = fit_probe(name, train, y_train, val, y_val, seed, config)
        fitted[name] = probe
        for split, inputs, y in (("val", val, y_val), ("test", test, y_test)):
            values = probe.score(inputs) if len(inputs) else np.zeros(0)
            scores[split][name] = values
            for metric, value in token_metrics(y, values, probe.threshold).items():
                records.append({"probe": name, "split": split, "metric": metric, "value": value})
        records.append({"probe": name, "split": "val", "metric": "selected_l2", "value": probe.selected_l2})
    interval_of: dict[tuple[str, str], Any] = {}
    for split, inputs, y in (("val", val, y_val), ("test", test, y_test)):
        if len(inputs):
            for interval in bootstrap_intervals(y, scores[split], inputs.frame["group"].astype(str).to_numpy(),
                                                ("auroc",), config.bootstrap_resamples, seed):
                interval_of[(interval.probe, split)] = interval
                records += [{"probe": interval.probe, "split": split, "metric": "auroc_ci_low", "value": interval.ci_low},
                            {"probe": interval.probe, "split": split, "metric": "auroc_ci_high",
                             "value": interval.ci_high}]
    documents = predictions = None
    if len(test):
        predictions = test.frame.rename(columns={"position": "token_position"})[PREDICTION_KEYS].assign(
            **scores["test"])  # the position probe's scores take the name "position"
        monitored = {name: scores["test"][name] for name in MONITOR_PROBES if name in scores["test"]}
        if "linear_probe" in monitored:
            documents = document_scores(test.frame, monitored, config.monitor_top_k)
            for aggregation, values in monitor_metrics(documents, config.bootstrap_resamples, seed).items():
                records += [{"probe": aggregation, "split": "test", "metric": m, "value": v} for m, v in values.items()]
    metrics = pd.DataFrame(records, columns=METRIC_COLUMNS)
    main = fitted[probes[0]]
    val_metrics = {m: float(v) for m, v in token_metrics(y_val, scores["val"][main.name], main.threshold).items()}
    if (main.name, "val") in interval_of:
        val_metrics.update(auroc_ci_low=interval_of[(main.name, "val")].ci_low,
                           auroc_ci_high=interval_of[(main.name, "val")].ci_high)
    val_metrics["threshold"] = main.threshold
    metadata = {
        "probe": main.name, "selected_l2": main.selected_l2, "interval_unit": INTERVAL_UNIT,
        "threshold_rows": "every token of the validation documents (drawn like the test rows)",
        "l2_grid": {f"{l2:g}": score for l2, score in sorted(main.l2_scores.items(), reverse=True)},
        "selection_metric": "val_auroc",
        "train_stats": row_stats(train.frame, y_train), "val_stats": row_stats(val.frame, y_val),
        "test_stats": row_stats(test.frame, y_test), "val_metrics": val_metrics,
        "test_metrics": {m: float(v) for m, v in token_metrics(y_test, scores["test"][main.name], main.threshold).items()},
        "baselines": {name: {"selected_l2": p.selected_l2,
                             "val_auroc": float(metrics.query("probe == @name and split == 'val' and metric == 'auroc'")
                                                ["value"].iloc[0]),
                             "test_auroc": float(metrics.query("probe == @name and split == 'test' and metric == 'auroc'")
                                                 ["value"].iloc[0])}
                      for name, p in fitted.items() if name != main.name},
    }
    return SliceResult(metrics, metadata, main.selection.probe.weights(), fitted, documents, predictions)
