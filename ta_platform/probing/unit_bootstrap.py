"""Intervals and nulls over the SAMPLED UNIT, shared by every study.

The unit is whatever was sampled independently: a problem (anchors, chains), a problem group
(needle documents), a task or a system prompt (preferences). Rows of one unit are correlated, so
resampling rows pretends there are thousands of observations when there are a few dozen units.

``seed_averaged_interval`` is the one implementation of "resample units, recompute the reported
statistic": the reported statistic is the mean over seeds (re-splits) of a per-seed statistic, and
each bootstrap draw resamples the union of units with replacement and recomputes exactly that
seed-averaged statistic, every seed scoring the drawn units that are in its own rows. Averaging the
per-seed interval endpoints instead is not an interval of anything: it ignores that the seeds'
evaluation sets overlap and reuse the same units (a test plants two seeds with different test
draws and sees the difference).

``per_fold_statistic`` scores cross-fitted predictions fold by fold: under leave-problems-out each
fold's rows are scored by a different model (its own hyperparameter, its own scale of decision
values), so one PR-AUC over the pooled rows would rank one model's scores against another's. The
statistic is computed within each fold and averaged over folds weighted by the units each fold
holds; inside a bootstrap draw the weights are the DRAWN units (with multiplicity), so a fold of
one problem drawn twice counts twice -- without that, repeating a problem would change nothing
(a metric on duplicated rows is the same metric) and the interval would be too narrow.

``stratified_permutation_p_value`` is the one permutation null that respects the design: labels are
permuted only within strata (a prompt, a problem), so a between-stratum offset cannot read as signal.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeedRows:
    """One seed's evaluated rows: label, unit id and ``k`` score columns (probe, baselines...) per row."""

    seed: int
    labels: np.ndarray
    units: np.ndarray
    scores: np.ndarray  # [rows, k]


@dataclass(frozen=True)
class UnitInterval:
    """Seed-averaged statistic (``point``) and its percentile interval from unit resampling."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_valid: int  # draws whose every value was finite (the others are dropped, never filled in)
    n_units: int  # distinct units resampled (the union over seeds)
    unit: str
    statistic: str


def seed_averaged_interval(
    seeds: Sequence[SeedRows],
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    unit: str = "problem",
    statistic_name: str = "",
    weighted: bool = False,
) -> UnitInterval:
    """Mean over seeds of ``statistic(labels, scores)`` with a unit-bootstrap percentile interval.

    Each draw takes as many units as the union holds, with replacement; a seed scores the rows of
    the drawn units it has (each repeated as often as drawn) and the draw's value is the nanmean
    over seeds. Draws with a non-finite value are dropped and counted; fewer than two usable draws
    give a NaN interval (never a fake one).

    ``weighted=True``: ``statistic(labels, scores, weights)`` takes each row's multiplicity as a
    weight instead of repeated rows (the same value; at paper scale, 100k test tokens x 1000 draws,
    repeating rows is what costs: ``probing.rank_auroc`` scores dense ranks ranked once).
    """
    if not seeds:
        raise ValueError("seed_averaged_interval needs at least one seed's rows")
    prepared = [_prepare(rows) for rows in seeds]
    union = np.unique(np.concatenate([units for _, units, _ in prepared]))
    codes = [np.searchsorted(union, units) for _, units, _ in prepared]
    if weighted:
        point = _nanmean([np.atleast_1d(np.asarray(statistic(labels, scores, np.ones(labels.size)), dtype=np.float64))
                          for labels, _, scores in prepared])
    else:
        point = _nanmean([np.atleast_1d(np.asarray(statistic(labels, scores), dtype=np.float64))
                          for labels, _, scores in prepared])
    rng = np.random.default_rng([seed, 2718])
    draws = []
    for _ in range(n_resamples if union.size else 0):
        counts = np.bincount(rng.choice(union.size, size=union.size), minlength=union.size)
        per_seed = []
        for (labels, _, scores), seed_codes in zip(prepared, codes, strict=True):
            multiplicity = counts[seed_codes]
            if weighted and multiplicity.any():
                value = statistic(labels, scores, multiplicity.astype(np.float64))
                per_seed.append(np.atleast_1d(np.asarray(value, dtype=np.float64)))
                continue
            rows = np.repeat(np.arange(labels.size), multiplicity)
            if rows.size:
                per_seed.append(np.atleast_1d(np.asarray(statistic(labels[rows], scores[rows]), dtype=np.float64)))
        draws.append(_nanmean(per_seed) if per_seed else np.full(point.size, np.nan))
    finite = np.array([d for d in draws if d.shape == point.shape and np.all(np.isfinite(d))]).reshape(-1, point.size)
    alpha = (1.0 - level) / 2.0
    if len(finite) >= 2:
        low, high = np.quantile(finite, [alpha, 1.0 - alpha], axis=0)
    else:
        low, high = np.full(point.size, np.nan), np.full(point.size, np.nan)
    return UnitInterval(point, low, high, int(len(finite)), int(union.size), unit, statistic_name)


def fold_columns(scores, folds, units) -> np.ndarray:
    """``scores`` ([rows, k]) with two columns appended: the row's fold code and ``1 / rows of its unit``.

    The input ``per_fold_statistic`` reads: summed over a fold's (drawn) rows, the second column
    counts the fold's (drawn) units. A unit must sit in one fold (raises otherwise).
    """
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[:, None] if scores.ndim == 1 else scores
    folds, units = np.asarray(folds).astype(str), np.asarray(units).astype(str)
    if not (scores.shape[0] == folds.shape[0] == units.shape[0]):
        raise ValueError(f"{scores.shape[0]} score rows, {folds.shape[0]} folds and {units.shape[0]} units differ")
    pairs = np.unique(np.column_stack([units, folds]), axis=0) if units.size else np.empty((0, 2))
    unit_names, n_folds = np.unique(pairs[:, 0], return_counts=True)
    if np.any(n_folds > 1):
        raise ValueError(f"units in several folds: {unit_names[n_folds > 1][:10].tolist()}")
    _, fold_codes = np.unique(folds, return_inverse=True)
    _, unit_codes, unit_rows = np.unique(units, return_inverse=True, return_counts=True)
    return np.column_stack([scores, fold_codes.astype(np.float64), 1.0 / unit_rows[unit_codes]])


def per_fold_statistic(statistic: Callable[[np.ndarray, np.ndarray], np.ndarray]
                       ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``statistic`` computed within each fold of ``fold_columns`` input, averaged over the folds
    weighted by their (drawn) units. A fold whose value is not finite (its drawn rows hold one class)
    is left out of that average; with no fold left the result is NaN. One fold: ``statistic`` itself."""
    def per_fold(labels: np.ndarray, columns: np.ndarray) -> np.ndarray:
        scores, fold, weight = columns[:, :-2], columns[:, -2], columns[:, -1]
        values, weights = [], []
        for code in np.unique(fold):
            rows = fold == code
            value = np.atleast_1d(np.asarray(statistic(labels[rows], scores[rows]), dtype=np.float64))
            if np.all(np.isfinite(value)):
                values.append(value)
                weights.append(weight[rows].sum())
        if not values:
            return np.full(np.atleast_1d(statistic(labels[:0], scores[:0])).shape, np.nan)
        return np.average(np.vstack(values), axis=0, weights=np.asarray(weights))

    return per_fold


