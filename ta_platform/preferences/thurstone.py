"""Thurstonian utilities: a vectorised MAP fit of P(A > B) = Phi((mu_A - mu_B) / sqrt(s_A^2 + s_B^2)).

Why this design (see docs/preferences.md): the common recipe (Adam on soft labels, 1000 full-batch
steps) is slow and over-confident. Here the outcomes are first aggregated into one row per unique
unordered pair with win counts, the negative log posterior and its ANALYTIC gradient are computed
with numpy (``np.bincount`` scatters per-pair terms onto tasks, no per-pair Python loop), and
scipy's L-BFGS-B does the optimisation. A Gaussian prior on mu both fixes the location (mu is only
identified up to a shift) and calibrates the probabilities; an L2 penalty on log sigma fixes the
scale (mu and sigma can be scaled together). The prior strength is chosen by held-out log-loss.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import log_ndtr, ndtr
from scipy.stats import spearmanr

from ta_platform.common.faults import DataFault
from ta_platform.common.threads import single_blas_thread
from ta_platform.probing.unit_bootstrap import SeedRows, seed_averaged_interval

DEFAULT_PRIOR_GRID: tuple[float, ...] = (3.0, 1.0, 0.3, 0.1, 0.03)
DEFAULT_SIGMA_PENALTY = 10.0
LOG_SIGMA_BOUNDS = (-3.0, 2.0)
_WINNERS = ("a", "b")
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


# --------------------------------------------------------------------------- validation


def _fail(message: str, source: str | None) -> None:
    if source is not None:
        raise DataFault(source, message)
    raise ValueError(message)


def validate_outcomes(
    outcomes: pd.DataFrame,
    task_ids: Iterable[str] | None = None,
    *,
    source: str | None = None,
) -> pd.DataFrame:
    """Check one-row-per-comparison outcomes and return a clean copy (str ids, lower-case winner).

    Why: a silently dropped or misread row biases every utility. Errors name the first bad row
    (1-based data row); with ``source`` (the file it came from) they are ``DataFault(source, ...)``,
    otherwise ``ValueError``. Checked: required columns, missing ids, unknown ids (when
    ``task_ids`` is given), self-comparisons, and winners other than "a"/"b" (NaN included).
    """
    missing = [c for c in ("task_a", "task_b", "winner") if c not in outcomes.columns]
    if missing:
        _fail(f"missing column(s) {missing}; expected task_a, task_b, winner", source)
    frame = outcomes.reset_index(drop=True).copy()
    for column in ("task_a", "task_b"):
        null = frame[column].isna().to_numpy()
        if null.any():
            row = int(np.flatnonzero(null)[0])
            _fail(f"row {row + 1}: {column} is missing", source)
        frame[column] = frame[column].astype(str)
    winner = frame["winner"]
    normalised = winner.where(winner.isna(), winner.astype(str).str.strip().str.lower())
    bad = ~normalised.isin(_WINNERS).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = winner.iloc[row]
        shown = "missing (NaN)" if pd.isna(value) else repr(value)
        _fail(f"row {row + 1}: winner is {shown}; expected 'a' or 'b'", source)
    frame["winner"] = normalised.astype(str)
    same = (frame["task_a"] == frame["task_b"]).to_numpy()
    if same.any():
        row = int(np.flatnonzero(same)[0])
        _fail(f"row {row + 1}: self-comparison of task {frame['task_a'].iloc[row]!r}", source)
    if task_ids is not None:
        known = pd.Index(pd.Series(list(task_ids), dtype=str))
        for column in ("task_a", "task_b"):
            unknown = ~frame[column].isin(known).to_numpy()
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                _fail(f"row {row + 1}: unknown task id {frame[column].iloc[row]!r} in {column}", source)
    return frame


# --------------------------------------------------------------------------- aggregation


@dataclass(frozen=True)
class PairCounts:
    """Outcomes aggregated to unique unordered pairs: ``first < second`` (task indices)."""

    first: np.ndarray
    second: np.ndarray
    wins_first: np.ndarray
    wins_second: np.ndarray

    @property
    def n_comparisons(self) -> int:
        return int(self.wins_first.sum() + self.wins_second.sum())


def aggregate_pairs(outcomes: pd.DataFrame, index: pd.Index) -> PairCounts:
    """Collapse comparison rows into win counts per unique pair (vectorised, no Python loop).

    ``index`` maps task ids to positions; ``outcomes`` must already be validated.
    """
    a = index.get_indexer(outcomes["task_a"].to_numpy())
    b = index.get_indexer(outcomes["task_b"].to_numpy())
    if (a < 0).any() or (b < 0).any():
        raise ValueError("outcome references a task id that is not in the task index")
    a_won = (outcomes["winner"].to_numpy() == "a")
    low, high = np.minimum(a, b), np.maximum(a, b)
    low_won = np.where(a < b, a_won, ~a_won)
    n = len(index)
    key = low.astype(np.int64) * n + high
    unique_keys, inverse = np.unique(key, return_inverse=True)
    wins_low = np.bincount(inverse, weights=low_won, minlength=len(unique_keys))
    totals = np.bincount(inverse, minlength=len(unique_keys)).astype(float)
    return PairCounts(
        first=(unique_keys // n).astype(np.int64),
        second=(unique_keys % n).astype(np.int64),
        wins_first=wins_low,
        wins_second=totals - wins_low,
    )


# --------------------------------------------------------------------------- objective


def _log_cdf_both_sides(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log Phi(z), log Phi(-z)) from ONE ``ndtr`` call; exact ``log_ndtr`` only in the tails.

    Why: ``log_ndtr`` twice was ~2/3 of the objective's cost. For |z| <= 5 both probabilities are
    >= 2.8e-7, so 1 - Phi(z) keeps ~1e-9 relative accuracy; beyond that ``log_ndtr`` is used.
    """
    p = ndtr(z)
    with np.errstate(divide="ignore"):
        log_pos, log_neg = np.log(p), np.log1p(-p)
    tail = np.flatnonzero(np.abs(z) > 5.0)
    if len(tail):
        log_pos[tail] = log_ndtr(z[tail])
        log_neg[tail] = log_ndtr(-z[tail])
    return log_pos, log_neg


