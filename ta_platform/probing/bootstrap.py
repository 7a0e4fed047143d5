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

from .metrics import auroc, pr_auc

METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"pr_auc": pr_auc, "auroc": auroc}


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
    rows_by_group = _rows_by_group(groups)
    rng = np.random.default_rng(seed)
    n_groups = len(rows_by_group)
    draws = [
        np.concatenate([rows_by_group[g] for g in rng.integers(0, n_groups, n_groups)])
        for _ in range(n_resamples if n_groups else 0)
    ]
    alpha = (1.0 - level) / 2.0
    results = []
    for metric in metrics:
        metric_fn = METRIC_FUNCTIONS[metric]
        baseline_resampled = np.array([metric_fn(labels[rows], baseline_scores[rows]) for rows in draws])
        baseline_point = metric_fn(labels, baseline_scores)
        for probe, scores in scores_by_probe.items():
            scores = np.asarray(scores, dtype=np.float64)
            resampled = np.array([metric_fn(labels[rows], scores[rows]) for rows in draws]) - baseline_resampled
            resampled = resampled[np.isfinite(resampled)]
            if resampled.size >= 2:
                low, high = np.quantile(resampled, [alpha, 1.0 - alpha])
            else:
                low = high = float("nan")
            margin = metric_fn(labels, scores) - baseline_point
            results.append(MarginInterval(probe, metric, float(margin), float(low), float(high), int(resampled.size)))
    return results


def _rows_by_group(groups: np.ndarray) -> list[np.ndarray]:
    """Row positions of each distinct group, groups in sorted order (so draws depend on the seed only)."""
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return [np.flatnonzero(codes == code) for code in range(codes.max() + 1)] if codes.size else []
