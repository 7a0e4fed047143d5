"""Ranking metrics for anchor probes, with one documented NaN policy.

Why our own PR-AUC/AUROC instead of ``sklearn.metrics``: the bootstrap calls them thousands of times
on small arrays, where sklearn's input validation dominates the cost. Both functions reproduce
sklearn's tie handling exactly (``average_precision_score`` steps over distinct score thresholds;
AUROC counts a tied positive/negative pair as 1/2) and the tests check them against sklearn.

NaN policy (one rule everywhere): a metric that is undefined on its input returns ``nan`` instead
of raising or inventing a value.
- PR-AUC and AUROC are NaN when the labels hold a single class.
- Spearman is NaN when either the scores or the importances are constant (or fewer than 3 rows).
- Top-k recall/precision are computed per problem and averaged over the problems that have at least
  one positive; a problem with no positive has no recall to speak of and would add the same 0
  precision to every probe, so it is skipped. NaN when no problem has a positive.
Aggregators must therefore use ``nanmean`` and report how many values they averaged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, rankdata


def prevalence(labels: np.ndarray) -> float:
    """Share of positive rows: the PR-AUC of a random ranking, so the floor every probe must beat."""
    labels = np.asarray(labels)
    return float(labels.mean()) if labels.size else float("nan")


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sklearn's step-wise PR-AUC); NaN for single-class labels."""
    return float(pr_auc_columns(labels, np.asarray(scores, dtype=np.float64)[:, None])[0])


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count 1/2); NaN for single-class labels."""
    return float(auroc_columns(labels, np.asarray(scores, dtype=np.float64)[:, None])[0])


def pr_auc_columns(labels: np.ndarray, score_matrix: np.ndarray) -> np.ndarray:
    """Average precision of every column of ``score_matrix`` (n_rows x n_scorers) at once.

    Each positive contributes the precision at the END of its run of tied scores (sklearn evaluates
    precision once per distinct threshold), averaged over positives. Vectorised over columns so the
    bootstrap scores all probes of a resample with one sort.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(score_matrix, dtype=np.float64)
    n_rows, n_cols = scores.shape
    n_pos = labels.sum()
    if n_rows == 0 or n_pos == 0 or n_pos == n_rows:
        return np.full(n_cols, np.nan)
    order = np.argsort(-scores, axis=0, kind="stable")
    return _average_precision_sorted(np.take_along_axis(scores, order, axis=0), labels[order], n_pos)


def pr_auc_of_reassignments(labels: np.ndarray, scores: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """Average precision of each column of ``receivers`` [rows, columns]: in column d the score of row i
    (``scores[i]``) is given to row ``receivers[i, d]`` (rows of ``labels``), a permutation of the rows.

    Equal to ``pr_auc_columns`` of the reassigned scores, with ONE sort: the sorted score values are the
    same in every column, only which label each one meets changes (ties need no order: each positive
    counts the precision at the end of its tie run). Why: a permutation null simulates hundreds of
    within-group shuffles per run, and sorting each of them again was a third of the tripwires stage.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    receivers = np.asarray(receivers)
    if receivers.shape[0] == 0:
        return np.full(receivers.shape[1], np.nan)
    n_pos = labels[receivers[:, 0]].sum()
    if n_pos == 0 or n_pos == receivers.shape[0]:
        return np.full(receivers.shape[1], np.nan)
    order = np.argsort(-scores, kind="stable")
    return _average_precision_sorted(scores[order][:, None], labels[receivers[order]], n_pos)


def _average_precision_sorted(sorted_scores: np.ndarray, sorted_labels: np.ndarray, n_pos: float) -> np.ndarray:
    """Average precision per column of labels sorted by descending score (``sorted_scores``: the same
    shape, or one shared [rows, 1] column)."""
    n_rows = sorted_labels.shape[0]
    positions = np.arange(n_rows)[:, None]
    is_run_end = np.vstack([np.diff(sorted_scores, axis=0) != 0, np.ones((1, sorted_scores.shape[1]), dtype=bool)])
    run_end = np.where(is_run_end, positions, n_rows)
    run_end = np.minimum.accumulate(run_end[::-1], axis=0)[::-1]  # last index of each row's tie run
    true_pos = np.cumsum(sorted_labels, axis=0)
    at_run_end = true_pos[run_end[:, 0]] if run_end.shape[1] == 1 else np.take_along_axis(true_pos, run_end, axis=0)
    return (sorted_labels * (at_run_end / (run_end + 1.0))).sum(axis=0) / n_pos


def auroc_columns(labels: np.ndarray, score_matrix: np.ndarray) -> np.ndarray:
    """AUROC of every column of ``score_matrix`` at once (average ranks handle ties)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(score_matrix, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[1], np.nan)
    ranks = rankdata(scores, axis=0)
    u_stat = ranks[labels].sum(axis=0) - n_pos * (n_pos + 1) / 2.0
    return u_stat / (n_pos * n_neg)


def spearman(scores: np.ndarray, importance: np.ndarray) -> float:
    """Spearman rank correlation of probe scores with the continuous importance; NaN if undefined."""
    scores = np.asarray(scores, dtype=np.float64)
    importance = np.asarray(importance, dtype=np.float64)
    finite = np.isfinite(scores) & np.isfinite(importance)
    scores, importance = scores[finite], importance[finite]
    if scores.size < 3 or np.ptp(scores) == 0 or np.ptp(importance) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(scores), rankdata(importance))[0, 1])


