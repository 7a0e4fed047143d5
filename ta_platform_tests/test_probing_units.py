"""The shared statistics layer: thresholds, hash order and unit splits, unit-bootstrap intervals of a
seed-averaged statistic, stratified permutation nulls. Each test is built so the fault it names fails it."""

import hashlib

import numpy as np
import pytest

from ta_platform.probing.metrics import pr_auc_columns
from ta_platform.probing.splits import (
    hash_order,
    leave_problems_out_folds,
    problem_level_split,
    unit_identity,
    unit_split,
)
from ta_platform.probing.thresholds import best_f1_threshold, f1_at
from ta_platform.probing.unit_bootstrap import (
    SeedRows,
    seed_averaged_interval,
    stratified_permutation,
    stratified_permutation_p_value,
)

# --- thresholds -------------------------------------------------------------------------------------------

def test_threshold_without_positives_is_inf_and_predicts_nothing():
    scores = np.array([0.3, 0.9, -1.0])
    threshold = best_f1_threshold([0, 0, 0], scores)
    assert threshold == float("inf")
    assert f1_at([0, 0, 0], scores, threshold) == 0.0  # undefined F1 (none true, none predicted) -> 0.0
    assert f1_at([0, 0, 0], scores, 0.0) == 0.0  # predicted positives, no true one


def test_best_threshold_maximises_f1_over_every_cut():
    rng = np.random.default_rng(0)
    for _ in range(30):
        labels = (rng.random(40) < 0.3).astype(int)
        labels[0] = 1
        scores = np.round(labels + rng.normal(0, 0.8, 40), 1)  # rounding makes ties
        threshold = best_f1_threshold(labels, scores)
        brute = max(f1_at(labels, scores, t) for t in np.unique(scores))
        assert f1_at(labels, scores, threshold) == pytest.approx(brute)
        assert threshold in set(scores.tolist())


def test_f1_at_counts_ties_at_the_threshold_as_positive():
    assert f1_at([1, 0, 1], [0.5, 0.5, 0.1], 0.5) == pytest.approx(2 * 1 / (2 + 2))


# --- hash order and unit splits ---------------------------------------------------------------------------

def test_hash_order_is_sha256_of_seed_and_id_and_stable_under_dropping_ids():
    ids = [f"p{i}" for i in range(30)]
    order = hash_order(ids, 7)
    assert order == sorted(ids, key=lambda i: hashlib.sha256(f"7:{i}".encode()).hexdigest())
    kept = set(ids[::2])
    assert hash_order(sorted(kept), 7) == [i for i in order if i in kept]  # the others keep their order
    assert hash_order(ids, 8) != order
    assert hash_order([3, 1], 0) == hash_order(["1", "3"], 0)  # ids are compared as strings


def test_splits_and_folds_follow_hash_order():
    ids = [str(i) for i in range(20)]
    order = hash_order(ids, 2)
    assignment = problem_level_split(ids, 2)
    assert [i for i in order if assignment[i] == "test"] == order[:3]  # the first of the order are held out
    assert leave_problems_out_folds(ids, 4, 2)[0] == tuple(sorted(order[0::4]))
    assert unit_split(ids, 2) == assignment


def test_unit_identity_normalises_whitespace_only():
    statement = "Find x such that\n  x + 1 = 2."
    assert unit_identity(statement) == unit_identity("Find x such that x + 1 = 2.  ")
    assert unit_identity(statement) != unit_identity("Find y such that y + 1 = 2.")
    assert len(unit_identity(statement)) == 16 and int(unit_identity(statement), 16) >= 0


# --- seed-averaged unit bootstrap -------------------------------------------------------------------------

def _mean_score(labels, scores):
    return scores.mean(axis=0)


def test_draw_is_the_seed_mean_not_an_average_of_endpoints():
    """Seed A scored only unit a (score 0), seed B only unit b (score 1). Per-seed intervals are [0, 0]
    and [1, 1], whose averaged endpoints give [0.5, 0.5]; resampling the union {a, b} draws {a, a}
    (only A scores: 0) and {b, b} (1) a quarter of the time each, so the interval is [0, 1]."""
    seed_a = SeedRows(0, np.zeros(3), np.array(["a"] * 3), np.zeros((3, 1)))
    seed_b = SeedRows(1, np.zeros(2), np.array(["b"] * 2), np.ones((2, 1)))
    joint = seed_averaged_interval([seed_a, seed_b], _mean_score, n_resamples=400, seed=1)
    singles = [seed_averaged_interval([rows], _mean_score, n_resamples=400, seed=1) for rows in (seed_a, seed_b)]
    averaged_endpoints = (np.mean([s.low[0] for s in singles]), np.mean([s.high[0] for s in singles]))
    assert averaged_endpoints == (0.5, 0.5)
    assert joint.point[0] == 0.5
    assert (joint.low[0], joint.high[0]) == (0.0, 1.0)
    assert joint.n_units == 2 and joint.n_valid == 400 and joint.unit == "problem"


def _seed_rows(seed, problems, rng, n_rows=15):
    labels, units, scores = [], [], []
    for problem in problems:
        y = (rng.random(n_rows) < 0.25).astype(int)
        y[0] = 1
        difficulty = rng.normal(0, 1.0)  # the problem, not the row, carries most of the variation
        labels.append(y)
        units.append([problem] * n_rows)
        scores.append(np.column_stack([y * (1 + difficulty) + rng.normal(0, 1, n_rows), rng.normal(0, 1, n_rows)]))
    return SeedRows(seed, np.concatenate(labels), np.concatenate(units), np.vstack(scores))


