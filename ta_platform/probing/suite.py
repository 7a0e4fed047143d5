"""``run_probe_suite``: every probe on one (model, layer, setting) slice, for one seed.

The seed picks the problem-level split (unless ``split_source="stored"``) and every model's
initialisation, so seeds measure split variance and not just MLP init noise -- the pilot's seeds
all shared one split, which is why its linear probe had a standard deviation of exactly 0.
Only ``in_label_set`` rows are used (the dropped last chunk has no label).

Small datasets (the scheme adapts to the number of problems, never a crash): leave-problems-out
uses ``min(n_folds, problems)`` folds, and inside each fold the training problems are split into
train and an inner validation split; with only two training problems that is one each (the
validation problem chooses C, layer and probe, then both are refit). Below ``MIN_PROBLEMS``
problems there is no honest split -- nothing to validate a choice on -- and ``TooFewProblems``
says so, naming the minimum, before anything is fitted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .bootstrap import bootstrap_margins
from .config import ProbeConfig
from .features import ProbeInputs
from .metrics import auroc_columns, importance_target, pr_auc_columns, ranking_metrics, spearman
from .models import EngineProbe, Selection, probe_specs, select_and_fit, select_and_fit_many
from .splits import hash_order, leave_problems_out_folds, problem_level_split, rows_split
from .unit_bootstrap import fold_columns, per_fold_statistic

__all__ = ["MIN_PROBLEMS", "ProbeConfig", "ProbeSuiteResult", "TooFewProblems", "check_enough_problems",
           "dataset_assignment", "evaluation_scheme", "fit_units", "labelled_inputs", "resolve_split", "run_probe_suite",
           "run_probe_suite_relabelled", "run_probe_suite_seeds"]

REQUIRED_COLUMNS = ("trace_key", "problem_id", "chunk_idx", "n_chunks", "rel_position", "text", "anchor")
METRIC_COLUMNS = ["seed", "probe", "metric", "value"]
PREDICTION_COLUMNS = ["trace_key", "chunk_idx", "problem_id", "probe", "score", "split", "fold"]
SELECTION_COLUMNS = ["seed", "probe", "fold", "hyperparameter", "value", "val_pr_auc"]
HOLDOUT_FOLD = "holdout"
MARGIN_COLUMNS = ["seed", "probe", "metric", "margin", "ci_low", "ci_high", "n_valid_resamples"]
# One problem to test, one to train on and one to validate on (choose C, layer and probe), in every fold.
MIN_PROBLEMS = 3


class TooFewProblems(ValueError):
    """The data hold too few problems for a split that tests on problems it never trained or chose on."""


def check_enough_problems(n_problems: int, what: str) -> None:
    """Raise ``TooFewProblems`` naming ``what``, its problem count and the minimum, below ``MIN_PROBLEMS``."""
    if n_problems < MIN_PROBLEMS:
        raise TooFewProblems(
            f"{what} holds {n_problems} problem(s); the probes need at least {MIN_PROBLEMS}: each problem is "
            "scored by a model that never saw it (leave-problems-out), and each such model needs one problem to "
            "train on and another to validate its choices on. Add problems to the data source.")


@dataclass(frozen=True)
class ProbeSuiteResult:
    """Everything one suite run produces; the lead adds model_key / layer_key / setting columns.

    ``metrics``: long rows (seed, probe, metric, value) on the evaluation rows (test split, or all
    out-of-fold rows in leave-problems-out mode, where PR-AUC, AUROC and Spearman are computed per
    fold and averaged over folds weighted by their problems). ``predictions``: one score per labelled sentence
    and probe with the split it belonged to. ``weights``: probe -> arrays (linear probes only; keyed
    ``probe@fold<k>`` in leave-problems-out mode). ``margins``: probe - baseline with a problem
    bootstrap interval, per metric (empty with ``bootstrap_resamples=0``). ``split``: problem id ->
    split name (or ``fold<k>``). ``selection``: per probe and fold (``holdout`` or ``fold<k>``), the
    hyperparameter chosen and its validation PR-AUC: what a later choice of layer and probe may use,
    because it never saw the evaluated problems.
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    weights: dict[str, dict[str, np.ndarray]]
    margins: pd.DataFrame
    split: dict[str, str]
    config: dict = field(default_factory=dict)
    selection: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SELECTION_COLUMNS))

    def metric(self, probe: str, metric: str) -> float:
        """One metric value (convenience for tests and reports)."""
        rows = self.metrics[(self.metrics["probe"] == probe) & (self.metrics["metric"] == metric)]
        return float(rows["value"].iloc[0]) if len(rows) else float("nan")


