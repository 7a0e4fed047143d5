"""Weighted rank AUROC equals AUROC of repeated rows, and a weighted bootstrap equals the repeated-row one."""

from __future__ import annotations

import numpy as np

from ta_platform.probing.metrics import auroc_columns
from ta_platform.probing.rank_auroc import auroc_of_ranks, dense_ranks
from ta_platform.probing.unit_bootstrap import SeedRows, seed_averaged_interval


def _data(rng, n=500):
    labels = rng.random(n) < 0.2
    scores = np.column_stack([rng.normal(size=n) + labels, np.round(rng.normal(size=n), 1), np.zeros(n)])
    return labels, scores


def test_auroc_of_ranks_equals_auroc_on_the_scores_with_ties_repeated_rows_and_weights():
    rng = np.random.default_rng(3)
    labels, scores = _data(rng)
    ranks = dense_ranks(scores)
    np.testing.assert_allclose(auroc_of_ranks(labels, ranks), auroc_columns(labels, scores))
    rows = rng.integers(0, 500, 800)  # a bootstrap draw: rows repeated, ranks kept from the full set
    np.testing.assert_allclose(auroc_of_ranks(labels[rows], ranks[rows]), auroc_columns(labels[rows], scores[rows]))
    weights = np.bincount(rows, minlength=500).astype(float)  # the same draw as multiplicities
    np.testing.assert_allclose(auroc_of_ranks(labels, ranks, weights), auroc_columns(labels[rows], scores[rows]))
    assert np.isnan(auroc_of_ranks(np.zeros(5, bool), ranks[:5])).all()
    assert np.isnan(auroc_of_ranks(labels, ranks, np.where(labels, 1.0, 0.0))).all()  # weighted: one class


def test_weighted_bootstrap_gives_the_repeated_row_interval():
    rng = np.random.default_rng(5)
    seeds = []
    for seed in range(2):
        labels, scores = _data(rng, 400)
        units = rng.integers(0, 30, 400).astype(str)
        seeds.append(SeedRows(seed, labels, units, scores))

    def margins(labels, scores):
        values = auroc_columns(labels, scores)
        return values[0] - values[1:]

    def weighted_margins(labels, ranks, weights):
        values = auroc_of_ranks(labels, ranks, weights)
        return values[0] - values[1:]

    plain = seed_averaged_interval(seeds, margins, n_resamples=200, seed=1)
    ranked = [SeedRows(s.seed, s.labels, s.units, dense_ranks(s.scores)) for s in seeds]
    fast = seed_averaged_interval(ranked, weighted_margins, n_resamples=200, seed=1, weighted=True)
    np.testing.assert_allclose(fast.point, plain.point)
    np.testing.assert_allclose(fast.low, plain.low)
    np.testing.assert_allclose(fast.high, plain.high)
    assert fast.n_valid == plain.n_valid and fast.n_units == plain.n_units == 30
