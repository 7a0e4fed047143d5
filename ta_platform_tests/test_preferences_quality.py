"""Issue 9 item 7: the prior is chosen apart from the reported pairs, the ceiling is max(p, 1-p), and the
checks that replaced ``utilities_finite`` fail on the faults they name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ta_platform.preferences.quality import failing_recovery, not_above_chance, truth_recovery
from ta_platform.preferences.simulate import bayes_accuracy, simulate_comparisons, simulate_utilities
from ta_platform.preferences.thurstone import (
    accuracy_ceiling,
    accuracy_interval,
    aggregate_pairs,
    fit_thurstonian,
)


@pytest.fixture(scope="module")
def data():
    truth = simulate_utilities(150, seed=11)
    return truth, simulate_comparisons(truth, 3000, n_heldout=600, seed=12)


def test_prior_is_chosen_without_looking_at_the_reported_heldout_pairs(data):
    truth, comparisons = data
    columns = ["task_a", "task_b", "winner", "heldout"]
    fit = fit_thurstonian(comparisons[columns], truth["task_id"])
    # Plant the fault the old code had: reported pairs that would pull the prior choice. Flipping every
    # held-out winner must change the reported accuracy but neither the chosen prior nor the utilities.
    flipped = comparisons[columns].copy()
    held = flipped["heldout"].to_numpy()
    flipped.loc[held, "winner"] = np.where(flipped.loc[held, "winner"] == "a", "b", "a")
    fit_flipped = fit_thurstonian(flipped, truth["task_id"])
    assert fit_flipped.prior_strength == fit.prior_strength
    np.testing.assert_allclose(fit_flipped.utilities["mu"], fit.utilities["mu"])
    assert fit_flipped.heldout_accuracy == pytest.approx(1 - fit.heldout_accuracy)
    assert "validation_log_loss" in fit.selection.columns and len(fit.selection) >= 2
    assert fit.heldout_accuracy_low < fit.heldout_accuracy < fit.heldout_accuracy_high


def test_without_heldout_rows_the_reported_half_is_apart_from_the_choosing_half(data):
    truth, comparisons = data
    train = comparisons.loc[~comparisons["heldout"], ["task_a", "task_b", "winner"]]
    fit = fit_thurstonian(train, seed=4)
    assert fit.heldout_source == "validation"
    assert 0 < fit.n_heldout < 0.2 * len(train)
    assert np.isfinite(fit.validation_log_loss)


def test_ceiling_is_max_p_not_agreement():
    p = np.array([0.9, 0.6, 0.5, 0.2])
    assert accuracy_ceiling(p) == pytest.approx(np.mean([0.9, 0.6, 0.5, 0.8]))
    assert accuracy_ceiling(p) == pytest.approx(bayes_accuracy(p))
    # From repeated samples: a pair won 9 of 10 times estimates max(p, 1-p) near 0.9, not 0.9^2 + 0.1^2.
    rows = pd.DataFrame({"task_a": ["x"] * 10, "task_b": ["y"] * 10, "winner": ["a"] * 9 + ["b"]})
    estimate = accuracy_ceiling(None, aggregate_pairs(rows, pd.Index(["x", "y"])))
    assert 0.85 < estimate <= 1.0


def test_simulated_fit_reaches_its_ceiling_within_its_interval(data):
    truth, comparisons = data
    fit = fit_thurstonian(comparisons[["task_a", "task_b", "winner", "heldout"]], truth["task_id"])
    exact = bayes_accuracy(comparisons.loc[comparisons["heldout"], "p_true"].to_numpy())
    with_p = comparisons.rename(columns={"p_true": "p_a"})[["task_a", "task_b", "winner", "heldout", "p_a"]]
    assert fit_thurstonian(with_p, truth["task_id"]).noise_ceiling == pytest.approx(exact)
    assert fit.heldout_accuracy_low <= exact


def test_accuracy_interval_is_seeded_and_covers_the_point():
    rng = np.random.default_rng(0)
    p = rng.random(200)
    won = rng.random(200) < p
    assert accuracy_interval(p, won, seed=1) == accuracy_interval(p, won, seed=1)
    low, high = accuracy_interval(p, won, seed=1)
    point = np.mean((p > 0.5) == won)
    assert low <= point <= high and high - low > 0.02


def test_truth_recovery_fails_when_utilities_do_not_follow_the_truth(data):
    truth, comparisons = data
    fit = fit_thurstonian(comparisons[["task_a", "task_b", "winner", "heldout"]], truth["task_id"])
    utilities = fit.utilities.assign(task_set="train")
    recovery = truth_recovery(utilities, truth)
    assert recovery["train"] > 0.8 and failing_recovery(recovery, 0.8) == []
    shuffled = utilities.assign(mu=np.random.default_rng(0).permutation(utilities["mu"].to_numpy()))
    assert failing_recovery(truth_recovery(shuffled, truth), 0.8) == ["train"]
    missing = utilities.assign(task_id=utilities["task_id"] + "_renamed")
    assert failing_recovery(truth_recovery(missing, truth), 0.8) == ["train"]


def test_accuracy_check_fails_for_a_judge_answering_at_random(data):
    truth, comparisons = data
    columns = ["task_a", "task_b", "winner", "heldout"]
    good = fit_thurstonian(comparisons[columns], truth["task_id"]).summary()
    noise = comparisons[columns].assign(
        winner=np.where(np.random.default_rng(3).random(len(comparisons)) < 0.5, "a", "b"))
    bad = fit_thurstonian(noise, truth["task_id"]).summary()
    assert not_above_chance([{**good, "task_set": "train"}]) == []
    assert not_above_chance([{**bad, "task_set": "eval"}]) == ["eval"]