def labelled_inputs(frame: pd.DataFrame, X: np.ndarray) -> tuple[ProbeInputs, np.ndarray]:
    """The rows that carry a label (``in_label_set``), aligned with their activations, and labels."""
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"labels frame lacks columns {missing}")
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != len(frame):
        raise ValueError(f"activations of shape {X.shape} do not match {len(frame)} label rows")
    keep = (
        frame["in_label_set"].to_numpy(dtype=bool) if "in_label_set" in frame else np.ones(len(frame), bool)
    )
    inputs = ProbeInputs(frame.loc[keep].reset_index(drop=True), X[keep])
    return inputs, inputs.frame["anchor"].to_numpy(dtype=int)


def resolve_split(frame: pd.DataFrame, seed: int, config: ProbeConfig) -> dict[str, str]:
    """Problem id -> split: from the seed (default) or the frame's stored ``data_split`` column."""
    if config.split_source == "stored":
        stored = frame[["problem_id", "data_split"]].astype(str).drop_duplicates()
        return dict(zip(stored["problem_id"], stored["data_split"], strict=True))
    return problem_level_split(frame["problem_id"], seed, config.fractions)


def evaluation_scheme(frame: pd.DataFrame, config: ProbeConfig) -> str:
    """``holdout`` or ``leave_problems_out`` for this slice (``cv_mode="auto"`` decides by problem count)."""
    return config.scheme_for(frame["problem_id"].astype(str).nunique())


def dataset_assignment(problem_ids, seed: int, config: ProbeConfig) -> dict[str, str]:
    """Problem id -> ``train``/``val``/``test`` (holdout) or ``fold<k>`` (leave-problems-out), for a
    whole dataset: every slice of a seed then uses ONE split, whatever problems it happens to hold."""
    ids = sorted({str(pid) for pid in problem_ids})
    if config.scheme_for(len(ids)) == "holdout":
        return problem_level_split(ids, seed, config.fractions)
    folds = leave_problems_out_folds(ids, config.n_folds, seed)
    return {pid: f"fold{k}" for k, held_out in enumerate(folds) for pid in held_out}


@dataclass(frozen=True)
class FitUnit:
    """One model a seed fits on a slice: the holdout split, or one fold of leave-problems-out.

    ``train`` / ``val`` choose and fit its hyperparameters; ``scored`` are the rows its model scores
    (every labelled row under holdout, where only test rows are evaluated; the fold's own rows under
    leave-problems-out). Boolean masks over the slice's labelled rows.
    """

    fold: str
    train: np.ndarray
    val: np.ndarray
    scored: np.ndarray


def fit_units(inputs: ProbeInputs, seed: int, config: ProbeConfig,
              assignment: dict[str, str]) -> tuple[list[FitUnit], dict[str, str], np.ndarray]:
    """(the seed's fit units, problem -> split or fold, each row's split name) for one slice.

    Raises ``TooFewProblems`` (naming the fold) when a split leaves nothing to train or validate on.
    """
    problem_ids = inputs.frame["problem_id"].astype(str).to_numpy()
    everything = np.ones(len(inputs), dtype=bool)
    if not any(value.startswith("fold") for value in assignment.values()):
        row_split = rows_split(problem_ids, assignment)
        train, val = row_split == "train", row_split == "val"
        if not train.any():
            raise TooFewProblems(f"the holdout split leaves no training problem among "
                                 f"{len(set(problem_ids))} problem(s)")
        return [FitUnit(HOLDOUT_FOLD, train, val, everything)], assignment, row_split
    fold_names = sorted(set(rows_split(problem_ids, assignment)), key=lambda name: int(name[4:]))
    folds = [tuple(sorted(pid for pid, fold in assignment.items() if fold == name)) for name in fold_names]
    inner_fractions = _inner_fractions(config.fractions)
    units, split = [], {}
    for name, held_out in zip(fold_names, folds, strict=True):
        test = np.isin(problem_ids, held_out)
        remaining = sorted(set(problem_ids[~test]))
        if len(remaining) < MIN_PROBLEMS - 1:
            raise TooFewProblems(
                f"{name} holds out {len(set(problem_ids[test]))} of this slice's "
                f"{len(set(problem_ids))} problem(s) and leaves {len(remaining)} to train and validate on; at least "
                f"{MIN_PROBLEMS - 1} are needed (the slice needs at least {MIN_PROBLEMS} problems, spread over folds)")
        inner = inner_split(remaining, seed, inner_fractions)
        inner_rows = np.array([inner.get(pid, "test") for pid in problem_ids], dtype=object)
        units.append(FitUnit(name, ~test & (inner_rows == "train"), ~test & (inner_rows == "val"), test))
        split.update({pid: name for pid in held_out if pid in set(problem_ids)})
    return units, split, np.full(len(inputs), "test", dtype=object)


