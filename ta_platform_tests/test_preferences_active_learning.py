"""Active learning: start graph, held-out pairs first, outcome rows, and beating random pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ta_platform.preferences.active_learning import (
    OUTCOME_COLUMNS,
    ActiveLearningConfig,
    comparisons_to_reach,
    random_regular_pairs,
    run_active_learning,
    run_random_pairs,
    select_informative_pairs,
)
from ta_platform.preferences.judges import SimulatedJudge, Task
from ta_platform.preferences.simulate import bayes_accuracy, simulate_utilities, true_probability


def _study(n_tasks: int, seed: int):
    truth = simulate_utilities(n_tasks, seed=seed)
    tasks = [Task(t, f"prompt {t}") for t in truth["task_id"]]
    indexed = truth.set_index("task_id")
    return truth, tasks, lambda: SimulatedJudge(indexed["mu"], indexed["sigma"], seed=seed + 100)


def test_random_regular_graph_is_simple_and_regular():
    pairs = random_regular_pairs(301, 4, np.random.default_rng(0))
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    np.testing.assert_array_equal(np.bincount(pairs.ravel(), minlength=301), 4)


def test_selection_prefers_close_and_under_sampled_pairs():
    rng = np.random.default_rng(0)
    mu = np.linspace(-3, 3, 60)
    degree = np.zeros(60)
    degree[:30] = 10
    chosen = select_informative_pairs(mu, degree, 40, set(), rng, bottom_mu_percent=20, bottom_degree_percent=30)
    assert len(chosen) == 40
    assert np.abs(mu[chosen[:, 0]] - mu[chosen[:, 1]]).mean() < 1.0  # random pairs average ~2
    assert (degree[chosen].sum(axis=1) <= 10).all()


def test_outcome_rows_and_heldout_drawn_first():
    truth, tasks, judge = _study(60, 0)
    config = ActiveLearningConfig(initial_degree=4, samples_per_pair=3, pairs_per_round=30, max_comparisons=600,
                                  n_heldout_pairs=100, seed=1)
    result = run_active_learning(tasks, judge(), config)
    rows = result.outcomes
    assert tuple(rows.columns) == OUTCOME_COLUMNS
    assert set(rows["winner"]) == {"a", "b"} and set(rows["order"]) == {"ab", "ba"}
    held, train = rows[rows["heldout"]], rows[~rows["heldout"]]
    assert len(held) == 100 and (held["round"] == 0).all()
    held_keys = {frozenset(p) for p in zip(held["task_a"], held["task_b"], strict=True)}
    assert not held_keys & {frozenset(p) for p in zip(train["task_a"], train["task_b"], strict=True)}
    assert len(train) <= 600 and (train.groupby(["task_a", "task_b"]).size() == 3).all()
    assert result.stop_reason in {"budget", "rank_stable"}
    assert result.fit.heldout_source == "heldout" and result.fit.n_heldout == 100
    same_heldout = run_random_pairs(tasks, judge(), config).outcomes.query("heldout")
    assert set(zip(same_heldout["task_a"], same_heldout["task_b"], strict=True)) == set(
        zip(held["task_a"], held["task_b"], strict=True))


def test_stops_on_rank_stability():
    truth, tasks, judge = _study(40, 2)
    config = ActiveLearningConfig(initial_degree=4, samples_per_pair=5, pairs_per_round=40,
                                  convergence_threshold=0.97, max_comparisons=50_000, n_heldout_pairs=50, seed=2)
    result = run_active_learning(tasks, judge(), config)
    assert result.converged and result.stop_reason == "rank_stable"
    assert result.history["spearman_vs_previous"].iloc[-1] >= 0.97


def test_active_learning_needs_fewer_comparisons_than_random_pairs():
    truth, tasks, judge = _study(150, 2)
    config = ActiveLearningConfig(initial_degree=4, samples_per_pair=4, pairs_per_round=75, max_comparisons=3000,
                                  n_heldout_pairs=1500, convergence_threshold=1.1, max_rounds=100, seed=2)
    active = run_active_learning(tasks, judge(), config)
    random = run_random_pairs(tasks, judge(), config)
    held = active.outcomes[active.outcomes["heldout"]]
    index = pd.Index(truth["task_id"])
    bayes = bayes_accuracy(true_probability(truth, index.get_indexer(held["task_a"]), index.get_indexer(held["task_b"])))
    target = bayes - 0.04
    needed_active = comparisons_to_reach(active.history, target)
    needed_random = comparisons_to_reach(random.history, target)
    assert needed_active < needed_random, (needed_active, needed_random)
