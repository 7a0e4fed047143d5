"""Problem-level splits: every sentence of a problem lands in one split.

Why by problem: sentences of one trace share the problem text and most of the context, so a
sentence-level split lets a probe recognise the problem instead of the anchor. The correct and
incorrect traces of one problem share its ``problem_id`` and therefore also land together.

Why hashing instead of ``rng.permutation``: the order of problems is ``sha256(f"{seed}:{id}")``, so
the assignment depends only on the seed and the set of ids -- not on input order, not on the NumPy
version -- and the labels asset's stored seed-0 split is reproducible forever.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


def problem_level_split(
    problem_ids: Iterable, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> dict[str, str]:
    """Map each distinct problem id (as ``str``) to ``"train"``, ``"val"`` or ``"test"``.

    Sizes: val and test get ``round(fraction * n)`` problems, at least one each when their fraction
    is positive and there are >= 3 problems; train gets the rest (at least one). With 2 problems the
    split is train/test, with 1 it is train only: there is nothing to hold out.
    """
    ids = _distinct_ids(problem_ids)
    train_frac, val_frac, test_frac = _check_fractions(fractions)
    n = len(ids)
    if n == 0:
        return {}
    n_val = _held_out_count(val_frac, n) if n >= 3 else 0
    n_test = _held_out_count(test_frac, n) if n >= 2 else 0
    while n - n_val - n_test < 1:  # keep at least one training problem
        if n_val >= n_test and n_val > (1 if val_frac > 0 else 0):
            n_val -= 1
        else:
            n_test -= 1
    ordered = hash_order(ids, seed)
    assignment = {pid: "test" for pid in ordered[:n_test]}
    assignment.update({pid: "val" for pid in ordered[n_test : n_test + n_val]})
    assignment.update({pid: "train" for pid in ordered[n_test + n_val :]})
    return assignment


def hash_order(ids: Iterable, seed: int) -> list[str]:
    """The one seeded hash order of every study: ids (as ``str``) sorted by ``sha256(f"{seed}:{id}")``.

    Depends only on the seed and each id itself: adding or dropping an id never reorders the others,
    which is what keeps a unit's split fixed when a slice or model keeps fewer units.
    """
    return sorted((str(item) for item in ids),
                  key=lambda item: hashlib.sha256(f"{int(seed)}:{item}".encode()).hexdigest())


def unit_identity(text: str) -> str:
    """A unit's id from its identifying text: sha256 hex (first 16) of the whitespace-normalised text.

    Why text and not a row index or file name: two chains of one problem (or a document renamed)
    must map to the same unit so they land in the same split; collapsing whitespace keeps a
    re-wrapped copy of a problem statement the same unit.
    """
    normalised = re.sub(r"\s+", " ", str(text)).strip()
    return hashlib.sha256(normalised.encode()).hexdigest()[:16]


def unit_split(unit_ids: Iterable, seed: int,
               fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict[str, str]:
    """``problem_level_split`` for any unit (chain problem, document group, task, prompt).

    Compute it ONCE per seed over the whole dataset's units and let every slice and model read it:
    a slice that keeps fewer units then keeps everyone else's split.
    """
    return problem_level_split(unit_ids, seed, fractions)


def leave_problems_out_folds(problem_ids: Iterable, n_folds: int, seed: int) -> list[tuple[str, ...]]:
    """Held-out problem ids of each fold: a seeded partition of the problems into ``n_folds`` groups.

    For small datasets where a single 15% test split holds only 2-4 problems: every problem is
    predicted exactly once by a model that never saw it, so metrics and bootstrap intervals use all
    problems. ``n_folds`` is capped at the number of problems; fold sizes differ by at most one.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, not {n_folds}")
    ordered = hash_order(_distinct_ids(problem_ids), seed)
    n_folds = min(n_folds, len(ordered))
    return [tuple(sorted(ordered[fold::n_folds])) for fold in range(n_folds)]


def rows_split(problem_ids: Iterable, assignment: Mapping[str, str]) -> np.ndarray:
    """Split name of each row, from its problem id; raises if a problem has no assignment."""
    ids = [str(pid) for pid in problem_ids]
    missing = sorted(set(ids) - set(assignment))
    if missing:
        raise KeyError(f"problems without a split assignment: {missing[:10]}")
    return np.array([assignment[pid] for pid in ids], dtype=object)


def _distinct_ids(problem_ids: Iterable) -> list[str]:
    return sorted({str(pid) for pid in problem_ids})


def _held_out_count(fraction: float, n: int) -> int:
    if fraction <= 0:
        return 0
    return max(1, int(round(fraction * n)))


def _check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, not {fractions}")
    if fractions[0] <= 0:
        raise ValueError("the train fraction must be positive")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])
