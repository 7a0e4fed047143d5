"""Problem-level paired bootstrap of each probe's margin over the baseline.

Why over problems: sentences of one trace are strongly correlated, so resampling sentences would
pretend we have thousands of independent observations when we have a handful of problems. Each
resample draws evaluation problems with replacement and scores every probe AND the baseline on the
same draw (paired), so the interval is about the margin, not about which problems were drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import auroc_columns, pr_auc_columns

# Column-vectorised metrics: one sort per resample scores the baseline and every probe.
METRIC_COLUMNS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "pr_auc": pr_auc_columns,
    "auroc": auroc_columns,
}


@dataclass(frozen=True)
class MarginInterval:
    """Point margin (probe - baseline on the full evaluation set) and its percentile interval."""

    probe: str
    metric: str
    margin: float
    ci_low: float
    ci_high: float
    n_valid_resamples: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


def bootstrap_margins(
    labels: np.ndarray,
    scores_by_probe: Mapping[str, np.ndarray],
    baseline_scores: np.ndarray,
    groups: np.ndarray,
    metrics: Sequence[str] = ("pr_auc", "auroc"),
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[MarginInterval]:
    """Margins over the baseline for every (probe, metric), from ``n_resamples`` problem draws.

    A resample whose labels are single-class gives NaN for both scores and is dropped; the number
    kept is reported. Fewer than two usable resamples give a NaN interval (never a fake one).
    """
    labels = np.asarray(labels)
    baseline_scores = np.asarray(baseline_scores, dtype=np.float64)
    draws = group_draws(groups, n_resamples, seed)
    names = list(scores_by_probe)
    score_matrix = np.column_stack(
        [baseline_scores] + [np.asarray(scores_by_probe[name], dtype=np.float64) for name in names]
    )
    alpha = (1.0 - level) / 2.0
    results = []
    for metric in metrics:
        metric_columns = METRIC_COLUMNS[metric]
        point = metric_columns(labels, score_matrix)
        resampled = np.array([metric_columns(labels[rows], score_matrix[rows]) for rows in draws])
        resampled = resampled.reshape(len(draws), score_matrix.shape[1])
        for column, name in enumerate(names, start=1):
            margins = resampled[:, column] - resampled[:, 0]
            margins = margins[np.isfinite(margins)]
            low, high = np.quantile(margins, [alpha, 1.0 - alpha]) if margins.size >= 2 else (np.nan, np.nan)
            results.append(
                MarginInterval(
                    name, metric, float(point[column] - point[0]), float(low), float(high), margins.size
                )
            )
    return results


@dataclass(frozen=True)
class MetricInterval:
    """Point value of one scorer's metric on the full evaluation set and its percentile interval."""

    probe: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n_valid_resamples: int


def bootstrap_intervals(
    labels: np.ndarray,
    scores_by_probe: Mapping[str, np.ndarray],
    groups: np.ndarray,
    metrics: Sequence[str] = ("auroc",),
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[MetricInterval]:
    """Each scorer's metric with a percentile interval from ``n_resamples`` draws of whole groups.

    The unpaired sibling of ``bootstrap_margins`` (same draws for the same groups and seed): used
    where a metric is reported on its own, e.g. the needle probe's AUROC over test documents.
    Single-class resamples are dropped and counted; fewer than two usable ones give a NaN interval.
    """
    labels = np.asarray(labels)
    draws = group_draws(groups, n_resamples, seed)
    names = list(scores_by_probe)
    score_matrix = np.column_stack([np.asarray(scores_by_probe[name], dtype=np.float64) for name in names])
    alpha = (1.0 - level) / 2.0
    results = []
    for metric in metrics:
        metric_columns = METRIC_COLUMNS[metric]
        point = metric_columns(labels, score_matrix)
        resampled = np.array([metric_columns(labels[rows], score_matrix[rows]) for rows in draws])
        resampled = resampled.reshape(len(draws), score_matrix.shape[1])
        for column, name in enumerate(names):
            values = resampled[:, column]
            values = values[np.isfinite(values)]
            low, high = np.quantile(values, [alpha, 1.0 - alpha]) if values.size >= 2 else (np.nan, np.nan)
            results.append(MetricInterval(name, metric, float(point[column]), float(low), float(high), values.size))
    return results


def group_draws(groups: np.ndarray, n_resamples: int, seed: int) -> list[np.ndarray]:
    """Row positions of ``n_resamples`` resamples, each drawing as many groups as there are, with replacement."""
    rows_by_group = _rows_by_group(groups)
    rng = np.random.default_rng(seed)
    n_groups = len(rows_by_group)
    return [
        np.concatenate([rows_by_group[g] for g in rng.integers(0, n_groups, n_groups)])
        for _ in range(n_resamples if n_groups else 0)
    ]


def _rows_by_group(groups: np.ndarray) -> list[np.ndarray]:
    """Row positions of each distinct group, groups in sorted order (so draws depend on the seed only)."""
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return [np.flatnonzero(codes == code) for code in range(codes.max() + 1)] if codes.size else []
