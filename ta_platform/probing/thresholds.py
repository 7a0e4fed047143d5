"""One decision-threshold helper for every study (F1 of ``score >= threshold``).

Why one module: the backtracking and needle studies each had a copy and they disagreed on the
no-positive case (one returned +inf, the other 0.0). The rule here, for everyone:
- ``best_f1_threshold`` with no positive label returns ``+inf``: the only F1-optimal rule on such
  data is "predict nothing" (any finite threshold only adds false positives);
- ``f1_at`` returns 0.0 when F1 is undefined (no positive label and nothing predicted), so an
  aggregate of F1 values stays finite and never rewards a split without positives.
The threshold is chosen on validation rows and applied unchanged to test rows.
"""

from __future__ import annotations

import numpy as np


def best_f1_threshold(labels, scores) -> float:
    """The threshold ``t`` maximising F1 of ``score >= t`` (ties: the highest such ``t``).

    Candidates are the distinct scores; with no positive label the result is ``+inf`` (predict none).
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    n_pos = int(labels.sum())
    if n_pos == 0 or scores.size == 0:
        return float("inf")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    run_end = np.flatnonzero(np.append(np.diff(sorted_scores) != 0, True))  # last row of each tie run
    true_pos = np.cumsum(sorted_labels)[run_end]
    predicted = run_end + 1.0
    f1 = 2.0 * true_pos / (predicted + n_pos)
    best = int(np.argmax(f1))  # first maximum = highest threshold among ties
    return float(sorted_scores[run_end[best]])


def f1_at(labels, scores, threshold: float) -> float:
    """F1 of ``score >= threshold``; 0.0 when undefined (no positive label and none predicted)."""
    labels = np.asarray(labels).astype(bool).ravel()
    predicted = np.asarray(scores, dtype=np.float64).ravel() >= threshold
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and scores {predicted.shape} differ in shape")
    true_pos = int(np.sum(labels & predicted))
    denominator = int(labels.sum()) + int(predicted.sum())
    return 2.0 * true_pos / denominator if denominator else 0.0
