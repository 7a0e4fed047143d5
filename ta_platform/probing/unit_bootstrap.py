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
) -> UnitInterval:
    """Mean over seeds of ``statistic(labels, scores)`` with a unit-bootstrap percentile interval.

    Each draw takes as many units as the union holds, with replacement; a seed scores the rows of
    the drawn units it has (each repeated as often as drawn) and the draw's value is the nanmean
    over seeds. Draws with a non-finite value are dropped and counted; fewer than two usable draws
    give a NaN interval (never a fake one).
    """
    if not seeds:
        raise ValueError("seed_averaged_interval needs at least one seed's rows")
    prepared = [_prepare(rows) for rows in seeds]
    union = np.unique(np.concatenate([units for _, units, _ in prepared]))
    codes = [np.searchsorted(union, units) for _, units, _ in prepared]
    point = _nanmean([np.atleast_1d(np.asarray(statistic(labels, scores), dtype=np.float64))
                      for labels, _, scores in prepared])
    rng = np.random.default_rng([seed, 2718])
    draws = []
    for _ in range(n_resamples if union.size else 0):
        counts = np.bincount(rng.choice(union.size, size=union.size), minlength=union.size)
        per_seed = []
        for (labels, _, scores), seed_codes in zip(prepared, codes, strict=True):
            rows = np.repeat(np.arange(labels.size), counts[seed_codes])
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
