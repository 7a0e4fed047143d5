"""The document monitor: a document's token logits aggregated into one score (seed Task 3).

Why two aggregations: ``max`` flags a document when one token looks like a needle (sharp, but one
noisy token can fire it); the top-k mean asks for several (a needle is a whole sentence). Scored on
every real token of the test documents, needle vs no-needle documents, by AUROC; and for documents
with a needle, how often the highest-scoring token lies inside it (does the monitor point at it?).

Why a baseline monitor: a document AUROC near 1 says little on its own (a needle sentence brings
rare tokens). The same two aggregations of the TOKEN-IDENTITY probe's scores are reported beside
the linear probe's (``doc_monitor_max_token_identity``, ...): the monitor earns its keep only by
beating what the tokens alone give.

Intervals resample PROBLEM GROUPS (the unit the dataset splits by: windows of one problem and of
its other traces share most of their text), recomputing the document AUROC per draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ta_platform.probing.bootstrap import bootstrap_intervals
from ta_platform.probing.metrics import auroc

AGGREGATIONS = ("doc_monitor_max", "doc_monitor_topk")
# the probe whose token scores each monitor aggregates: the linear probe's monitor and its baseline
MONITOR_PROBES = {"linear_probe": "", "token_identity": "_token_identity"}


def monitor_names(probe: str) -> tuple[str, str]:
    """The (max, top-k) monitor names of ``probe``'s token scores (``doc_monitor_max`` for the linear probe)."""
    return tuple(f"{aggregation}{MONITOR_PROBES[probe]}" for aggregation in AGGREGATIONS)


def document_scores(frame: pd.DataFrame, scores: np.ndarray | dict[str, np.ndarray], top_k: int) -> pd.DataFrame:
    """One row per document: ``doc_id``, ``group``, ``has_needle`` and, per probe in ``scores`` (a dict
    probe -> token scores; a bare array is the linear probe's), the max and top-k mean of its token scores
    and whether its top token is a needle token (``top_token_in_needle`` + the probe's suffix).
    ``frame`` holds ``doc_id``, ``has_needle``, ``is_needle`` (and ``group``; default the doc id)."""
    by_probe = scores if isinstance(scores, dict) else {"linear_probe": scores}
    doc_ids = frame["doc_id"].to_numpy()
    groups = frame["group"].astype(str).to_numpy() if "group" in frame else doc_ids.astype(str)
    has_needle = frame["has_needle"].to_numpy(bool)
    is_needle = frame["is_needle"].to_numpy(bool)
    columns = ["doc_id", "group", "has_needle"]
    for probe in by_probe:
        columns += [*monitor_names(probe), f"top_token_in_needle{MONITOR_PROBES[probe]}"]
    rows = []
    for doc_id, positions in pd.Series(np.arange(len(frame))).groupby(doc_ids, sort=True).groups.items():
        positions = np.asarray(positions)
        row = {"doc_id": doc_id, "group": groups[positions[0]], "has_needle": bool(has_needle[positions[0]])}
        for probe, values in by_probe.items():
            values = np.asarray(values, np.float64)[positions]
            top = np.sort(values)[::-1][:top_k]
            high, mean_top = monitor_names(probe)
            row.update({high: float(values.max()), mean_top: float(top.mean()),
                        f"top_token_in_needle{MONITOR_PROBES[probe]}": bool(is_needle[positions][int(np.argmax(values))])})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def monitor_metrics(docs: pd.DataFrame, n_resamples: int, seed: int) -> dict[str, dict[str, float]]:
    """monitor -> {auroc, auroc_ci_low, auroc_ci_high, top_token_in_needle_rate, n_docs, n_docs_with_needle}
    for every monitor column of ``docs`` (``document_scores``). The interval resamples problem groups."""
    labels = docs["has_needle"].to_numpy(bool)
    monitors = {probe: monitor_names(probe) for probe in MONITOR_PROBES if monitor_names(probe)[0] in docs}
    names = [name for pair in monitors.values() for name in pair]
    intervals = {i.probe: i for i in bootstrap_intervals(labels, {a: docs[a].to_numpy() for a in names},
                                                         docs["group"].astype(str).to_numpy(), ("auroc",),
                                                         n_resamples, seed)}
    with_needle = docs[docs["has_needle"]]
    out = {}
    for probe, pair in monitors.items():
        hits = f"top_token_in_needle{MONITOR_PROBES[probe]}"
        rate = float(with_needle[hits].mean()) if len(with_needle) else float("nan")
        for name in pair:
            out[name] = {"auroc": auroc(labels, docs[name].to_numpy()), "auroc_ci_low": intervals[name].ci_low,
                         "auroc_ci_high": intervals[name].ci_high, "top_token_in_needle_rate": rate,
                         "n_docs": float(len(docs)), "n_docs_with_needle": float(len(with_needle))}
    return out