def negative_log_posterior(
    params: np.ndarray,
    pairs: PairCounts,
    n_tasks: int,
    prior_strength: float,
    sigma_penalty: float = DEFAULT_SIGMA_PENALTY,
) -> tuple[float, np.ndarray]:
    """Objective and analytic gradient for ``params = [mu (n), log_sigma (n)]``.

    loss = -sum_pairs [w_ij log Phi(z) + w_ji log Phi(-z)] + prior/2 |mu|^2 + penalty/2 |log s|^2
    with z = (mu_i - mu_j) / sqrt(s_i^2 + s_j^2). d loss/dz = -(w_ij r(z) - w_ji r(-z)) with
    r(z) = phi(z)/Phi(z) computed in log space; dz/dmu_i = 1/s, dz/dlog s_i = -z s_i^2 / s^2.
    """
    mu = params[:n_tasks]
    log_sigma = params[n_tasks:]
    # log sigma is clipped inside the likelihood (not bounded in L-BFGS-B: scipy converts 2n bounds
    # in a Python loop, ~0.1 s per fit); the penalty keeps it far inside the clip range anyway.
    inside = (log_sigma > LOG_SIGMA_BOUNDS[0]) & (log_sigma < LOG_SIGMA_BOUNDS[1])
    var = np.exp(2.0 * np.clip(log_sigma, *LOG_SIGMA_BOUNDS))
    i, j = pairs.first, pairs.second
    pair_var = var[i] + var[j]
    scale = np.sqrt(pair_var)
    z = (mu[i] - mu[j]) / scale
    log_cdf_pos, log_cdf_neg = _log_cdf_both_sides(z)
    log_pdf = -0.5 * z * z - _LOG_SQRT_2PI
    nll = -(pairs.wins_first @ log_cdf_pos + pairs.wins_second @ log_cdf_neg)
    d_z = -(pairs.wins_first * np.exp(log_pdf - log_cdf_pos) - pairs.wins_second * np.exp(log_pdf - log_cdf_neg))
    d_mu_pair = d_z / scale
    grad_mu = np.bincount(i, weights=d_mu_pair, minlength=n_tasks) - np.bincount(j, weights=d_mu_pair, minlength=n_tasks)
    d_common = -d_z * z / pair_var
    grad_log_sigma = np.bincount(i, weights=d_common * var[i], minlength=n_tasks) + np.bincount(
        j, weights=d_common * var[j], minlength=n_tasks
    )
    grad_log_sigma *= inside
    loss = nll + 0.5 * prior_strength * (mu @ mu) + 0.5 * sigma_penalty * (log_sigma @ log_sigma)
    grad = np.concatenate([grad_mu + prior_strength * mu, grad_log_sigma + sigma_penalty * log_sigma])
    return float(loss), grad