Prefitted = Mapping[tuple[str, str], Selection]  # (probe, fold) -> a selection already made (``run_probe_suite_seeds``)


def run_probe_suite(
    frame: pd.DataFrame, X: np.ndarray, seed: int, config: ProbeConfig | None = None,
    assignment: dict[str, str] | None = None, fixed: Mapping[tuple[str, str], float] | None = None,
) -> ProbeSuiteResult:
    """Fit every configured probe, score the evaluation rows, bootstrap margins over the baseline.

    ``assignment`` (from ``dataset_assignment``) fixes the split or folds; by default they are
    computed from this slice's own problems. ``fixed`` maps (probe, fold) to a hyperparameter value
    used instead of choosing one on validation (a null re-running a real run's exact models).
    """
    config = config or ProbeConfig()
    inputs, labels = labelled_inputs(frame, X)
    check_enough_problems(inputs.frame["problem_id"].nunique(), "this slice")
    if assignment is None:
        assignment = dataset_assignment(inputs.frame["problem_id"], seed, config) \
            if config.split_source == "seed" else resolve_split(inputs.frame, seed, config)
    return _suite_result(inputs, labels, seed, config, fit_units(inputs, seed, config, assignment), fixed or {}, {})


def run_probe_suite_seeds(frame: pd.DataFrame, X: np.ndarray, assignments: Mapping[int, dict[str, str]],
                          config: ProbeConfig | None = None) -> dict[int, ProbeSuiteResult]:
    """``run_probe_suite`` for several seeds of one slice (seed -> its ``dataset_assignment``).

    Each result equals that seed's own ``run_probe_suite`` (to the engine's tolerance); the engine
    probes of every seed and fold are fitted as heads of one engine call (``select_and_fit_many``),
    so the slice's activations are read once per pass for all seeds rather than once per seed.
    """
    config = config or ProbeConfig()
    inputs, labels = labelled_inputs(frame, X)
    check_enough_problems(inputs.frame["problem_id"].nunique(), "this slice")
    plans = {seed: fit_units(inputs, seed, config, assignment) for seed, assignment in assignments.items()}
    prefitted = _engine_selections(inputs, labels, [(seed, unit) for seed, plan in plans.items() for unit in plan[0]],
                                   config)
    return {seed: _suite_result(inputs, labels, seed, config, plan, {}, prefitted[seed]) for seed, plan in plans.items()}


def run_probe_suite_relabelled(frames: Sequence[pd.DataFrame], X: np.ndarray, seed: int, config: ProbeConfig,
                               assignment: dict[str, str], fixed: Mapping[tuple[str, str], float] | None = None,
                               ) -> list[ProbeSuiteResult]:
    """``run_probe_suite(frame, X, seed, config, assignment, fixed)`` for each of ``frames``: the same rows
    with different labels (``anchor``), e.g. the permutations of a null.

    Why: a permutation null re-runs the real run's exact models on twenty relabellings; as heads of one
    engine call (per relabelling and fold: its own labels, the fold's rows, standardisation and fixed C)
    the activations are read once per pass for all of them instead of twenty times. Each result equals
    that frame's own ``run_probe_suite`` to the engine's tolerance (tested).
    """
    if not frames:
        return []
    inputs, _ = labelled_inputs(frames[0], X)
    check_enough_problems(inputs.frame["problem_id"].nunique(), "this slice")
    keep = frames[0]["in_label_set"].to_numpy(dtype=bool) if "in_label_set" in frames[0] else np.ones(len(X), bool)
    for frame in frames[1:]:
        if len(frame) != len(frames[0]) or not frame[["trace_key", "chunk_idx"]].equals(frames[0][["trace_key",
                                                                                                    "chunk_idx"]]):
            raise ValueError("relabelled frames must hold the same rows in the same order as the first")
    labels = np.stack([frame.loc[keep, "anchor"].to_numpy(dtype=int) for frame in frames], axis=1)
    plan = fit_units(inputs, seed, config, assignment)
    fixed = fixed or {}
    keys = [(k, unit) for k in range(len(frames)) for unit in plan[0]]
    prefitted = _engine_selections(inputs, labels[:, [k for k, _ in keys]], keys, config, fixed)
    return [_suite_result(inputs, labels[:, k], seed, config, plan, fixed, prefitted[k]) for k in range(len(frames))]


