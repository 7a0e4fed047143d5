"""Thurstonian fit: recovery of known utilities, gradient check, validation of bad outcomes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime
from scipy.stats import spearmanr

from ta_platform.common.faults import DataFault
from ta_platform.preferences.simulate import bayes_accuracy, simulate_comparisons, simulate_utilities
from ta_platform.preferences.thurstone import (
    PairCounts,
    aggregate_pairs,
    fit_thurstonian,
    negative_log_posterior,
    noise_ceiling,
    validate_outcomes,
)


def test_recovers_known_utilities():
    truth = simulate_utilities(300, seed=4)
    data = simulate_comparisons(truth, 6000, n_heldout=1500, seed=5)
    fit = fit_thurstonian(data[["task_a", "task_b", "winner", "heldout"]], truth["task_id"])
    rho = spearmanr(fit.mu().reindex(truth["task_id"]).to_numpy(), truth["mu"].to_numpy()).statistic
    assert rho >= 0.85
    assert fit.converged
    bayes = bayes_accuracy(data.loc[data["heldout"], "p_true"].to_numpy())
    assert fit.heldout_accuracy >= bayes - 0.06
    assert fit.heldout_source == "heldout" and fit.n_heldout == 1500
    assert len(fit.selection) >= 2  # the prior strength was chosen, not fixed
    assert abs(fit.utilities["mu"].mean()) < 1e-9


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    n = 12
    first = rng.integers(0, n, 60)
    second = (first + rng.integers(1, n, 60)) % n
    pairs = PairCounts(np.minimum(first, second), np.maximum(first, second),
                       rng.integers(0, 4, 60).astype(float), rng.integers(0, 4, 60).astype(float))
    params = np.concatenate([rng.normal(0, 1, n), rng.normal(-0.3, 0.4, n)])
    params[0] = 4.0  # put some pairs in the tails where the tail branch is used
    _, grad = negative_log_posterior(params, pairs, n, 0.7, 2.0)
    numeric = approx_fprime(params, lambda p: negative_log_posterior(p, pairs, n, 0.7, 2.0)[0], 1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)


def test_aggregation_counts_wins_per_unordered_pair():
    outcomes = pd.DataFrame({"task_a": ["x", "y", "x", "z"], "task_b": ["y", "x", "y", "x"],
                             "winner": ["a", "a", "b", "b"]})
    pairs = aggregate_pairs(validate_outcomes(outcomes), pd.Index(["x", "y", "z"]))
    table = {(int(i), int(j)): (w, ell) for i, j, w, ell in
             zip(pairs.first, pairs.second, pairs.wins_first, pairs.wins_second, strict=True)}
    # x-y: x won row 0, y won row 1, y won row 2 -> x 1, y 2; x-z: row 3 winner b = x
    assert table == {(0, 1): (1.0, 2.0), (0, 2): (1.0, 0.0)}
    assert noise_ceiling(pairs) == pytest.approx(1 / 3)  # x-y: 3 samples, 1 agreeing pair of 3


def _outcomes(changes):
    frame = pd.DataFrame({"task_a": ["t1", "t2", "t3"], "task_b": ["t2", "t3", "t1"], "winner": ["a", "b", "a"]})
    frame["winner"] = frame["winner"].astype(object)
    for (row, column), value in changes.items():
        frame.loc[row, column] = value
    return frame


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({(1, "task_b"): "t9"}, "row 2: unknown task id 't9'"),
        ({(2, "task_b"): "t3"}, "row 3: self-comparison of task 't3'"),
        ({(0, "winner"): np.nan}, "row 1: winner is missing (NaN)"),
        ({(1, "winner"): "c"}, "row 2: winner is 'c'"),
    ],
)
def test_bad_outcomes_are_rejected_with_the_row(changes, message):
    bad = _outcomes(changes)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        fit_thurstonian(bad, ["t1", "t2", "t3"])
    assert not isinstance(error.value, DataFault)
    with pytest.raises(DataFault) as fault:
        validate_outcomes(bad, ["t1", "t2", "t3"], source="pairs.csv")
    assert str(fault.value).startswith("pairs.csv: " + message.split(":")[0])


def test_missing_columns_and_nan_ids_are_rejected():
    with pytest.raises(ValueError, match="missing column"):
        validate_outcomes(pd.DataFrame({"task_a": ["x"], "winner": ["a"]}))
    with pytest.raises(ValueError, match="row 1: task_b is missing"):
        validate_outcomes(pd.DataFrame({"task_a": ["x"], "task_b": [None], "winner": ["a"]}))


def test_without_heldout_a_validation_split_chooses_the_prior():
    truth = simulate_utilities(80, seed=1)
    data = simulate_comparisons(truth, 1500, seed=2)[["task_a", "task_b", "winner"]]
    fit = fit_thurstonian(data, seed=3)
    assert fit.heldout_source == "validation"
    assert fit.n_comparisons == 1500  # the final fit uses every row
    assert set(fit.utilities["task_id"]) <= set(truth["task_id"])


def test_the_prior_sweep_fits_the_whole_grid_and_keeps_its_minimum():
    # on these data validation log-loss falls, then rises (0.3 is worse than 1.0): a sweep that stopped at the
    # first worse value fitted 3 of the 5 priors and never looked at the weaker ones
    truth = simulate_utilities(30, seed=3)
    data = simulate_comparisons(truth, 200, seed=4)[["task_a", "task_b", "winner"]]
    grid = (3.0, 1.0, 0.3, 0.1, 0.03)
    fit = fit_thurstonian(data, prior_grid=grid, seed=3)
    assert list(fit.selection["prior_strength"]) == list(grid)
    best = fit.selection.loc[fit.selection["validation_log_loss"].idxmin()]
    assert fit.prior_strength == best["prior_strength"]
    assert fit.validation_log_loss == pytest.approx(best["validation_log_loss"])


def test_accuracy_interval_resamples_pairs_not_comparisons():
    """Repeating every held-out comparison ten times adds no new pair: the interval must not narrow. Resampling
    comparisons (the old unit) shrinks it by about sqrt(10)."""
    truth = simulate_utilities(120, seed=6)
    data = simulate_comparisons(truth, 3000, n_heldout=300, seed=7)
    train = data.loc[~data["heldout"], ["task_a", "task_b", "winner"]]
    heldout = data.loc[data["heldout"], ["task_a", "task_b", "winner"]]
    once = fit_thurstonian(train, truth["task_id"], heldout=heldout, seed=1)
    repeated = fit_thurstonian(train, truth["task_id"], heldout=pd.concat([heldout] * 10, ignore_index=True), seed=1)
    assert repeated.heldout_accuracy == pytest.approx(once.heldout_accuracy)
    width = once.heldout_accuracy_high - once.heldout_accuracy_low
    assert width > 0.03
    assert repeated.heldout_accuracy_high - repeated.heldout_accuracy_low == pytest.approx(width, rel=0.15)
