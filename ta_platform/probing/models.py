"""The probe family and hyperparameter selection on the validation split.

The activation probes that are linear (``linear_probe``, ``activations_plus_position``) are fitted by
the probe engine (``engine.py``: balanced L2 logistic, sklearn's C convention, every C of the grid in
one pass over the rows); the small baselines (position, text) and the MLP stay sklearn ``Pipeline``s.
Both kinds share ``fit`` / ``predict_score`` / ``weights``. Class imbalance (~10% anchors) is handled
explicitly: logistic models use balanced class weights; the MLP gets the same balanced weights as
``sample_weight``.

The MLP is trained for a FIXED number of epochs with no early stopping: sklearn's early stopping
silently holds out 10% of the training rows (the pilot's memorisation tripwire failed 11 of 26 runs
because of it). ``n_iter_no_change`` is set past the epoch budget so the training-loss plateau rule
cannot stop it either; epochs and L2 strength are chosen on the val split like every other knob.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from .config import ProbeConfig
from .engine_logistic import LogisticHeads, fit_logistic_heads
from .features import (
    POSITION_FEATURE_NAMES,
    ActivationAndPositionColumns,
    ActivationColumns,
    PositionColumns,
    ProbeInputs,
    TextColumn,
    position_features,
)
from .metrics import auroc, pr_auc
from .streaming_scaler import fit_standardisations

# What ``select_and_fit`` may choose a hyperparameter by (the anchors study: PR-AUC; needle: AUROC).
VAL_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"pr_auc": pr_auc, "auroc": auroc}


@dataclass
class Probe:
    """A named pipeline with the three operations the suite needs."""

    name: str
    pipeline: Pipeline

    def fit(self, inputs: ProbeInputs, y: np.ndarray) -> Probe:
        y = np.asarray(y, dtype=int)
        fit_params = {f"model__{name}": value for name, value in _model_fit_params(self.pipeline[-1], y).items()}
        with warnings.catch_warnings():
            # Fixed-epoch training ends "unconverged" by design; lbfgs on tiny folds may too.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.pipeline.fit(inputs, y, **fit_params)
        return self

    @staticmethod
    def fit_grid(build, grid, seed: int, config: ProbeConfig, inputs: ProbeInputs, y: np.ndarray) -> dict[float, Probe]:
        """One probe per grid value on the same rows, the feature steps fitted ONCE.

        Why: every hyperparameter of these pipelines lives in the final model (C, the MLP's alpha), so
        the steps before it (columns, StandardScaler, TF-IDF: the text baseline's slow part) give the
        same features for every value; refitting them per value tripled the baselines' cost.
        """
        template = build(grid[0], seed, config)
        y = np.asarray(y, dtype=int)
        features = template.pipeline[:-1]
        transformed = features.fit_transform(inputs, y)
        probes = {}
        for value in grid:
            model = build(value, seed, config).pipeline[-1]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(transformed, y, **_model_fit_params(model, y))
            probes[float(value)] = Probe(template.name, Pipeline([*features.steps, ("model", model)]))
        return probes

    def predict_score(self, inputs: ProbeInputs) -> np.ndarray:
        """Ranking score (higher = more anchor-like): decision values, or P(anchor) for the MLP."""
        model = self.pipeline[-1]
        if hasattr(model, "decision_function"):
            return np.asarray(self.pipeline.decision_function(inputs), dtype=np.float64)
        return np.asarray(self.pipeline.predict_proba(inputs)[:, 1], dtype=np.float64)

    def weights(self) -> dict[str, np.ndarray]:
        """Arrays that reproduce a linear probe's decision function; empty for the MLP.

        ``decision = ((features - scaler_mean) / scaler_scale) @ coef + intercept``; the text
        baseline has no scaler and stores its vocabulary instead.
        """
        model = self.pipeline[-1]
        if not isinstance(model, LogisticRegression):
            return {}
        arrays = {"coef": model.coef_.ravel().copy(), "intercept": model.intercept_.copy()}
        steps = dict(self.pipeline.steps)
        if "scale" in steps:
            arrays["scaler_mean"] = steps["scale"].mean_.copy()
            arrays["scaler_scale"] = steps["scale"].scale_.copy()
        if "tfidf" in steps:
            arrays["vocabulary"] = steps["tfidf"].get_feature_names_out().astype(str)
        if isinstance(steps["columns"], PositionColumns):
            arrays["feature_names"] = np.array(POSITION_FEATURE_NAMES)
        return arrays


def _model_fit_params(model, y: np.ndarray) -> dict:
    """The MLP gets the balanced class weights as ``sample_weight`` (logistic models balance themselves)."""
    return {"sample_weight": compute_sample_weight("balanced", y)} if isinstance(model, MLPClassifier) else {}


def activation_matrix(inputs: ProbeInputs) -> np.ndarray:
    """The activations as they are (float32 stays float32: the engine streams and standardises them)."""
    return inputs.X


def activation_and_position_matrix(inputs: ProbeInputs) -> np.ndarray:
    """Activations with the position features appended (last columns), float32."""
    return np.hstack([np.asarray(inputs.X, dtype=np.float32), position_features(inputs.frame).astype(np.float32)])


@dataclass
class EngineProbe:
    """A balanced L2 logistic probe fitted by the probe engine; same interface as ``Probe``.

    ``decision = ((features - scaler_mean) / scaler_scale) @ coef + intercept`` where ``features`` =
    ``columns(inputs)``. ``fit_grid`` fits every C of a grid in one engine call.
    """

    name: str
    columns: Callable[[ProbeInputs], np.ndarray]
    c_value: float
    config: ProbeConfig
    heads: LogisticHeads | None = None

    def fit_many(self, grid, matrix: np.ndarray, y: np.ndarray, masks: list[np.ndarray]) -> LogisticHeads:
        """One head per mask (training rows of ``matrix = columns(inputs)``) and C, in ONE engine call.

        Why: every seed (and every leave-problems-out fold) of a slice fits the same probe on its own
        training rows of the same activations; as heads of one call they share each pass over the
        rows, and each keeps its own standardisation (the statistics of its own rows). ``grid``: one
        C grid for every mask, or [masks, grid] values. ``y``: [rows], or [rows, masks] when each mask
        has its own labels (a permutation null). Heads are mask-major, then C.
        """
        masks = [np.asarray(mask, dtype=bool) for mask in masks]
        union = np.flatnonzero(np.any(masks, axis=0))
        y = np.asarray(y, dtype=int)
        labels = y[union] if y.ndim == 2 else np.tile(y[union, None], (1, len(masks)))
        return fit_logistic_heads(matrix, labels, rows=union, mask=np.stack([mask[union] for mask in masks], axis=1),
                                  c_grid=grid, target_scalers=fit_standardisations(matrix, masks),
                                  max_iter=self.config.logistic_max_iter)

    def with_head(self, heads: LogisticHeads, target: int, grid_index: int) -> EngineProbe:
        """This probe holding one head of a ``fit_many`` result."""
        return EngineProbe(self.name, self.columns, float(heads.c_values[target, grid_index]), self.config,
                           heads.select(target, grid_index))

    def fit_grid(self, grid: tuple[float, ...], inputs: ProbeInputs, y: np.ndarray) -> dict[float, EngineProbe]:
        """One probe per C of ``grid``, all fitted together on the same standardised rows."""
        heads = fit_logistic_heads(self.columns(inputs), np.asarray(y, dtype=int), c_grid=grid,
                                   max_iter=self.config.logistic_max_iter)
        return {float(c): EngineProbe(self.name, self.columns, float(c), self.config, heads.select(0, g))
                for g, c in enumerate(heads.c_grid)}

    def fit(self, inputs: ProbeInputs, y: np.ndarray) -> EngineProbe:
        self.heads = self.fit_grid((self.c_value,), inputs, y)[float(self.c_value)].heads
        return self

    def predict_score(self, inputs: ProbeInputs) -> np.ndarray:
        if self.heads is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return self.heads.decision(self.columns(inputs))[:, 0, 0]

    def weights(self) -> dict[str, np.ndarray]:
        return {} if self.heads is None else self.heads.head(0, 0)


def _logistic(c_value: float, config: ProbeConfig) -> LogisticRegression:
    return LogisticRegression(C=c_value, class_weight="balanced", max_iter=config.logistic_max_iter)


def make_position_baseline(c_value: float, seed: int, config: ProbeConfig) -> Probe:
    """Logistic regression on position features only: what a probe must beat to mean anything."""
    steps = [
        ("columns", PositionColumns()),
        ("scale", StandardScaler()),
        ("model", _logistic(c_value, config)),
    ]
    return Probe("position_baseline", Pipeline(steps))


def make_text_baseline(c_value: float, seed: int, config: ProbeConfig) -> Probe:
    """TF-IDF on the sentence text + logistic: is the anchor readable from the words alone?"""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=config.text_max_features)
    steps = [("columns", TextColumn()), ("tfidf", vectorizer), ("model", _logistic(c_value, config))]
    return Probe("text_baseline", Pipeline(steps))


def make_linear_probe(c_value: float, seed: int, config: ProbeConfig) -> EngineProbe:
    """Standardised L2 logistic on activations (the probe engine): the primary probe.

    Deterministic (L-BFGS from zero), so ``seed`` changes nothing here; it only picks the split.
    """
    return EngineProbe("linear_probe", activation_matrix, c_value, config)


def make_activations_plus_position(c_value: float, seed: int, config: ProbeConfig) -> EngineProbe:
    """Linear probe on activations with position features appended: does content add to position?"""
    return EngineProbe("activations_plus_position", activation_and_position_matrix, c_value, config)


def make_sklearn_linear_probe(c_value: float, seed: int, config: ProbeConfig) -> Probe:
    """The sklearn reference of ``make_linear_probe`` (StandardScaler + LogisticRegression), for checks."""
    steps = [
        ("columns", ActivationColumns()),
        ("scale", StandardScaler()),
        ("model", _logistic(c_value, config)),
    ]
    return Probe("linear_probe", Pipeline(steps))


def make_sklearn_activations_plus_position(c_value: float, seed: int, config: ProbeConfig) -> Probe:
    """The sklearn reference of ``make_activations_plus_position``, for checks."""
    steps = [
        ("columns", ActivationAndPositionColumns()),
        ("scale", StandardScaler()),
        ("model", _logistic(c_value, config)),
    ]
    return Probe("activations_plus_position", Pipeline(steps))


def make_mlp_probe(alpha: float, seed: int, config: ProbeConfig) -> Probe:
    """One-hidden-layer MLP on standardised activations; fixed epochs, seeded, no early stopping."""
    model = MLPClassifier(
        hidden_layer_sizes=config.mlp_hidden,
        alpha=alpha,
        batch_size=config.mlp_batch_size,
        learning_rate_init=config.mlp_learning_rate,
        max_iter=config.mlp_epochs,
        n_iter_no_change=config.mlp_epochs + 1,
        early_stopping=False,
        random_state=seed,
    )
    steps = [("columns", ActivationColumns()), ("scale", StandardScaler()), ("model", model)]
    return Probe("mlp_probe", Pipeline(steps))


@dataclass(frozen=True)
class ProbeSpec:
    """How to build one probe family for a hyperparameter value, and which values to try on val."""

    name: str
    build: Callable[[float, int, ProbeConfig], Probe | EngineProbe]
    hyperparameter: str
    grid: tuple[float, ...]


def probe_specs(config: ProbeConfig) -> dict[str, ProbeSpec]:
    """The specs of the probes named in ``config.probes``, in that order."""
    all_specs = {
        "position_baseline": ProbeSpec("position_baseline", make_position_baseline, "C", config.l2_c_grid),
        "text_baseline": ProbeSpec("text_baseline", make_text_baseline, "C", config.l2_c_grid),
        "linear_probe": ProbeSpec("linear_probe", make_linear_probe, "C", config.l2_c_grid),
        "mlp_probe": ProbeSpec("mlp_probe", make_mlp_probe, "alpha", config.mlp_alpha_grid),
        "activations_plus_position": ProbeSpec(
            "activations_plus_position", make_activations_plus_position, "C", config.l2_c_grid
        ),
    }
    return {name: all_specs[name] for name in config.probes}


@dataclass(frozen=True)
class Selection:
    """The fitted probe and how its hyperparameter was chosen."""

    probe: Probe | EngineProbe
    hyperparameter: str
    value: float
    val_pr_auc: float  # the chosen value's val score under ``metric`` (PR-AUC unless chosen by another metric)
    val_scores: dict[float, float] = field(default_factory=dict)
    metric: str = "pr_auc"
    scores: np.ndarray | None = None  # the probe's scores on every row it was selected on (``select_and_fit_many``)


def _chosen_value(grid, val_scores: dict[float, float]) -> float:
    """The grid value with the best finite val score (ties: the first); none finite: the grid's middle."""
    finite = {value: score for value, score in val_scores.items() if np.isfinite(score)}
    return max(finite, key=lambda value: finite[value]) if finite else grid[len(grid) // 2]


def select_and_fit(
    spec: ProbeSpec,
    train: ProbeInputs,
    y_train: np.ndarray,
    val: ProbeInputs,
    y_val: np.ndarray,
    seed: int,
    config: ProbeConfig,
    metric: str = "pr_auc",
) -> Selection:
    """Choose the hyperparameter by val PR-AUC (``metric="auroc"``: val AUROC), then fit the final probe.

    Ties go to the first grid value (grids are ordered strongest regularisation first). When val
    is empty or single-class every val score is NaN and the middle of the grid is used -- a
    documented default, never a silent choice on the test split. With ``refit_on_train_val`` the
    final probe is refit on train + val with the chosen value.
    """
    val_scores: dict[float, float] = {}
    candidates: dict[float, Probe | EngineProbe] = {}
    has_val = len(val) > 0 and 0 < int(np.sum(y_val)) < len(val)
    if has_val and len(spec.grid) > 1:
        template = spec.build(spec.grid[0], seed, config)
        if isinstance(template, EngineProbe):  # the whole grid in one engine call
            candidates = template.fit_grid(spec.grid, train, y_train)
        else:  # the feature steps once, the model per value
            candidates = Probe.fit_grid(spec.build, spec.grid, seed, config, train, y_train)
        for value in spec.grid:
            val_scores[value] = VAL_METRICS[metric](y_val, candidates[float(value)].predict_score(val))
    chosen = _chosen_value(spec.grid, val_scores)
    if config.refit_on_train_val and len(val) > 0:
        frame = pd.concat([train.frame, val.frame], ignore_index=True)
        fit_inputs = ProbeInputs(frame=frame, X=np.concatenate([train.X, val.X], axis=0))
        fit_labels = np.concatenate([np.asarray(y_train), np.asarray(y_val)])
    else:
        fit_inputs, fit_labels = train, np.asarray(y_train)
    if fit_inputs is train and float(chosen) in candidates:  # no refit: the chosen candidate is the final probe
        probe = candidates[float(chosen)]
    else:
        probe = spec.build(chosen, seed, config).fit(fit_inputs, fit_labels)
    return Selection(
        probe, spec.hyperparameter, float(chosen), val_scores.get(chosen, float("nan")), val_scores, metric
    )


def select_and_fit_many(spec: ProbeSpec, inputs: ProbeInputs, labels: np.ndarray,
                        splits: list[tuple[np.ndarray, np.ndarray]], config: ProbeConfig,
                        metric: str = "pr_auc", fixed: list[float | None] | None = None) -> list[Selection]:
    """``select_and_fit`` for many (train, val) masks of ONE slice at once, for an engine probe.

    Why: a slice's seeds (and folds) differ only in which rows train and validate; fitting them as
    heads of one engine call reads the activations once per pass for all of them instead of once per
    seed. Each split gets exactly ``select_and_fit``'s procedure: its own standardisation, the grid on
    its train rows, the C with the best ``metric`` on its val rows (ties: the first; no usable val:
    the middle of the grid), then the refit on train + val with that C. Each selection carries its
    probe's scores on every row of ``inputs`` (``Selection.scores``), computed in one pass for all.
    ``labels``: [rows], or [rows, splits] when each split has its own (a permutation null).
    ``fixed``: per split, a C to use instead of choosing one (``select_and_fit`` with a one-value grid).
    """
    template = spec.build(spec.grid[0], 0, config)
    if not isinstance(template, EngineProbe):
        raise TypeError(f"{spec.name} is not an engine probe: use select_and_fit")
    labels = np.asarray(labels, dtype=int)
    label_of = (lambda k: labels[:, k]) if labels.ndim == 2 else (lambda k: labels)
    fixed = [None] * len(splits) if fixed is None else [None if v is None or not np.isfinite(v) else float(v)
                                                        for v in fixed]
    matrix = template.columns(inputs)
    usable = [k for k, (_, val) in enumerate(splits) if fixed[k] is None and val.any()
              and 0 < int(label_of(k)[val].sum()) < int(val.sum()) and len(spec.grid) > 1]
    val_scores: list[dict[float, float]] = [{} for _ in splits]
    candidates: dict[tuple[int, float], EngineProbe] = {}
    if usable:
        heads = template.fit_many(spec.grid, matrix, _labels_of(labels, usable), [splits[k][0] for k in usable])
        val_rows = np.flatnonzero(np.any([splits[k][1] for k in usable], axis=0))
        decisions = heads.decision(matrix, val_rows)  # [val rows of any split, splits, grid]
        for position, k in enumerate(usable):
            mine = np.searchsorted(val_rows, np.flatnonzero(splits[k][1]))
            for g, value in enumerate(spec.grid):
                candidates[(k, float(value))] = template.with_head(heads, position, g)
                val_scores[k][value] = VAL_METRICS[metric](label_of(k)[splits[k][1]], decisions[mine, position, g])
    chosen = [fixed[k] if fixed[k] is not None else _chosen_value(spec.grid, scores)
              for k, scores in enumerate(val_scores)]
    refit = [config.refit_on_train_val and bool(val.any()) for _, val in splits]
    final: dict[int, EngineProbe] = {k: candidates[(k, float(chosen[k]))] for k in range(len(splits))
                                     if not refit[k] and (k, float(chosen[k])) in candidates}
    to_fit = [k for k in range(len(splits)) if k not in final]
    if to_fit:
        masks = [splits[k][0] | splits[k][1] if refit[k] else splits[k][0] for k in to_fit]
        heads = template.fit_many(np.array([[float(chosen[k])] for k in to_fit]), matrix, _labels_of(labels, to_fit),
                                  masks)
        final.update({k: template.with_head(heads, position, 0) for position, k in enumerate(to_fit)})
    everything = [final[k].heads for k in range(len(splits))]
    scores = LogisticHeads.stacked(everything).decision(matrix)[:, :, 0]  # [rows, splits]: one pass for all
    return [Selection(final[k], spec.hyperparameter, float(chosen[k]), val_scores[k].get(chosen[k], float("nan")),
                      val_scores[k], metric, scores[:, k]) for k in range(len(splits))]


def _labels_of(labels: np.ndarray, splits: list[int]) -> np.ndarray:
    """The labels of the chosen splits: shared [rows] labels as they are, per-split [rows, splits] columns."""
    return labels[:, splits] if labels.ndim == 2 else labels
