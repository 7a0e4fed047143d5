"""Choose the layer and probe on validation, report them on test, with intervals over problems.

Why this module exists (what the first summary got wrong):
- it picked the best of ~12 layer x probe candidates by their TEST mean and printed the winner's
  interval: selection on the test set inflates the winner. Here each seed (and, under
  leave-problems-out, each fold) picks its (layer, probe) by the validation PR-AUC recorded when
  the probes were fitted (``ProbeSuiteResult.selection``), and only the picked candidate's test
  predictions are scored;
- under leave-problems-out it pooled the decision values of the fold models (each with its own C,
  so its own scale) into one PR-AUC. Here every PR-AUC is computed within a fold, on one model's
  scores, and a seed's value is the mean over its folds weighted by their test problems
  (``unit_bootstrap.per_fold_statistic``; with holdout there is one fold and nothing changes);
- it averaged the bootstrap endpoints of the seeds: an average of intervals is not an interval.
  Here the reported statistic is the seed-averaged margin (probe minus baseline on the same rows),
  and its interval comes from resampling TEST PROBLEMS and recomputing that seed-averaged margin
  on every draw (each seed scores the drawn problems that were in its test split);
- the spread across seeds is only reported with two seeds or more.

Inputs are plain frames (no I/O): ``predictions`` with ``seed, model_key, layer_key, setting,
trace_key, chunk_idx, problem_id, probe, score, split, fold, label`` and ``selection`` with
``seed, model_key, layer_key, setting, probe, fold, val_pr_auc``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import pr_auc_columns
from .unit_bootstrap import SeedRows, fold_columns, per_fold_statistic, seed_averaged_interval

CANDIDATES = ("linear_probe", "mlp_probe", "activations_plus_position")
BASELINES = ("position_baseline", "text_baseline")
CELL_COLUMNS = [
    "model_key", "setting", "scheme", "n_test_problems", "n_seeds", "seeds", "selected", "selected_on",
    "probe_pr_auc", "probe_std", "position_pr_auc", "text_pr_auc",
    "margin_position", "ci_low_position", "ci_high_position",
    "margin_text", "ci_low_text", "ci_high_text", "n_resamples",
]


@dataclass(frozen=True)
class SeedEvaluation:
    """One seed's evaluated rows: labels, problem ids and the chosen probe's and baselines' scores."""

    seed: int
    labels: np.ndarray
    problems: np.ndarray
    scores: np.ndarray  # [rows, 1 + len(BASELINES)]: chosen probe, then each baseline
    choices: list[tuple[str, str]]  # (layer, probe) per fold
    problem_set: frozenset[str] = frozenset()
    folds: np.ndarray | None = None  # fold of each row (``holdout`` or ``fold<k>``); None: one fold

    def score_columns(self) -> np.ndarray:
        """The scores with fold and unit-weight columns: the input of ``per_fold_statistic``."""
        folds = self.folds if self.folds is not None else np.full(self.labels.size, "holdout")
        return fold_columns(self.scores, folds, self.problems)


def choose_per_fold(selection: pd.DataFrame, candidates=CANDIDATES) -> dict[str, tuple[str, str]]:
    """fold -> (layer_key, probe) with the highest validation PR-AUC (ties: layer, then probe name)."""
    usable = selection[selection["probe"].isin(candidates) & np.isfinite(selection["val_pr_auc"].astype(float))]
    chosen = {}
    for fold, group in usable.groupby("fold", sort=True):
        best = group.sort_values(["val_pr_auc", "layer_key", "probe"], ascending=[False, True, True]).iloc[0]
        chosen[str(fold)] = (str(best["layer_key"]), str(best["probe"]))
    return chosen


def evaluate_seed(predictions: pd.DataFrame, selection: pd.DataFrame, seed: int,
                  candidates=CANDIDATES, baselines=BASELINES) -> SeedEvaluation | None:
    """The test rows of one seed scored by each fold's chosen (layer, probe) and by the baselines.

    The baselines are read from the chosen layer's slice (they do not use activations, so every
    layer's slice scores them identically; reading the same slice keeps the rows paired).
    """
    choices = choose_per_fold(selection, candidates)
    test = predictions[predictions["split"] == "test"]
    parts = []
    for fold, (layer, probe) in sorted(choices.items()):
        rows = test[(test["fold"].astype(str) == fold) & (test["layer_key"] == layer)]
        wide = rows.pivot_table(index=["trace_key", "chunk_idx", "problem_id", "label"], columns="probe",
                                values="score", aggfunc="first").reset_index()
        needed = [probe, *baselines]
        if wide.empty or any(name not in wide for name in needed):
            continue
        parts.append(wide[["trace_key", "chunk_idx", "problem_id", "label", *needed]]
                     .set_axis(["trace_key", "chunk_idx", "problem_id", "label", "probe", *baselines], axis=1)
                     .assign(fold=fold))
    if not parts:
        return None
    rows = pd.concat(parts, ignore_index=True).sort_values(["problem_id", "trace_key", "chunk_idx"])
    return SeedEvaluation(seed, rows["label"].to_numpy(dtype=int), rows["problem_id"].astype(str).to_numpy(),
                          rows[["probe", *baselines]].to_numpy(dtype=np.float64),
                          [choices[fold] for fold in sorted(choices)],
                          frozenset(rows["problem_id"].astype(str)), rows["fold"].astype(str).to_numpy())


