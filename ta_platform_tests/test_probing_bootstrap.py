"""Problem-level paired bootstrap of margins over the baseline."""

import math

import numpy as np
import pytest

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
    (result, *_) = bootstrap_margins(labels, {"good": good}, noise, groups, n_resamples=0)
    assert result.margin == pytest.approx(result.margin) and result.margin > 0
    assert math.isnan(result.ci_low) and math.isnan(result.ci_high)