def pairwise_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of pairs with different true values that the prediction orders correctly (ties in the
    prediction count half); NaN when every true value is equal.

    Exact over ALL pairs in O(n log n): Kendall's tau-b and the tie counts give the concordant and
    discordant pair counts (``C - D = tau_b * sqrt((n0 - t_true)(n0 - t_pred))``). Why not a sample of
    pairs: a bootstrap recomputes it hundreds of times per cell; an exact value costs less than a
    500k-pair sample and has no sampling noise of its own.
    """
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    n = y_true.size
    pairs = n * (n - 1) / 2
    tied_true, tied_pred = _tied_pairs(y_true), _tied_pairs(y_pred)
    tied_both = _tied_pairs(y_true + 1j * y_pred)
    distinct = pairs - tied_true  # pairs the truth orders
    if distinct <= 0:
        return float("nan")
    pred_ties = tied_pred - tied_both  # of those, the pairs the prediction calls equal
    if pairs - tied_pred <= 0:  # the prediction is constant: every ordered pair is a tie
        return 0.5
    tau = kendalltau(y_true, y_pred, variant="b").statistic
    difference = tau * np.sqrt((pairs - tied_true) * (pairs - tied_pred))  # concordant - discordant
    concordant = (distinct - pred_ties + difference) / 2
    return float((concordant + 0.5 * pred_ties) / distinct)


def _tied_pairs(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    return float((counts * (counts - 1) / 2).sum())


def importance_target(counterfactual_importance: np.ndarray, mode: str) -> np.ndarray:
    """The continuous target Spearman is taken against: |CI| for ``absolute`` labels, CI for ``signed``.

    Anchors are defined by |CI| (a sentence matters whether it helps or hurts), so the absolute mode
    is the default; ``signed`` exists for probes of the direction of the effect.
    """
    values = np.asarray(counterfactual_importance, dtype=np.float64)
    if mode == "absolute":
        return np.abs(values)
    if mode == "signed":
        return values
    raise ValueError(f"importance mode must be 'absolute' or 'signed', not {mode!r}")


def top_k_per_problem(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int
) -> tuple[float, float]:
    """Mean over problems of (recall@k, precision@k) of the k highest-scoring sentences.

    Computed within each problem because a reader of one trace looks at its top sentences; pooled
    top-k would be dominated by long traces. Precision divides by min(k, n_sentences) so a short
    problem is not penalised for having fewer than k sentences. Ties in score are broken by row
    order (stable sort), which is deterministic. Problems without a positive are skipped (see the
    module docstring); returns (nan, nan) when none is left.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    recalls, precisions = [], []
    for group in _unique_in_order(groups):
        rows = np.flatnonzero(groups == group)
        n_pos = int(labels[rows].sum())
        if n_pos == 0:
            continue
        top = rows[np.argsort(-scores[rows], kind="mergesort")[:k]]
        hits = int(labels[top].sum())
        recalls.append(hits / n_pos)
        precisions.append(hits / min(k, rows.size))
    if not recalls:
        return float("nan"), float("nan")
    return float(np.mean(recalls)), float(np.mean(precisions))


def ranking_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    importance: np.ndarray,
    groups: np.ndarray,
    k_list: Iterable[int] = (5, 10),
) -> dict[str, float]:
    """Every reported metric for one probe on one evaluation set, keyed by metric name.

    ``importance`` is already the Spearman target (see ``importance_target``); ``groups`` are the
    per-problem units for top-k (trace keys: within a model/setting slice one trace is one problem).
    """
    metrics = {
        "pr_auc": pr_auc(labels, scores),
        "auroc": auroc(labels, scores),
        "spearman": spearman(scores, importance),
        "prevalence": prevalence(labels),
        "n_rows": float(np.asarray(labels).size),
        "n_problems": float(len(_unique_in_order(np.asarray(groups)))),
    }
    for k in k_list:
        recall, precision = top_k_per_problem(labels, scores, groups, k)
        metrics[f"top{k}_recall"] = recall
        metrics[f"top{k}_precision"] = precision
    return metrics


def _unique_in_order(values: np.ndarray | Sequence) -> list:
    """Distinct values in first-seen order (deterministic, unlike set iteration)."""
    return list(pd.unique(pd.Series(np.asarray(values))))
