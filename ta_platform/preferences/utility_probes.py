"""Utility probes: standardised Ridge from features (activations or content) to Thurstonian mu.

Protocol (seed 004): train on the TRAIN tasks; sweep alpha over logspace(-1, 5, 10) and choose it on
a seeded half of the EVAL tasks; report Pearson r and pairwise accuracy on the other half. Targets
are raw mu and topic-demeaned mu (OLS residuals on topic one-hots, i.e. mu minus its topic mean,
computed within each task set). Hold-one-topic-out: train on train tasks of all other topics, choose
alpha on the selection half of other-topic eval tasks, report in-distribution on the report half of
other-topic eval tasks and held-out on the train tasks of the held-out topic (same utility fit as
the training targets, never seen by the probe). Every feature set goes through the same splits, so
probe vs content baseline is a like-for-like comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ta_platform.common.threads import single_blas_thread
from ta_platform.probing.engine_ridge import RidgeGrid
from ta_platform.probing.engine_ridge_folds import fit_ridge_grid, fit_ridge_grids_leaving_out
from ta_platform.probing.metrics import pairwise_accuracy

ALPHAS: np.ndarray = np.logspace(-1, 5, 10)
REPORT_COLUMNS = ("features", "target", "scope", "held_out_topic", "alpha", "metric", "value", "n", "ci_low", "ci_high")
N_RESAMPLES = 500


# --------------------------------------------------------------------------- metrics


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    a, b = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def topic_demean(values: np.ndarray, topics: Sequence[str]) -> np.ndarray:
    """OLS residuals of ``values`` on topic one-hot indicators (= value minus its topic mean)."""
    series = pd.Series(np.asarray(values, float))
    return (series - series.groupby(np.asarray(topics)).transform("mean")).to_numpy()


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into (alpha-selection half, report half)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


# --------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class RidgeModel:
    """Standardised ridge at one alpha of a fitted sweep (``probing.engine_ridge.fit_ridge_grid``)."""

    grid: RidgeGrid
    alpha: float
    target: int = 0  # which target column of the sweep

    def predict(self, features: np.ndarray) -> np.ndarray:
        with single_blas_thread():
            return self.grid.predict(features, self.alpha)[:, self.target]

    def weights(self) -> dict[str, np.ndarray]:
        """``prediction = ((features - scaler_mean) / scaler_scale) @ coef + intercept``."""
        return {"coef": self.grid.coef(self.alpha)[:, self.target].copy(),
                "intercept": self.grid.y_mean[self.target: self.target + 1].copy(),
                "scaler_mean": self.grid.scaler.mean.copy(), "scaler_scale": self.grid.scaler.scale.copy()}


@dataclass(frozen=True)
class RidgeProbe:
    """A fitted probe, the alpha it chose, and the sweep that chose it."""

    model: RidgeModel
    alpha: float
    sweep: pd.DataFrame  # alpha, selection_r, selection_pairwise_accuracy

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(features)


def fit_ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_select: np.ndarray, y_select: np.ndarray, *,
                    alphas: Sequence[float] = ALPHAS, seed: int = 0) -> RidgeProbe:
    """Standardised ridge on the training rows; alpha chosen by Pearson r on the selection rows.

    The probe engine solves the whole alpha sweep at once (``fit_ridge_grid``: one accumulated X'X and
    one eigendecomposition up to 2,048 dims, preconditioned conjugate gradients over the rows above;
    sklearn's ``StandardScaler`` + ``Ridge`` objective, checked in test_probing_engine.py). Ties in r go
    to the larger alpha.
    """
    y_train, y_select = np.asarray(y_train, np.float64), np.asarray(y_select, np.float64)
    return fit_ridge_probes(x_train, y_train[:, None], x_select, y_select[:, None], alphas=alphas, seed=seed)[0]


def fit_ridge_probes(x_train: np.ndarray, y_train: np.ndarray, x_select: np.ndarray, y_select: np.ndarray, *,
                     alphas: Sequence[float] = ALPHAS, seed: int = 0) -> list[RidgeProbe]:
    """``fit_ridge_probe`` for several targets ([rows, targets]) on the same rows: one sweep for all of
    them (e.g. raw and topic-demeaned mu); alpha chosen per target."""
    with single_blas_thread():
        grid = fit_ridge_grid(x_train, np.asarray(y_train, np.float64), [float(alpha) for alpha in alphas])
    return choose_alpha(grid, x_select, y_select)


def choose_alpha(grid: RidgeGrid, x_select: np.ndarray, y_select: np.ndarray) -> list[RidgeProbe]:
    """Per target, the alpha of ``grid`` with the highest Pearson r on the selection rows (ties: the
    larger alpha), with the sweep that chose it."""
    with single_blas_thread():
        predictions = grid.predict_many(x_select)  # [rows, alphas, targets]
    probes = []
    for t in range(predictions.shape[2]):
        rows, best = [], None
        for k, alpha in enumerate(grid.alphas):
            pred = predictions[:, k, t]
            r = pearson_r(y_select[:, t], pred)
            rows.append({"alpha": alpha, "selection_r": r,
                         "selection_pairwise_accuracy": pairwise_accuracy(y_select[:, t], pred)})
            score = -np.inf if np.isnan(r) else r
            if best is None or score >= best[0]:
                best = (score, alpha)
        probes.append(RidgeProbe(model=RidgeModel(grid, best[1], t), alpha=best[1], sweep=pd.DataFrame(rows)))
    return probes


def bootstrap_interval(metric, y: np.ndarray, pred: np.ndarray, *, n_resamples: int = N_RESAMPLES, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``metric(y, pred)`` over tasks resampled with replacement (seeded)."""
    if len(y) < 3:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        rows = rng.integers(0, len(y), len(y))
        value = metric(y[rows], pred[rows])
        if np.isfinite(value):
            values.append(value)
    if len(values) < n_resamples // 2:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def _metric_rows(features: str, target: str, scope: str, topic: str, alpha: float, y: np.ndarray,
                 pred: np.ndarray, seed: int, *, interval: bool = False) -> list[dict]:
    """Pearson r and pairwise accuracy; with ``interval``, a bootstrap over the scored tasks."""
    base = {"features": features, "target": target, "scope": scope, "held_out_topic": topic, "alpha": alpha,
            "n": len(y)}
    rows = []
    for name, metric in (("pearson_r", pearson_r), ("pairwise_accuracy", pairwise_accuracy)):
        low, high = bootstrap_interval(metric, y, pred, seed=seed) if interval else (float("nan"), float("nan"))
        rows.append({**base, "metric": name, "value": metric(y, pred), "ci_low": low, "ci_high": high})
    return rows


