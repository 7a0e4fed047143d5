"""Does a layer's sentence activation say which role a sentence plays, beyond where it sits and its words?

The fifth study, and the example of how small a study is on the shared spine (docs/new_study.md). Units
and labels: the thought-anchor sentence labels, one row per sentence with the dataset's own
``function_tag`` (chunks_labeled.json); the label is one-vs-rest for one tag (the most common one unless
named). Features: the shared sentence activations (``studies.activation_slices``). Probes, position and
text baselines, the problem-level split per seed and the tripwires: ``probing`` (the suite reads its
label from the ``anchor`` column, so relabelling is the whole adaptation). Margins over both baselines:
seed-averaged, with an interval that resamples problems and recomputes the mean margin
(``probing.unit_bootstrap``). No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pandas as pd

from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.metrics import pr_auc_columns
from ta_platform.probing.suite import dataset_assignment, run_probe_suite_seeds
from ta_platform.probing.tripwires import planted_signal, random_label_null
from ta_platform.probing.unit_bootstrap import (
    SeedRows,
    fold_columns,
    per_fold_statistic,
    seed_averaged_interval,
)
from ta_platform.studies.activation_slices import ProbeSlice

PROBES = ("linear_probe", "position_baseline", "text_baseline")  # score columns, probe first
SUMMARY_COLUMNS = ["model_key", "layer_key", "setting", "tag", "n_seeds", "n_problems", "probe_pr_auc",
                   "position_pr_auc", "text_pr_auc", "margin_position", "ci_low_position", "ci_high_position",
                   "margin_text", "ci_low_text", "ci_high_text"]


def choose_tag(labels: pd.DataFrame, tag: str = "") -> str:
    """``tag`` if given (it must occur), else the most common tag of the labelled sentences (ties: by name)."""
    counts = labels.loc[labels["in_label_set"].astype(bool), "function_tag"].value_counts()
    if tag:
        if tag not in counts:
            raise ValueError(f"function tag {tag!r} does not occur in the sentence labels (tags: {sorted(counts.index)})")
        return tag
    if counts.empty:
        raise ValueError("the sentence labels hold no labelled sentence, so no function tag to probe")
    return sorted(counts.index, key=lambda t: (-counts[t], t))[0]


def tag_labels(frame: pd.DataFrame, tag: str) -> pd.DataFrame:
    """The frame with ``anchor`` (the suite's label column) = 1 where the sentence carries ``tag``."""
    return frame.assign(anchor=(frame["function_tag"] == tag).astype(int))


def class_counts(labels: pd.DataFrame, tag: str) -> pd.DataFrame:
    """Labelled sentences and positives per trace model and setting: a class missing anywhere is a fault."""
    rows = tag_labels(labels[labels["in_label_set"].astype(bool)], tag)
    return rows.groupby(["model", "setting"], as_index=False).agg(n=("anchor", "size"), n_positive=("anchor", "sum"))


def probe_config(base: ProbeConfig, n_permutations: int) -> ProbeConfig:
    """The suite with the linear probe and both baselines only; margins come from ``summarise``."""
    return replace(base, probes=PROBES, bootstrap_resamples=0, null_permutations=n_permutations)


def run_slices(slices: Iterable[ProbeSlice], tag: str, seeds: list[int], config: ProbeConfig,
               log=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per slice: each seed's evaluated predictions (every seed's linear probe a head of one engine call),
    then the tripwires (seed 0). Returns (predictions, tripwires)."""
    predictions, tripwires = [], []
    for piece in slices:
        frame = tag_labels(piece.frame, tag)
        assignments = {seed: dataset_assignment(frame["problem_id"], seed, config) for seed in seeds}
        results = run_probe_suite_seeds(frame, piece.X, assignments, config)  # every seed: one engine call
        for seed, result in results.items():
            evaluated = result.predictions[result.predictions["split"].isin(["test"]) |
                                           result.predictions["fold"].astype(str).str.startswith("fold")]
            predictions.append(evaluated.assign(seed=seed, **piece.scope))
            log(f"function_tags {tag} {piece.model_key}/{piece.layer_key}/{piece.setting} seed {seed}: linear "
                f"{result.metric('linear_probe', 'pr_auc'):.3f}, position {result.metric('position_baseline', 'pr_auc'):.3f}, "
                f"text {result.metric('text_baseline', 'pr_auc'):.3f}")
        planted = planted_signal(frame, piece.X, 0, config)
        null = next(r for r in random_label_null(frame, piece.X, 0, config, real_run=results.get(0))
                    if r.name == "permutation_null")
        tripwires += [{"tripwire": r.name, "passed": r.passed, "reason_code": r.reason_code, "detail": r.detail,
                       **piece.scope} for r in (planted, null)]
    return pd.concat(predictions, ignore_index=True), pd.DataFrame(tripwires)


def summarise(predictions: pd.DataFrame, labels: pd.DataFrame, tag: str, n_resamples: int) -> pd.DataFrame:
    """Per slice: seed-averaged PR-AUC of the probe and both baselines, and the margins over each with a
    problem-bootstrap interval of the seed-averaged margin (never an average of per-seed endpoints)."""
    truth = tag_labels(labels, tag).set_index(["trace_key", "chunk_idx"])["anchor"]
    rows = []
    for scope, part in predictions.groupby(["model_key", "layer_key", "setting"]):
        seeds = []
        for seed, rows_of_seed in part.groupby("seed"):
            wide = rows_of_seed.pivot_table(index=["trace_key", "chunk_idx", "problem_id", "fold"], columns="probe",
                                            values="score").reset_index()
            y = truth.loc[list(zip(wide["trace_key"], wide["chunk_idx"], strict=True))].to_numpy()
            # scored fold by fold: under leave-problems-out each fold's model has its own C and scale
            columns = fold_columns(wide[list(PROBES)].to_numpy(float), wide["fold"], wide["problem_id"])
            seeds.append(SeedRows(int(seed), y, wide["problem_id"].to_numpy(), columns))
        by_fold = per_fold_statistic(lambda y, s: pr_auc_columns(y, s))
        point = np.nanmean([by_fold(s.labels, s.scores) for s in seeds], axis=0)
        margins = seed_averaged_interval(seeds, per_fold_statistic(lambda y, s: pr_auc_columns(y, s)[0]
                                                                   - pr_auc_columns(y, s)[1:]),
                                         n_resamples=n_resamples, statistic_name="probe - baseline PR-AUC, per fold")
        rows.append([*scope, tag, len(seeds), margins.n_units, *point,
                     margins.point[0], margins.low[0], margins.high[0], margins.point[1], margins.low[1], margins.high[1]])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