def _optimise(
    pairs: PairCounts,
    n_tasks: int,
    prior_strength: float,
    sigma_penalty: float,
    x0: np.ndarray,
    max_iter: int,
) -> tuple[np.ndarray, bool, int]:
    with single_blas_thread():  # see threads.py: ~15x faster than threaded OpenBLAS here
        result = minimize(
            negative_log_posterior,
            x0,
            args=(pairs, n_tasks, prior_strength, sigma_penalty),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "gtol": 1e-6, "ftol": 1e-8},
        )
    return result.x, bool(result.success), int(result.nit)


# --------------------------------------------------------------------------- metrics


def probability_first_wins(mu: np.ndarray, sigma: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(task a preferred to task b) for index arrays ``a``, ``b``."""
    return ndtr((mu[a] - mu[b]) / np.sqrt(sigma[a] ** 2 + sigma[b] ** 2))


def pairwise_metrics(p_first: np.ndarray, first_won: np.ndarray) -> dict[str, float]:
    """Accuracy (ties at 0.5 count half) and mean log-loss of per-comparison predictions."""
    if len(p_first) == 0:
        return {"accuracy": float("nan"), "log_loss": float("nan")}
    p = np.clip(p_first, 1e-12, 1 - 1e-12)
    correct = np.where(p == 0.5, 0.5, (p > 0.5) == first_won)
    log_loss = -np.mean(np.where(first_won, np.log(p), np.log1p(-p)))
    return {"accuracy": float(np.mean(correct)), "log_loss": float(log_loss)}


def noise_ceiling(pairs: PairCounts) -> float:
    """Self-consistency: P(two samples of one pair agree), p^2 + (1-p)^2 averaged over repeated pairs.

    Why kept: it says how repeatable the judge is. It is NOT the best achievable accuracy (see
    ``accuracy_ceiling``). NaN when no pair was sampled twice.
    """
    agree, n = _repeated_agreement(pairs)
    return float(np.average(agree, weights=n)) if n.size else float("nan")


def _repeated_agreement(pairs: PairCounts) -> tuple[np.ndarray, np.ndarray]:
    """Per pair sampled at least twice: the unbiased agreement estimate p^2 + (1-p)^2 and the sample count."""
    total = pairs.wins_first + pairs.wins_second
    repeated = total >= 2
    w, ell, n = pairs.wins_first[repeated], pairs.wins_second[repeated], total[repeated]
    return (w * (w - 1) + ell * (ell - 1)) / (n * (n - 1)), n


def accuracy_ceiling(p_first: np.ndarray | None = None, pairs: PairCounts | None = None) -> float:
    """The best accuracy any model can reach predicting single comparisons: mean max(p, 1 - p).

    With the judge's own probabilities ``p_first`` (simulated and logit judges report them) this is
    exact. Otherwise it is estimated from repeated samples: per pair, the unbiased agreement
    a = p^2 + (1-p)^2 gives |2p - 1| = sqrt(2a - 1), so max(p, 1-p) = (1 + sqrt(max(2a - 1, 0))) / 2.
    NaN when neither is available.
    """
    if p_first is not None and len(p_first):
        p = np.asarray(p_first, float)
        return float(np.mean(np.maximum(p, 1.0 - p)))
    if pairs is None:
        return float("nan")
    agree, n = _repeated_agreement(pairs)
    if not n.size:
        return float("nan")
    return float(np.average(0.5 * (1.0 + np.sqrt(np.clip(2.0 * agree - 1.0, 0.0, None))), weights=n))


def _accuracy_column(first_won: np.ndarray, p_first: np.ndarray) -> np.ndarray:
    """Pairwise accuracy (ties at 0.5 count half) of one score column: the statistic the interval recomputes."""
    p = p_first[:, 0]
    return np.array([np.mean(np.where(p == 0.5, 0.5, (p > 0.5) == first_won))])


def accuracy_interval(p_first: np.ndarray, first_won: np.ndarray, units: np.ndarray | None = None, *,
                      n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of pairwise accuracy, resampling ``units`` (seeded); NaN when empty.

    ``units``: the sampled unit of each comparison -- the unordered PAIR (``fit_thurstonian`` passes
    it): the repeated samples of one pair share its true probability, so resampling comparisons
    would count a pair judged five times as five independent observations and give an interval
    too narrow. Each draw resamples units with replacement and recomputes the accuracy over their
    comparisons (``probing.unit_bootstrap.seed_averaged_interval`` with one seed). Without
    ``units`` every comparison is its own unit.
    """
    if len(p_first) == 0:
        return float("nan"), float("nan")
    won = np.asarray(first_won, bool)
    units = np.arange(len(won)) if units is None else np.asarray(units)
    interval = seed_averaged_interval([SeedRows(0, won, units, np.asarray(p_first, float)[:, None])],
                                      _accuracy_column, n_resamples=n_resamples, seed=seed, level=level,
                                      unit="pair", statistic_name="held-out pairwise accuracy")
    return float(interval.low[0]), float(interval.high[0])


def pair_units(a: np.ndarray, b: np.ndarray, n_tasks: int) -> np.ndarray:
    """One id per unordered pair of task indices (``a``/``b`` in either order give the same id)."""
    return np.minimum(a, b).astype(np.int64) * n_tasks + np.maximum(a, b)


# --------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class ThurstonianFit:
    """Fitted utilities (``task_id, mu, sigma``) with the diagnostics the study reports."""

    utilities: pd.DataFrame
    prior_strength: float
    converged: bool
    n_iterations: int
    n_comparisons: int
    n_pairs: int
    train_log_loss: float
    heldout_accuracy: float
    heldout_log_loss: float
    n_heldout: int
    heldout_source: str  # "heldout" (given pairs), "validation" (split from training), "none"
    noise_ceiling: float  # best achievable accuracy, mean max(p, 1-p) (``accuracy_ceiling``)
    fit_seconds: float
    selection: pd.DataFrame = field(repr=False)  # prior_strength, validation_log_loss, validation_accuracy
    validation_log_loss: float = float("nan")  # of the chosen prior, on pairs apart from the reported ones
    heldout_accuracy_low: float = float("nan")  # 95% interval, held-out PAIRS resampled (accuracy recomputed)
    heldout_accuracy_high: float = float("nan")
    self_consistency: float = float("nan")  # P(two samples of a pair agree) (``noise_ceiling``)

    def mu(self) -> pd.Series:
        return self.utilities.set_index("task_id")["mu"]

    def predict(self, task_a: Sequence[str], task_b: Sequence[str]) -> np.ndarray:
        """P(task_a preferred to task_b) under the fitted model."""
        index = pd.Index(self.utilities["task_id"])
        mu = self.utilities["mu"].to_numpy()
        sigma = self.utilities["sigma"].to_numpy()
        a, b = index.get_indexer(list(task_a)), index.get_indexer(list(task_b))
        if (a < 0).any() or (b < 0).any():
            raise ValueError("predict() got a task id that was not fitted")
        return probability_first_wins(mu, sigma, a, b)

    def summary(self) -> dict[str, float | int | bool | str]:
        """Flat, JSON-friendly metrics for logs, CLIs and asset metadata."""
        return {
            "n_tasks": len(self.utilities),
            "n_comparisons": self.n_comparisons,
            "n_pairs": self.n_pairs,
            "prior_strength": self.prior_strength,
            "converged": self.converged,
            "n_iterations": self.n_iterations,
            "train_log_loss": self.train_log_loss,
            "heldout_source": self.heldout_source,
            "n_heldout": self.n_heldout,
            "heldout_accuracy": self.heldout_accuracy,
            "heldout_log_loss": self.heldout_log_loss,
            "noise_ceiling": self.noise_ceiling,
            "fit_seconds": self.fit_seconds,
            "validation_log_loss": self.validation_log_loss,
            "heldout_accuracy_low": self.heldout_accuracy_low,
            "heldout_accuracy_high": self.heldout_accuracy_high,
            "self_consistency": self.self_consistency,
        }


def _split_validation(outcomes: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a seeded fraction of unordered PAIRS (all samples of a pair go to one side)."""
    low = np.minimum(outcomes["task_a"].to_numpy(), outcomes["task_b"].to_numpy())
    high = np.maximum(outcomes["task_a"].to_numpy(), outcomes["task_b"].to_numpy())
    pair_key = pd.Series(low, dtype=str) + "\x1f" + pd.Series(high, dtype=str)
    codes, uniques = pd.factorize(pair_key)
    rng = np.random.default_rng(seed)
    held_pairs = rng.random(len(uniques)) < fraction
    held = held_pairs[codes]
    return outcomes.loc[~held], outcomes.loc[held]


def _heldout_arrays(heldout: pd.DataFrame | None, index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if heldout is None:
        return np.array([], int), np.array([], int), np.array([], bool)
    a = index.get_indexer(heldout["task_a"].to_numpy())
    b = index.get_indexer(heldout["task_b"].to_numpy())
    keep = (a >= 0) & (b >= 0)
    return a[keep], b[keep], (heldout["winner"].to_numpy() == "a")[keep]


def _judge_probabilities(rows: pd.DataFrame | None) -> np.ndarray | None:
    """The judge's own P(task_a wins) per row when the outcomes carry it (column ``p_a``)."""
    if rows is None or "p_a" not in rows.columns or rows.empty:
        return None
    p = pd.to_numeric(rows["p_a"], errors="coerce").to_numpy(float)
    return p if np.isfinite(p).all() else None


def fit_thurstonian(
    outcomes: pd.DataFrame,
    task_ids: Sequence[str] | None = None,
    *,
    heldout: pd.DataFrame | None = None,
    prior_grid: Sequence[float] = DEFAULT_PRIOR_GRID,
    sigma_penalty: float = DEFAULT_SIGMA_PENALTY,
    validation_fraction: float = 0.1,
    init: ThurstonianFit | Mapping[str, float] | None = None,
    max_iter: int = 2000,
    seed: int = 0,
    source: str | None = None,
) -> ThurstonianFit:
    """Fit mu and sigma per task by MAP; choose the prior strength by validation log-loss.

    ``outcomes`` has one row per comparison (``task_a, task_b, winner`` in {"a", "b"}); an optional
    boolean ``heldout`` column moves those rows to the held-out set (the active-learning output
    format). Held-out rows come from ``heldout`` or that column; with neither, a seeded
    ``validation_fraction`` of pairs is split off to choose the prior and the final fit then uses
    all rows. ``task_ids`` fixes the task universe (unknown ids are errors; tasks with no
    comparisons get the prior mean). Grid values are fitted strongest-first, each warm-started from
    the previous solution, and EVERY value is fitted: validation log-loss need not be unimodal in the
    prior strength (a noisy validation set can be worse at one value and better at the next), so
    stopping at the first worse value could miss the minimum (the grid is 5 values: at most 5 fits).
    The prior is chosen on validation pairs split from the training rows, never on the reported
    held-out rows; with no held-out rows, half of the split-off pairs is reported instead
    (``heldout_source="validation"``). ``noise_ceiling`` is the best achievable accuracy
    (``accuracy_ceiling``): from the judge's probabilities (column ``p_a``) when present.
    """
    started = time.perf_counter()
    frame = validate_outcomes(outcomes, task_ids, source=source)
    if heldout is None and "heldout" in frame.columns:
        mask = frame["heldout"].astype(bool).to_numpy()
        heldout, frame = frame.loc[mask], frame.loc[~mask]
    elif heldout is not None:
        heldout = validate_outcomes(heldout, task_ids, source=source)
    if frame.empty:
        _fail("no training comparisons to fit", source)
    if task_ids is None:
        seen = [frame["task_a"].to_numpy(), frame["task_b"].to_numpy()]
        if heldout is not None:
            seen += [heldout["task_a"].to_numpy(), heldout["task_b"].to_numpy()]
        index = pd.Index(pd.unique(np.concatenate(seen)))
    else:
        index = pd.Index(pd.Series(list(task_ids), dtype=str))
        if index.has_duplicates:
            raise ValueError("task_ids contains duplicates")
    n = len(index)
    x0 = np.zeros(2 * n)
    if init is not None:
        mapping = init.mu() if isinstance(init, ThurstonianFit) else pd.Series(init, dtype=float)
        x0[:n] = mapping.reindex(index).fillna(0.0).to_numpy()
        if isinstance(init, ThurstonianFit):
            sig = init.utilities.set_index("task_id")["sigma"].reindex(index).fillna(1.0).to_numpy()
            x0[n:] = np.clip(np.log(sig), *LOG_SIGMA_BOUNDS)

    # Three disjoint roles (issue 9): the prior is chosen on VALIDATION pairs split from training, and
    # accuracy/log-loss are reported on held-out pairs never used for any choice. Without given
    # held-out rows, the split pairs are halved: one half chooses, the other is reported.
    grid = sorted({float(p) for p in prior_grid}, reverse=True)
    if not grid:
        raise ValueError("prior_grid is empty")
    choose = len(grid) > 1 and validation_fraction > 0
    report_on: pd.DataFrame | None = None
    select_on: pd.DataFrame | None = None
    fit_on = frame
    if heldout is not None and not heldout.empty:
        heldout_source, report_on = "heldout", heldout
        if choose:
            fit_on, select_on = _split_validation(frame, validation_fraction, seed)
    elif choose:
        heldout_source = "validation"
        fit_on, split_off = _split_validation(frame, 2 * validation_fraction, seed)
        select_on, report_on = _split_validation(split_off, 0.5, seed + 1)
    else:
        heldout_source = "none"

    sel_pairs = aggregate_pairs(fit_on, index)
    sel_a, sel_b, sel_won = _heldout_arrays(select_on, index)
    rows, best = [], None
    x = x0
    for strength in grid:
        x, ok, nit = _optimise(sel_pairs, n, strength, sigma_penalty, x, max_iter)
        p = probability_first_wins(x[:n], np.exp(x[n:]), sel_a, sel_b)
        metrics = pairwise_metrics(p, sel_won)
        rows.append({"prior_strength": strength, "validation_log_loss": metrics["log_loss"],
                     "validation_accuracy": metrics["accuracy"], "n_iterations": nit, "converged": ok})
        score = metrics["log_loss"] if len(sel_a) else 0.0
        if best is None or score < best[0]:
            best = (score, strength, x.copy(), ok, nit, metrics)
        if not len(sel_a):
            break  # nothing to choose on: the strongest prior, fitted once
    _, strength, x_best, converged, n_iter, validation = best
    rep_a, rep_b, rep_won = _heldout_arrays(report_on, index)
    if heldout_source == "validation":
        # Report on the split-off half never used to choose, from the fit that never saw it ...
        rep_p = probability_first_wins(x_best[:n], np.exp(x_best[n:]), rep_a, rep_b)
    pairs = sel_pairs
    if fit_on is not frame:
        # ... then refit on every training row with the chosen prior, from the selected solution.
        pairs = aggregate_pairs(frame, index)
        x_best, converged, extra = _optimise(pairs, n, strength, sigma_penalty, x_best, max_iter)
        n_iter += extra
    mu, sigma = x_best[:n], np.exp(x_best[n:])
    if heldout_source == "heldout":
        rep_p = probability_first_wins(mu, sigma, rep_a, rep_b)
    elif heldout_source == "none":
        rep_p = np.array([])
    metrics = pairwise_metrics(rep_p, rep_won)
    low, high = accuracy_interval(rep_p, rep_won, pair_units(rep_a, rep_b, n), seed=seed)
    judge_p = _judge_probabilities(report_on)
    shift = mu.mean()  # report centred utilities; the prior already pins the location near 0
    train_p = probability_first_wins(mu, sigma, pairs.first, pairs.second)
    train_loss = -(pairs.wins_first @ np.log(np.clip(train_p, 1e-12, 1)) + pairs.wins_second @ np.log(
        np.clip(1 - train_p, 1e-12, 1))) / max(pairs.n_comparisons, 1)
    utilities = pd.DataFrame({"task_id": index.to_numpy(), "mu": mu - shift, "sigma": sigma})
    return ThurstonianFit(
        utilities=utilities,
        prior_strength=strength,
        converged=converged,
        n_iterations=n_iter,
        n_comparisons=pairs.n_comparisons,
        n_pairs=len(pairs.first),
        train_log_loss=float(train_loss),
        heldout_accuracy=metrics["accuracy"],
        heldout_log_loss=metrics["log_loss"],
        n_heldout=int(len(rep_a)),
        heldout_source=heldout_source,
        noise_ceiling=accuracy_ceiling(judge_p, pairs),
        fit_seconds=time.perf_counter() - started,
        selection=pd.DataFrame(rows),
        validation_log_loss=validation["log_loss"],
        heldout_accuracy_low=low,
        heldout_accuracy_high=high,
        self_consistency=noise_ceiling(pairs),
    )


def rank_stability(previous: pd.Series, current: pd.Series) -> float:
    """Spearman correlation of two utility vectors over their shared task ids (stopping rule)."""
    shared = previous.index.intersection(current.index)
    if len(shared) < 3:
        return float("nan")
    return float(spearmanr(previous.loc[shared].to_numpy(), current.loc[shared].to_numpy()).statistic)
