"""Problem-level paired bootstrap of margins over the baseline."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ta_platform.probing.bootstrap import bootstrap_margins


def _toy(n_problems=8, rows=20, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n_problems * rows) < 0.2).astype(int)
    groups = np.repeat([f"p{i}" for i in range(n_problems)], rows)
    good = labels + rng.normal(0, 0.3, labels.size)
    noise = rng.normal(size=labels.size)
    return labels, groups, good, noise


def test_identical_scores_give_zero_margin_and_zero_interval():
    labels, groups, good, _ = _toy()
    results = bootstrap_margins(labels, {"same": good}, good, groups, n_resamples=50, seed=0)
    assert {(r.metric, r.margin, r.ci_low, r.ci_high) for r in results} == {
        ("pr_auc", 0.0, 0.0, 0.0),
        ("auroc", 0.0, 0.0, 0.0),
    }


def test_good_probe_beats_noise_baseline_and_is_seeded():
    labels, groups, good, noise = _toy()
    first = bootstrap_margins(labels, {"good": good}, noise, groups, n_resamples=200, seed=3)
    assert first == bootstrap_margins(labels, {"good": good}, noise, groups, n_resamples=200, seed=3)
    for result in first:
        assert result.excludes_zero and result.ci_low > 0
        assert result.ci_low <= result.margin <= result.ci_high
        assert result.n_valid_resamples == 200


def test_resamples_are_whole_problems():
    # One problem holds every positive: any draw without it is single-class and dropped.
    labels = np.r_[np.ones(2), np.zeros(8), np.zeros(30)].astype(int)
    groups = np.repeat(["p0", "p1", "p2", "p3"], 10)
    scores = np.arange(40.0)[::-1]
    (result, *_) = bootstrap_margins(labels, {"x": scores}, -scores, groups, n_resamples=400, seed=0)
    # P(p0 absent from 4 draws) = (3/4)^4 ~ 0.32: about a third of the resamples are dropped, not faked
    assert 200 < result.n_valid_resamples < 340


def test_no_resamples_gives_nan_interval_but_point_margin():
    labels, groups, good, noise = _toy()
    pr_margin, auroc_margin = bootstrap_margins(labels, {"good": good}, noise, groups, n_resamples=0)
    # the point margins are the metrics on the full set, checked against sklearn's own implementations
    assert pr_margin.margin == pytest.approx(average_precision_score(labels, good)
                                             - average_precision_score(labels, noise))
    assert auroc_margin.margin == pytest.approx(roc_auc_score(labels, good) - roc_auc_score(labels, noise))
    assert math.isnan(pr_margin.ci_low) and math.isnan(pr_margin.ci_high) and pr_margin.n_valid_resamples == 0


def test_with_folds_each_fold_is_scored_on_its_own():
    """Leave-problems-out: fold models have their own scales. Shifting one fold's scores (the same
    ranking inside the fold) leaves the per-fold margin unchanged; a pooled PR-AUC would move."""
    labels, groups, good, noise = _toy(n_problems=8)
    folds = np.where(np.isin(groups, ["p0", "p1", "p2", "p3"]), "fold0", "fold1")
    shifted = np.where(folds == "fold0", good + 100.0, good)
    first = bootstrap_margins(labels, {"good": good}, noise, groups, n_resamples=100, seed=1, folds=folds)
    second = bootstrap_margins(labels, {"good": shifted}, noise, groups, n_resamples=100, seed=1, folds=folds)
    assert [v for r in first for v in (r.margin, r.ci_low, r.ci_high)] == pytest.approx(
        [v for r in second for v in (r.margin, r.ci_low, r.ci_high)])
    in_fold = [average_precision_score(labels[folds == f], good[folds == f])
               - average_precision_score(labels[folds == f], noise[folds == f]) for f in ("fold0", "fold1")]
    assert first[0].margin == pytest.approx(np.mean(in_fold))  # 4 problems each: equal weights
    pooled = bootstrap_margins(labels, {"good": shifted}, noise, groups, n_resamples=0)
    assert abs(pooled[0].margin - first[0].margin) > 0.01