def _margin(labels, scores):
    values = pr_auc_columns(labels, scores)
    return np.array([values[0] - values[1]])


def test_two_seeds_with_different_test_draws_differ_from_the_mean_of_their_endpoints():
    rng = np.random.default_rng(3)
    seeds = [_seed_rows(0, [f"p{i}" for i in range(8)], rng), _seed_rows(1, [f"p{i}" for i in range(8, 16)], rng)]
    joint = seed_averaged_interval(seeds, _margin, n_resamples=500, seed=0)
    singles = [seed_averaged_interval([rows], _margin, n_resamples=500, seed=0) for rows in seeds]
    assert joint.point[0] == pytest.approx(np.mean([s.point[0] for s in singles]))  # the point IS the seed mean
    endpoint_width = np.mean([s.high[0] - s.low[0] for s in singles])
    joint_width = joint.high[0] - joint.low[0]
    # 16 problems instead of 8 behind the seed mean: about 1/sqrt(2) of the width, never the averaged one
    assert joint_width < 0.85 * endpoint_width, (joint_width, endpoint_width)
    assert joint.n_units == 16


def test_resampling_unit_is_the_unit_not_the_row():
    """10 units of 200 rows, each unit's rows share one value: the interval of the mean reflects 10
    draws (SE ~ sd/sqrt(10)), not 2000 rows."""
    rng = np.random.default_rng(5)
    unit_values = rng.normal(0, 1, 10)
    units = np.repeat([f"u{i}" for i in range(10)], 200)
    rows = SeedRows(0, np.zeros(units.size), units, np.repeat(unit_values, 200)[:, None])
    interval = seed_averaged_interval([rows], _mean_score, n_resamples=1000, seed=0)
    standard_error = unit_values.std(ddof=1) / np.sqrt(10)
    assert interval.high[0] - interval.low[0] > 2.5 * standard_error  # ~3.9 SE for a 95% interval


def test_drawn_units_are_repeated_as_often_as_drawn():
    """The row count of every draw equals the rows of the drawn units WITH multiplicity: always 12 here
    (12 units of one row); counting each drawn unit once would give fewer distinct units most draws."""
    rows = SeedRows(0, np.zeros(12), np.array([f"u{i}" for i in range(12)]), np.zeros((12, 1)))
    interval = seed_averaged_interval([rows], lambda labels, scores: np.array([labels.size]), n_resamples=200)
    assert (interval.low[0], interval.high[0]) == (12.0, 12.0)


def test_non_finite_draws_are_dropped_and_too_few_give_nan():
    labels = np.array([1, 1, 0, 0])  # unit a holds the positives, b the negatives: {a, a}, {b, b} are one-class
    rows = SeedRows(0, labels, np.array(["a", "a", "b", "b"]), np.array([[1.0], [0.0], [0.2], [0.1]]))
    interval = seed_averaged_interval([rows], _margin_one_column, n_resamples=300, seed=2)
    assert 100 < interval.n_valid < 200  # about half of the draws mix both units
    one_class = SeedRows(0, np.array([1, 1]), np.array(["a", "b"]), np.array([[1.0], [0.0]]))
    empty = seed_averaged_interval([one_class], _margin_one_column, n_resamples=50)
    assert empty.n_valid == 0 and np.isnan(empty.low[0]) and np.isnan(empty.high[0])


def _margin_one_column(labels, scores):
    return pr_auc_columns(labels, scores)


# --- stratified permutation -------------------------------------------------------------------------------

def test_stratified_permutation_keeps_each_stratum_contents_and_moves_values():
    rng = np.random.default_rng(0)
    strata = np.repeat(["p", "q", "r"], [5, 7, 4])
    values = np.arange(16)
    moved = 0
    for _ in range(20):
        permuted = stratified_permutation(values, strata, rng)
        for stratum in ("p", "q", "r"):
            assert sorted(permuted[strata == stratum]) == sorted(values[strata == stratum])
        moved += int(np.any(permuted != values))
    assert moved >= 19  # it does permute


def test_between_stratum_offset_is_not_signal_but_within_stratum_signal_is():
    rng = np.random.default_rng(1)
    strata = np.repeat(np.arange(8), 10)
    offset = rng.normal(0, 3, 8)[strata]
    x = offset + rng.normal(0, 1, 80)
    y_offset_only = offset + rng.normal(0, 1, 80)  # tracks the stratum, nothing within it

    def correlation(a, b):
        return float(np.corrcoef(a, b)[0, 1])

    stratified = stratified_permutation_p_value(correlation, x, y_offset_only, strata, n_permutations=300)
    pooled = stratified_permutation_p_value(correlation, x, y_offset_only, np.zeros(80), n_permutations=300)
    assert pooled == pytest.approx(1 / 301)  # permuting across strata reads the offset as signal
    assert stratified > 0.05
    y_within = x + rng.normal(0, 0.5, 80)
    assert stratified_permutation_p_value(correlation, x, y_within, strata, n_permutations=300) == \
        pytest.approx(1 / 301)