def _engine_selections(inputs, labels: np.ndarray, keyed_units: list[tuple[object, FitUnit]], config: ProbeConfig,
                       fixed: Mapping[tuple[str, str], float] | None = None) -> dict[object, dict[tuple[str, str], Selection]]:
    """owner -> (probe, fold) -> selection: every engine probe of every (owner, fit unit) pair as heads of one
    ``select_and_fit_many`` per probe. ``labels``: shared [rows], or [rows, pairs] (one column per pair);
    ``fixed``: (probe, fold) -> C instead of choosing one."""
    prefitted: dict[object, dict[tuple[str, str], Selection]] = {owner: {} for owner, _ in keyed_units}
    for name, spec in probe_specs(config).items():
        if not isinstance(spec.build(spec.grid[0], 0, config), EngineProbe):
            continue
        chosen = select_and_fit_many(spec, inputs, labels, [(unit.train, unit.val) for _, unit in keyed_units], config,
                                     fixed=None if fixed is None else [fixed.get((name, unit.fold))
                                                                       for _, unit in keyed_units])
        for (owner, unit), selection in zip(keyed_units, chosen, strict=True):
            prefitted[owner][(name, unit.fold)] = selection
    return prefitted


def _suite_result(inputs, labels, seed, config, plan, fixed, prefitted: Prefitted) -> ProbeSuiteResult:
    """Fit (or take from ``prefitted``) every probe of every fit unit of ``plan`` (``fit_units``' result),
    then metrics, margins, predictions."""
    units, split, row_split = plan
    scores, weights, selection = _fit_units(inputs, labels, units, seed, config, fixed, prefitted)
    holdout = units[0].fold == HOLDOUT_FOLD
    evaluated = row_split == "test" if holdout else np.ones(len(inputs), dtype=bool)
    folds = np.full(len(inputs), HOLDOUT_FOLD, dtype=object) if holdout \
        else rows_split(inputs.frame["problem_id"], split)
    selection_rows = [(seed, probe, f"selected_{hyper}", value) for _, probe, fold, hyper, value, _ in selection
                      if fold == HOLDOUT_FOLD]
    selection_rows += [(seed, probe, "val_pr_auc", val) for _, probe, fold, _, _, val in selection
                       if fold == HOLDOUT_FOLD]
    evaluated_scores = {p: s[evaluated] for p, s in scores.items()}
    metrics = _metric_rows(inputs.frame[evaluated], labels[evaluated], evaluated_scores, folds[evaluated], seed,
                           config) + selection_rows
    margins = _margin_rows(inputs.frame[evaluated], labels[evaluated], evaluated_scores, folds[evaluated], seed,
                           config)
    return ProbeSuiteResult(
        metrics=pd.DataFrame(metrics, columns=METRIC_COLUMNS),
        predictions=_prediction_rows(inputs.frame, scores, row_split, folds),
        weights=weights,
        margins=pd.DataFrame(margins, columns=MARGIN_COLUMNS),
        split=split,
        config=config.as_dict(),
        selection=pd.DataFrame(selection, columns=SELECTION_COLUMNS),
    )


def _spec(spec, fold: str, fixed: Mapping[tuple[str, str], float]):
    """``spec`` with its grid reduced to the fixed value for (probe, fold), if one is given."""
    value = fixed.get((spec.name, fold))
    return spec if value is None or not np.isfinite(value) else dataclasses.replace(spec, grid=(float(value),))