@dataclass(frozen=True)
class ProbeData:
    """Rows of one study aligned with one feature matrix: train and eval parts with topics and mu."""

    x_train: np.ndarray
    y_train: np.ndarray
    topics_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    topics_eval: np.ndarray

    def demeaned(self, eval_parts: Sequence[np.ndarray] = ()) -> ProbeData:
        """Topic-demeaned targets. ``eval_parts`` (e.g. the selection and report halves) are demeaned
        each on its own: a topic mean taken over both halves would carry the report half's values into
        the selection half's targets, so the alpha chosen there would depend on the reported tasks."""
        y_eval = topic_demean(self.y_eval, self.topics_eval) if not len(eval_parts) else np.full(len(self.y_eval), np.nan)
        for part in eval_parts:
            y_eval[part] = topic_demean(self.y_eval[part], self.topics_eval[part])
        return ProbeData(self.x_train, topic_demean(self.y_train, self.topics_train), self.topics_train,
                         self.x_eval, y_eval, self.topics_eval)


def evaluate_features(name: str, data: ProbeData, *, seed: int = 0, alphas: Sequence[float] = ALPHAS,
                      hold_one_topic_out: bool = True) -> pd.DataFrame:
    """All probe metrics for one feature set: raw and demeaned targets, in-distribution and HOO.

    Raw and demeaned mu share every fit's rows, so each fit (in-distribution, then one per held-out
    topic) is one sweep with two targets, and every fold's sweep comes from one pass over the training
    rows (``fit_ridge_grids_leaving_out``); alpha is still chosen per target.
    """
    select, report = split_halves(len(data.y_eval), seed)
    targets = (("raw", data), ("demeaned", data.demeaned((select, report))))
    y_train = np.column_stack([d.y_train for _, d in targets])
    y_eval = np.column_stack([d.y_eval for _, d in targets])
    folds = {}
    for topic in sorted(set(data.topics_train.tolist())) if hold_one_topic_out else ():
        train = data.topics_train != topic
        sel = select[data.topics_eval[select] != topic]
        rep = report[data.topics_eval[report] != topic]
        if train.sum() < 2 or len(sel) < 2 or (~train).sum() < 2:
            continue
        folds[topic] = (train, sel, rep)
    with single_blas_thread():  # every fold's sweep from one pass over the training rows (X'X is additive)
        grids = fit_ridge_grids_leaving_out(data.x_train, y_train, [float(a) for a in alphas], data.topics_train,
                                            list(folds))
    fits = {"": choose_alpha(grids[None], data.x_eval[select], y_eval[select])}
    for topic, (_, sel, _) in folds.items():
        fits[topic] = choose_alpha(grids[topic], data.x_eval[sel], y_eval[sel])
    rows: list[dict] = []
    for t, (target, d) in enumerate(targets):
        probe = fits[""][t]
        rows += _metric_rows(name, target, "in_distribution", "", probe.alpha, d.y_eval[report],
                             probe.predict(d.x_eval[report]), seed, interval=True)
        for topic, (train, _, rep) in folds.items():
            probe = fits[topic][t]
            rows += _metric_rows(name, target, "hoo_in_distribution", topic, probe.alpha, d.y_eval[rep],
                                 probe.predict(d.x_eval[rep]), seed)
            rows += _metric_rows(name, target, "held_out_topic", topic, probe.alpha, d.y_train[~train],
                                 probe.predict(d.x_train[~train]), seed)
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def probe_data(task_pool: pd.DataFrame, utilities: pd.DataFrame, features: np.ndarray) -> ProbeData:
    """Align a feature matrix (rows = task_pool rows) with utilities by task id and split by task_set.

    Tasks without a fitted utility are dropped; the train/eval split comes from ``task_set``.
    """
    features = np.asarray(features)
    if len(features) != len(task_pool):
        raise ValueError(f"features have {len(features)} rows but the task pool has {len(task_pool)}")
    mu = pd.Series(utilities["mu"].to_numpy(float), index=utilities["task_id"].astype(str))
    if mu.index.has_duplicates:
        raise ValueError("utilities contain duplicate task ids")
    ids = task_pool["task_id"].astype(str).to_numpy()
    has_mu = mu.index.get_indexer(ids) >= 0  # a hash lookup: np.isin on 13k object strings took ~3 s
    train = has_mu & (task_pool["task_set"].to_numpy() == "train")
    evals = has_mu & (task_pool["task_set"].to_numpy() == "eval")
    if train.sum() < 3 or evals.sum() < 4:
        raise ValueError(f"need utilities for >= 3 train and >= 4 eval tasks, got {train.sum()} and {evals.sum()}")
    topics = task_pool["topic"].astype(str).to_numpy()
    return ProbeData(features[train], mu.loc[ids[train]].to_numpy(), topics[train],
                     features[evals], mu.loc[ids[evals]].to_numpy(), topics[evals])


def utility_probe_report(task_pool: pd.DataFrame, utilities: pd.DataFrame, features: Mapping[str, np.ndarray], *,
                         seed: int = 0, alphas: Sequence[float] = ALPHAS,
                         hold_one_topic_out: bool = True) -> pd.DataFrame:
    """Long-format metrics (``REPORT_COLUMNS``) for every named feature set on identical splits.

    ``features`` maps a name (e.g. "activations:L1", "content:all-MiniLM-L6-v2") to a matrix whose
    rows follow ``task_pool``; ``utilities`` has ``task_id, mu`` for train and eval tasks.
    """
    frames = [evaluate_features(name, probe_data(task_pool, utilities, matrix), seed=seed, alphas=alphas,
                                hold_one_topic_out=hold_one_topic_out)
              for name, matrix in features.items()]
    return pd.concat(frames, ignore_index=True)
