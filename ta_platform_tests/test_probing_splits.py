"""Problem-level splits: deterministic, disjoint, complete, non-empty, and traces of a problem together."""

import pandas as pd
import pytest

from ta_platform.probing.splits import leave_problems_out_folds, problem_level_split, rows_split
from ta_platform.probing.synthetic import make_synthetic_probe_data

PROBLEMS = [str(100 + i) for i in range(20)]


def test_deterministic_and_order_independent():
    first = problem_level_split(PROBLEMS, seed=3)
    assert first == problem_level_split(list(reversed(PROBLEMS)), seed=3)
    assert first == problem_level_split(PROBLEMS * 2, seed=3)  # duplicates (two traces) change nothing
    assert first != problem_level_split(PROBLEMS, seed=4)


def test_complete_and_sized_by_fractions():
    assignment = problem_level_split(PROBLEMS, seed=0)
    assert set(assignment) == set(PROBLEMS)
    counts = {name: list(assignment.values()).count(name) for name in ("train", "val", "test")}
    assert counts == {"train": 14, "val": 3, "test": 3}


@pytest.mark.parametrize("n_problems", [3, 4, 5, 7])
@pytest.mark.parametrize("seed", range(5))
def test_every_split_non_empty_from_three_problems(n_problems, seed):
    assignment = problem_level_split([str(i) for i in range(n_problems)], seed)
    assert set(assignment.values()) == {"train", "val", "test"}


def test_tiny_inputs():
    assert problem_level_split([], 0) == {}
    assert set(problem_level_split(["1"], 0).values()) == {"train"}
    assert sorted(problem_level_split(["1", "2"], 0).values()) == ["test", "train"]
    with pytest.raises(ValueError):
        problem_level_split(PROBLEMS, 0, fractions=(0.5, 0.2, 0.2))


def test_correct_and_incorrect_traces_land_together():
    """The correct folder's ids parsed as integers, the incorrect folder's as strings (what two readers of
    one problem may produce): a problem is one unit whatever the type of its id, so both land together."""
    frame, _ = make_synthetic_probe_data(0, n_problems=10, sentences=(5, 8), dims=4)
    assert frame.groupby("problem_id")["setting"].nunique().eq(2).all()
    mixed = frame["problem_id"].astype(object).where(frame["setting"] == "incorrect",
                                                     frame["problem_id"].astype(int))
    assignment = problem_level_split(mixed, seed=5)
    assert sorted(assignment) == sorted(frame["problem_id"].astype(str).unique())  # 10 units, not 20
    splits = pd.Series(rows_split(mixed, assignment), index=frame.index)
    assert splits.groupby(frame["problem_id"].astype(str)).nunique().eq(1).all()
    assert set(splits) == {"train", "val", "test"}


def test_rows_split_rejects_unknown_problem():
    with pytest.raises(KeyError):
        rows_split(["1", "9"], {"1": "train"})


def test_leave_problems_out_folds_partition():
    folds = leave_problems_out_folds(PROBLEMS, n_folds=6, seed=1)
    held_out = [pid for fold in folds for pid in fold]
    assert sorted(held_out) == sorted(PROBLEMS)  # each problem held out exactly once
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert folds == leave_problems_out_folds(reversed(PROBLEMS), n_folds=6, seed=1)
    assert len(leave_problems_out_folds(PROBLEMS[:3], n_folds=10, seed=0)) == 3
    with pytest.raises(ValueError):
        leave_problems_out_folds(PROBLEMS, n_folds=1, seed=0)
