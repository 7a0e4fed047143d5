"""Metrics against hand-computed values, sklearn's tie handling, and the documented NaN policy."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ta_platform.probing.metrics import (
    auroc,
    auroc_columns,
    importance_target,
    pr_auc,
    pr_auc_columns,
    pr_auc_of_reassignments,
    prevalence,
    ranking_metrics,
    spearman,
    top_k_per_problem,
)


def test_pr_auc_and_auroc_by_hand():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    # precision 1/1 at the first positive, 2/3 at the second
    assert pr_auc(labels, scores) == pytest.approx((1 + 2 / 3) / 2)
    # positive/negative pairs ordered correctly: (0.9>0.8), (0.9>0.1), (0.7>0.1); wrong: (0.7<0.8)
    assert auroc(labels, scores) == pytest.approx(3 / 4)


def test_ties_follow_sklearn():
    labels = np.array([1, 0])
    tied = np.array([0.5, 0.5])
    assert pr_auc(labels, tied) == pytest.approx(0.5)  # one threshold holding both rows
    assert auroc(labels, tied) == pytest.approx(0.5)  # a tied pair counts 1/2
    rng = np.random.default_rng(0)
    for trial in range(100):
        n = int(rng.integers(2, 40))
        labels = rng.integers(0, 2, n)
        if labels.min() == labels.max():
            continue
        scores = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.normal(size=n)
        assert pr_auc(labels, scores) == pytest.approx(average_precision_score(labels, scores))
        assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_column_versions_match_scalar_versions():
    rng = np.random.default_rng(1)
    labels = (rng.random(50) < 0.2).astype(int)
    matrix = np.column_stack([rng.normal(size=50), rng.integers(0, 3, 50), labels + rng.normal(size=50)])
    for column in range(3):
        assert pr_auc_columns(labels, matrix)[column] == pytest.approx(pr_auc(labels, matrix[:, column]))
        assert auroc_columns(labels, matrix)[column] == pytest.approx(auroc(labels, matrix[:, column]))


def test_single_class_is_nan():
    assert math.isnan(pr_auc(np.zeros(4), np.arange(4.0)))
    assert math.isnan(auroc(np.ones(4), np.arange(4.0)))
    assert math.isnan(pr_auc(np.array([]), np.array([])))


def test_spearman_by_hand_and_constant_input():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([4.0, 3, 2, 1]), np.array([10.0, 20, 30, 40])) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.ones(5), np.arange(5.0)))
    assert math.isnan(spearman(np.arange(5.0), np.zeros(5)))


def test_importance_target_modes():
    values = np.array([-0.2, 0.1, 0.0])
    np.testing.assert_allclose(importance_target(values, "absolute"), [0.2, 0.1, 0.0])
    np.testing.assert_allclose(importance_target(values, "signed"), values)
    with pytest.raises(ValueError):
        importance_target(values, "other")


def test_top_k_per_problem_by_hand():
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.5, 0.4, 0.3, 0.3, 0.2, 0.1])
    groups = np.array(["a"] * 4 + ["b"] * 3 + ["c"] * 3)
    # a: top-2 = rows 0,1 -> 1 hit of 2 positives; b: no positive, skipped; c: top-2 = rows 7,8 -> 1 of 1
    recall, precision = top_k_per_problem(labels, scores, groups, k=2)
    assert recall == pytest.approx((1 / 2 + 1) / 2)
    assert precision == pytest.approx((1 / 2 + 1 / 2) / 2)
    # k larger than a problem: precision divides by the problem size (a: 2/4, c: 1/3)
    recall, precision = top_k_per_problem(labels, scores, groups, k=5)
    assert recall == pytest.approx(1.0)
    assert precision == pytest.approx((2 / 4 + 1 / 3) / 2)


def test_top_k_without_any_positive_is_nan():
    recall, precision = top_k_per_problem(np.zeros(4), np.arange(4.0), np.array(["a", "a", "b", "b"]), k=1)
    assert math.isnan(recall) and math.isnan(precision)


def test_ranking_metrics_keys():
    labels = np.array([1, 0, 0, 1])
    values = ranking_metrics(
        labels, np.array([0.9, 0.1, 0.2, 0.8]), np.arange(4.0), np.array(["a"] * 4), (5, 10)
    )
    assert values["pr_auc"] == 1.0 and values["auroc"] == 1.0
    assert values["prevalence"] == prevalence(labels) == 0.5
    assert {"top5_recall", "top5_precision", "top10_recall", "top10_precision", "spearman"} <= set(values)


def test_pairwise_accuracy_is_exact_over_every_pair_with_ties():
    from ta_platform.probing.metrics import pairwise_accuracy

    def every_pair(y, p):
        i, j = np.triu_indices(len(y), k=1)
        true_sign, pred_sign = np.sign(y[i] - y[j]), np.sign(p[i] - p[j])
        keep = true_sign != 0
        return np.where(pred_sign[keep] == 0, 0.5, pred_sign[keep] == true_sign[keep]).mean() if keep.any() else np.nan

    rng = np.random.default_rng(0)
    for n in (2, 3, 17, 1200):  # 1,200 tasks: 719,400 pairs, more than the old 500k-pair sample
        for trial in range(5):
            y = rng.integers(0, 6, n).astype(float)  # ties in the truth
            p = rng.integers(0, 4, n).astype(float) if trial % 2 else y + rng.normal(0, 2, n)  # ties in the prediction
            np.testing.assert_allclose(pairwise_accuracy(y, p), every_pair(y, p), rtol=0, atol=1e-12)  # NaN == NaN
    assert np.isnan(pairwise_accuracy(np.ones(5), np.arange(5.0)))
    assert pairwise_accuracy(np.arange(5.0), np.zeros(5)) == 0.5


@pytest.mark.parametrize("tied", [False, True])
def test_pr_auc_of_reassignments_equals_pr_auc_of_the_reassigned_scores(tied):
    """One sort for every within-group shuffle of a permutation null's reference: the same numbers as
    moving the scores and scoring each column on its own (ties included, and a subset of rows)."""
    rng = np.random.default_rng(3)
    n, draws = 300, 40
    labels = (rng.random(n) < 0.15).astype(int)
    scores = np.round(rng.normal(size=n), 1) if tied else rng.normal(size=n)
    receivers = np.stack([rng.permutation(n) for _ in range(draws)], axis=1)
    moved = np.empty((n, draws))
    for d in range(draws):
        moved[receivers[:, d], d] = scores
    np.testing.assert_allclose(pr_auc_of_reassignments(labels, scores, receivers), pr_auc_columns(labels, moved),
                               rtol=1e-12)
    rows = np.arange(100, 200)  # a fold: its rows' scores move among its own rows
    inside = np.stack([rows[rng.permutation(rows.size)] for _ in range(draws)], axis=1)
    moved_inside = np.empty((rows.size, draws))
    for d in range(draws):
        moved_inside[inside[:, d] - 100, d] = scores[rows]
    np.testing.assert_allclose(pr_auc_of_reassignments(labels, scores[rows], inside),
                               pr_auc_columns(labels[rows], moved_inside), rtol=1e-12)