def _fit_units(inputs, labels, units: list[FitUnit], seed, config, fixed, prefitted: Prefitted):
    """Every probe of every unit: chosen on the unit's val rows, refit, scoring its ``scored`` rows.

    Under holdout every labelled row is scored (train/val rows are reported, not evaluated); under
    leave-problems-out fold k's problems are scored by a model that never saw them, and inside each
    fold the remaining problems were split into train/val to choose hyperparameters.
    """
    scores = {name: np.full(len(inputs), np.nan) for name in config.probes}
    weights, selection = {}, []
    for unit in units:
        scored = inputs if unit.scored.all() else inputs.take(unit.scored)
        for name, spec in probe_specs(config).items():
            chosen = prefitted.get((name, unit.fold)) or select_and_fit(
                _spec(spec, unit.fold, fixed), inputs.take(unit.train), labels[unit.train], inputs.take(unit.val),
                labels[unit.val], seed, config)
            scores[name][unit.scored] = chosen.scores[unit.scored] if chosen.scores is not None \
                else chosen.probe.predict_score(scored)
            if chosen.probe.weights():
                weights[name if unit.fold == HOLDOUT_FOLD else f"{name}@{unit.fold}"] = chosen.probe.weights()
            selection.append((seed, name, unit.fold, chosen.hyperparameter, chosen.value, chosen.val_pr_auc))
    return scores, weights, selection


def inner_split(problem_ids: list[str], seed: int, fractions: tuple[float, float, float]) -> dict[str, str]:
    """Train/val assignment of a fold's training problems: ``problem_level_split`` from three problems;
    with two, one of each (chosen by ``hash_order``), so every fold has a validation problem."""
    if len(problem_ids) == 2:
        first, second = hash_order(problem_ids, seed)
        return {first: "val", second: "train"}
    return problem_level_split(problem_ids, seed, fractions)


def _inner_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    train, val, _ = fractions
    return (train / (train + val), val / (train + val), 0.0)


# Metrics that compare scores across rows: under leave-problems-out they are computed within each fold
# (one model's scores) and averaged over folds weighted by their problems. Top-k is per trace already.
PER_FOLD_METRICS = ("pr_auc", "auroc", "spearman")


def _metric_rows(frame, labels, scores, folds, seed, config) -> list[tuple]:
    importance = (
        importance_target(frame["counterfactual_importance"].to_numpy(), config.importance_mode)
        if "counterfactual_importance" in frame
        else np.full(len(frame), np.nan)
    )
    groups = frame["trace_key"].to_numpy()  # top-k unit: within a setting slice, one trace = one problem
    problems = frame["problem_id"].astype(str).to_numpy()
    several_folds = len(set(folds)) > 1
    rows = []
    for name, probe_scores in scores.items():
        values = ranking_metrics(labels, probe_scores, importance, groups, config.k_list)
        if several_folds:
            values.update(per_fold_metrics(labels, probe_scores, importance, folds, problems))
        rows += [(seed, name, metric, value) for metric, value in values.items()]
    return rows


def per_fold_metrics(labels, scores, importance, folds, problems) -> dict[str, float]:
    """PR-AUC, AUROC and Spearman within each fold, averaged over folds weighted by their problems."""
    columns = fold_columns(np.column_stack([scores, importance]), folds, problems)
    ranking = per_fold_statistic(lambda y, s: np.concatenate([pr_auc_columns(y, s[:, :1]), auroc_columns(y, s[:, :1])]))
    correlation = per_fold_statistic(lambda y, s: np.array([spearman(s[:, 0], s[:, 1])]))
    pr, roc = ranking(np.asarray(labels), columns)
    return {"pr_auc": float(pr), "auroc": float(roc), "spearman": float(correlation(np.asarray(labels), columns)[0])}


def _margin_rows(frame, labels, scores, folds, seed, config) -> list[tuple]:
    if config.baseline not in scores:
        return []
    others = {name: values for name, values in scores.items() if name != config.baseline}
    intervals = bootstrap_margins(
        labels,
        others,
        scores[config.baseline],
        frame["problem_id"].astype(str).to_numpy(),
        n_resamples=config.bootstrap_resamples,
        seed=seed,
        level=config.ci_level,
        folds=folds,
    )
    return [(seed, m.probe, m.metric, m.margin, m.ci_low, m.ci_high, m.n_valid_resamples) for m in intervals]


def _prediction_rows(frame, scores, row_split, folds) -> pd.DataFrame:
    parts = [
        pd.DataFrame(
            {
                "trace_key": frame["trace_key"].to_numpy(),
                "chunk_idx": frame["chunk_idx"].to_numpy(),
                "problem_id": frame["problem_id"].astype(str).to_numpy(),
                "probe": name,
                "score": values,
                "split": row_split,
                "fold": folds,
            }
        )
        for name, values in scores.items()
    ]
    return (
        pd.concat(parts, ignore_index=True)[PREDICTION_COLUMNS]
        if parts
        else pd.DataFrame(columns=PREDICTION_COLUMNS)
    )
