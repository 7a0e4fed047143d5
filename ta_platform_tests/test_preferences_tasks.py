"""Task pool: deterministic, varied, topic-dependent, and train/eval disjoint."""

from __future__ import annotations

import pytest

from ta_platform.preferences.tasks import assert_disjoint, generate_task_pool, overlapping_ids


def test_pool_is_deterministic_varied_and_disjoint():
    pool = generate_task_pool(600, 6, seed=3, eval_fraction=0.25)
    again = generate_task_pool(600, 6, seed=3, eval_fraction=0.25)
    assert pool.equals(again)
    assert list(pool.columns) == ["task_id", "prompt", "origin", "topic", "task_set"]
    assert pool["task_id"].is_unique and pool["prompt"].is_unique
    assert pool["topic"].nunique() == 6 and pool["origin"].nunique() >= 4
    counts = pool.groupby(["topic", "task_set"]).size().unstack()
    assert (counts["eval"] > 0).all() and (counts["train"] > counts["eval"]).all()
    train = pool.loc[pool["task_set"] == "train", "task_id"]
    evals = pool.loc[pool["task_set"] == "eval", "task_id"]
    assert overlapping_ids(train, evals) == set()
    assert_disjoint(train, evals)
    assert not generate_task_pool(600, 6, seed=4).equals(pool)


def test_prompts_depend_on_topic():
    pool = generate_task_pool(400, 4, seed=0)
    cooking = " ".join(pool.loc[pool["topic"] == "cooking", "prompt"])
    coding = " ".join(pool.loc[pool["topic"] == "coding", "prompt"])
    assert "sourdough" in cooking or "curry" in cooking
    assert "sourdough" not in coding and "curry" not in coding


def test_overlap_is_reported():
    assert overlapping_ids(["a", "b"], ["b", "c"]) == {"b"}
    with pytest.raises(ValueError, match="share 1 id"):
        assert_disjoint(["a", "b"], ["b", "c"])
