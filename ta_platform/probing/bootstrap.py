"""Problem-level bootstrap of each probe's margin over the baseline, and of single metrics.

Why over problems: sentences of one trace are strongly correlated, so resampling sentences would
pretend we have thousands of independent observations when we have a handful of problems. Each
resample draws evaluation problems with replacement and scores every probe AND the baseline on the
same draw (paired), so the interval is about the margin, not about which problems were drawn.

Both functions are one-seed views of ``unit_bootstrap.seed_averaged_interval`` (the one
implementation of "resample units, recompute the statistic"). With ``folds`` (leave-problems-out:
each fold scored by its own model) the metric is computed within each fold and averaged over folds
weighted by their problems (``unit_bootstrap.per_fold_statistic``), never over pooled fold models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import auroc_columns, pr_auc_columns
from .unit_bootstrap import SeedRows, fold_columns, per_fold_statistic, seed_averaged_interval

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
    folds: np.ndarray | None = None,
) -> list[MarginInterval]:
    """Margins over the baseline for every (probe, metric), from ``n_resamples`` problem draws.

    A resample whose labels are single-class (in every fold) is dropped; the number kept is reported.
    Fewer than two usable resamples give a NaN interval (never a fake one).
    """
    names = list(scores_by_probe)
    if not names:
        return []
    matrix = np.column_stack([np.asarray(baseline_scores, dtype=np.float64)]
                             + [np.asarray(scores_by_probe[name], dtype=np.float64) for name in names])

    def margins(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
        values = [METRIC_COLUMNS[metric](y, scores) for metric in metrics]
        return np.concatenate([value[1:] - value[0] for value in values])

    interval = _interval(labels, matrix, groups, folds, margins, n_resamples, seed, level)
    return [MarginInterval(name, metric, float(interval.point[k]), float(interval.low[k]), float(interval.high[k]),
                           interval.n_valid)
            for k, (metric, name) in enumerate((m, n) for m in metrics for n in names)]


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
    folds: np.ndarray | None = None,
) -> list[MetricInterval]:
    """Each scorer's metric with a percentile interval from ``n_resamples`` draws of whole groups.

    The unpaired sibling of ``bootstrap_margins`` (same draws for the same groups and seed).
    Single-class resamples are dropped and counted; fewer than two usable ones give a NaN interval.
    """
    names = list(scores_by_probe)
    if not names:
        return []
    matrix = np.column_stack([np.asarray(scores_by_probe[name], dtype=np.float64) for name in names])

    def values(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return np.concatenate([METRIC_COLUMNS[metric](y, scores) for metric in metrics])

    interval = _interval(labels, matrix, groups, folds, values, n_resamples, seed, level)
    return [MetricInterval(name, metric, float(interval.point[k]), float(interval.low[k]), float(interval.high[k]),
                           interval.n_valid)
            for k, (metric, name) in enumerate((m, n) for m in metrics for n in names)]


def _interval(labels, matrix, groups, folds, statistic, n_resamples, seed, level):
    groups = np.asarray(groups).astype(str)
    folds = np.full(groups.size, "all") if folds is None else np.asarray(folds)
    rows = SeedRows(seed, np.asarray(labels), groups, fold_columns(matrix, folds, groups))
    return seed_averaged_interval([rows], per_fold_statistic(statistic), n_resamples=n_resamples, seed=seed,
                                  level=level, unit="problem")