def stratified_permutation(values, strata, rng: np.random.Generator) -> np.ndarray:
    """``values`` permuted within each stratum: every stratum keeps exactly its own multiset of values."""
    values = np.asarray(values)
    strata = np.asarray(strata)
    if values.shape[0] != strata.shape[0]:
        raise ValueError(f"{values.shape[0]} values but {strata.shape[0]} strata labels")
    permuted = values.copy()
    _, codes = np.unique(strata.astype(str), return_inverse=True)
    for code in range(int(codes.max()) + 1 if codes.size else 0):
        rows = np.flatnonzero(codes == code)
        permuted[rows] = values[rng.permutation(rows)]
    return permuted


def stratified_permutation_p_value(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    x,
    y,
    strata,
    *,
    n_permutations: int = 1000,
    seed: int = 0,
) -> float:
    """One-sided permutation p-value of ``statistic(x, y)`` with ``y`` permuted within ``strata``.

    ``p = (1 + #{permuted >= observed}) / (1 + n_permutations)`` (never 0); a NaN permuted value
    counts as not exceeding. A NaN observed statistic gives NaN.
    """
    observed = float(statistic(x, y))
    if not np.isfinite(observed):
        return float("nan")
    rng = np.random.default_rng([seed, 1618])
    exceed = 0
    for _ in range(n_permutations):
        value = float(statistic(x, stratified_permutation(y, strata, rng)))
        exceed += bool(np.isfinite(value) and value >= observed)
    return (1.0 + exceed) / (1.0 + n_permutations)


def _prepare(rows: SeedRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(rows.labels)
    units = np.asarray(rows.units).astype(str)
    scores = np.asarray(rows.scores, dtype=np.float64)
    scores = scores[:, None] if scores.ndim == 1 else scores
    if not (labels.shape[0] == units.shape[0] == scores.shape[0]):
        raise ValueError(f"seed {rows.seed}: {labels.shape[0]} labels, {units.shape[0]} units and "
                         f"{scores.shape[0]} score rows differ")
    return labels, units, scores


def _nanmean(vectors: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column NaN in every seed stays NaN
        return np.nanmean(np.vstack(vectors), axis=0)
