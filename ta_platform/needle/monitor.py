"""The document monitor: a document's token logits aggregated into one score (seed Task 3).

Why two aggregations: ``max`` flags a document when one token looks like a needle (sharp, but one
noisy token can fire it); the top-k mean asks for several (a needle is a whole sentence). Scored on
every real token of the test documents, needle vs no-needle documents, by AUROC; and for documents
with a needle, how often the highest-scoring token lies inside it (does the monitor point at it?).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ta_platform.probing.bootstrap import bootstrap_intervals
from ta_platform.probing.metrics import auroc

AGGREGATIONS = ("doc_monitor_max", "doc_monitor_topk")


def document_scores(frame: pd.DataFrame, scores: np.ndarray, top_k: int) -> pd.DataFrame:
    """One row per document: ``has_needle``, the max and top-k mean of its token scores, and whether
    its top token is a needle token. ``frame`` holds ``doc_id``, ``has_needle``, ``is_needle``."""
    work = pd.DataFrame({"doc_id": frame["doc_id"].to_numpy(), "has_needle": frame["has_needle"].to_numpy(bool),
                         "is_needle": frame["is_needle"].to_numpy(bool), "score": np.asarray(scores, np.float64)})
    rows = []
    for doc_id, doc in work.groupby("doc_id", sort=True):
        values = doc["score"].to_numpy()
        top = np.sort(values)[::-1][:top_k]
        rows.append({"doc_id": doc_id, "has_needle": bool(doc["has_needle"].iat[0]),
                     "doc_monitor_max": float(values.max()), "doc_monitor_topk": float(top.mean()),
                     "top_token_in_needle": bool(doc["is_needle"].to_numpy()[int(np.argmax(values))])})
    return pd.DataFrame(rows, columns=["doc_id", "has_needle", *AGGREGATIONS, "top_token_in_needle"])


def monitor_metrics(docs: pd.DataFrame, n_resamples: int, seed: int) -> dict[str, dict[str, float]]:
    """aggregation -> {auroc, auroc_ci_low, auroc_ci_high, top_token_in_needle_rate, n_docs, n_docs_with_needle}.

    The interval resamples documents (each document is its own unit here)."""
    labels = docs["has_needle"].to_numpy(bool)
    intervals = {i.probe: i for i in bootstrap_intervals(labels, {a: docs[a].to_numpy() for a in AGGREGATIONS},
                                                         docs["doc_id"].to_numpy(), ("auroc",), n_resamples, seed)}
    with_needle = docs[docs["has_needle"]]
    rate = float(with_needle["top_token_in_needle"].mean()) if len(with_needle) else float("nan")
    return {a: {"auroc": auroc(labels, docs[a].to_numpy()), "auroc_ci_low": intervals[a].ci_low,
                "auroc_ci_high": intervals[a].ci_high, "top_token_in_needle_rate": rate,
                "n_docs": float(len(docs)), "n_docs_with_needle": float(len(with_needle))} for a in AGGREGATIONS}