def margin_statistic(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """[PR-AUC of the probe and of each baseline, probe minus each baseline] on one seed's rows."""
    values = pr_auc_columns(labels, scores)
    return np.concatenate([values, values[0] - values[1:]])


def summarise_cell(evaluations: list[SeedEvaluation], *, n_resamples: int, seed: int = 0,
                   level: float = 0.95) -> dict:
    """Point estimates (seed means) and problem-bootstrap intervals of the margins over each baseline.

    The interval is ``unit_bootstrap.seed_averaged_interval`` of ``margin_statistic`` scored per fold:
    the one implementation every study uses (resample problems, recompute the seed-averaged margin).
    """
    interval = seed_averaged_interval(
        [SeedRows(e.seed, e.labels, e.problems, e.score_columns()) for e in evaluations],
        per_fold_statistic(margin_statistic),
        n_resamples=n_resamples, seed=seed, level=level, unit="problem",
        statistic_name="seed-averaged test PR-AUC margin (probe - baseline), per fold")
    point, low, high = interval.point, interval.low, interval.high
    n_baselines = evaluations[0].scores.shape[1] - 1
    probe_pr_auc = per_fold_statistic(pr_auc_columns)
    probe_values = [probe_pr_auc(e.labels, e.score_columns()[:, [0, -2, -1]])[0] for e in evaluations]
    result = {"probe_pr_auc": float(point[0]),
              "probe_std": float(np.std(probe_values, ddof=1)) if len(probe_values) >= 2 else float("nan"),
              "n_resamples": int(interval.n_valid)}
    for k, name in enumerate(("position", "text")[:n_baselines]):
        result[f"{name}_pr_auc"] = float(point[1 + k])
        margin = 1 + n_baselines + k
        result.update({f"margin_{name}": float(point[margin]), f"ci_low_{name}": float(low[margin]),
                       f"ci_high_{name}": float(high[margin])})
    return result


def scheme_of(predictions: pd.DataFrame) -> str:
    """``holdout`` or ``leave-problems-out (k folds)``, from the folds the predictions record."""
    folds = sorted(set(predictions["fold"].astype(str)))
    return "holdout" if folds == ["holdout"] else f"leave-problems-out ({len(folds)} folds)"


def selection_text(evaluations: list[SeedEvaluation]) -> str:
    """The chosen (layer, probe) pairs and how often each was chosen, most frequent first."""
    counts = Counter(choice for e in evaluations for choice in e.choices)
    total = sum(counts.values())
    return ", ".join(f"{layer} {probe} ({n}/{total})" for (layer, probe), n in counts.most_common())


def probe_cells(predictions: pd.DataFrame, selection: pd.DataFrame, *, n_resamples: int = 1000,
                seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per (model, setting): scheme, test problems, choice made on validation, test PR-AUC of
    the choice and of each baseline, and the seed-averaged margins with problem-bootstrap intervals."""
    cells = []
    for (model, setting), group in predictions.groupby(["model_key", "setting"], sort=True):
        chosen_from = selection[(selection["model_key"] == model) & (selection["setting"] == setting)]
        evaluations = [e for s, seed_rows in group.groupby("seed", sort=True)
                       if (e := evaluate_seed(seed_rows, chosen_from[chosen_from["seed"] == s], int(s))) is not None]
        if not evaluations:
            continue
        scheme = scheme_of(group)
        n_test = sorted({len(set(e.problems.tolist())) for e in evaluations})
        cells.append({
            "model_key": model, "setting": setting, "scheme": scheme,
            "n_test_problems": int(n_test[0]) if len(n_test) == 1 else int(min(n_test)),
            "n_seeds": len(evaluations), "seeds": ",".join(str(e.seed) for e in evaluations),
            "selected": selection_text(evaluations),
            "selected_on": "validation split" if scheme == "holdout" else "inner validation split of each fold",
            **summarise_cell(evaluations, n_resamples=n_resamples, seed=seed, level=level),
        })
    return pd.DataFrame(cells, columns=CELL_COLUMNS)
