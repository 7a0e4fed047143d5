"""The study's tripwires: data checks on chains and labels, and the probing package's non-flaky
permutation null and planted signal run on a token slice (the chain is the unit).

Why reuse ``probing.tripwires``: its null is calibrated by the exact distribution of a random
ranking within units (no hand-tuned margin) and its planted signal goes through the same suite path;
here a token is a "sentence" and a chain a "problem", so ``anchor_frame`` is the only adapter.
Each function returns a ``probing.tripwires.TripwireResult`` with a stable ``reason_code``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ta_platform.probing.engine_data import as_row_source, resolve_rows
from ta_platform.probing.tripwires import OK, TripwireResult, planted_signal, random_label_null

from .lag_probes import LagConfig

MAX_NAMED = 10


def alignment_coverage(n_records: int, coverage: Sequence[float], faults: Sequence[str],
                       config: LagConfig) -> TripwireResult:
    """Enough records aligned (``min_aligned_fraction``) and their sections cover enough of the text."""
    name = "alignment_coverage"
    coverage = np.asarray(coverage, dtype=np.float64)
    aligned = coverage.size / n_records if n_records else 0.0
    mean = float(coverage.mean()) if coverage.size else 0.0
    metrics = {"n_records": int(n_records), "n_aligned": int(coverage.size), "aligned_fraction": aligned,
               "mean_coverage": mean, "faults": list(faults)[:50]}
    if aligned < config.min_aligned_fraction:
        return TripwireResult(name, False, "too_few_aligned", metrics,
                              f"{coverage.size}/{n_records} records aligned (< {config.min_aligned_fraction:.0%}); "
                              f"faults: {list(faults)[:MAX_NAMED]}")
    if mean < config.min_mean_coverage:
        return TripwireResult(name, False, "low_coverage", metrics,
                              f"sections cover {mean:.0%} of the chains on average (< {config.min_mean_coverage:.0%})")
    return TripwireResult(name, True, OK, metrics)


def label_prevalence(tokens: pd.DataFrame, config: LagConfig) -> TripwireResult:
    """Share of ``in_backtracking`` tokens per model inside [low, high], and at least one onset each."""
    name = "label_prevalence"
    by_model = tokens.groupby("model").agg(prevalence=("in_backtracking", "mean"), onsets=("backtrack_onset", "sum"))
    metrics = {model: {"prevalence": float(r.prevalence), "onsets": int(r.onsets)} for model, r in by_model.iterrows()}
    bad = [f"{model}: prevalence {r.prevalence:.4f}, {int(r.onsets)} onsets" for model, r in by_model.iterrows()
           if not (config.prevalence_low <= r.prevalence <= config.prevalence_high) or r.onsets == 0]
    if by_model.empty:
        return TripwireResult(name, False, "no_tokens", metrics, "no token labels")
    if bad:
        return TripwireResult(name, False, "prevalence_out_of_band", metrics,
                              f"outside [{config.prevalence_low}, {config.prevalence_high}]: {bad}")
    return TripwireResult(name, True, OK, metrics)


def chains_in_one_split(assignments: pd.DataFrame) -> TripwireResult:
    """The seed's ONE recorded split, by problem, is what every slice used.

    ``assignments``: rows (seed, scope, chain_id, unit_id, chain_key, split) from
    ``studies.backtracking.split_assignments``: scope ``recorded`` is table ``backtracking_splits``
    (the dataset-wide split by chain problem), every other scope a slice's split as it was used.
    Fails with ``no_recorded_split`` (a seed's slices ran without a recorded split),
    ``problem_leak`` (a problem unit in two splits of the record), ``chain_leak`` (the same chain text,
    ``chain_key``, in two splits: a duplicate filed under two problems) or ``split_moved`` (a slice used
    another split than the recorded one for some chain: what a per-slice split did when a model dropped
    chains). Failures name the seed, the chains and the scopes.
    """
    name = "chains_in_one_split"
    needed = {"seed", "scope", "chain_id", "unit_id", "chain_key", "split"}
    if assignments.empty or not needed <= set(assignments.columns):
        return TripwireResult(name, False, "no_recorded_split", {},
                              f"no recorded split with columns {sorted(needed)}: materialise backtracking_lag_probes")
    recorded = assignments[assignments["scope"] == "recorded"]
    used = assignments[assignments["scope"] != "recorded"]
    metrics = {"n_seeds": int(assignments["seed"].nunique()), "n_problems": int(recorded["unit_id"].nunique()),
               "n_chains": int(recorded["chain_id"].nunique()), "n_slices": int(used["scope"].nunique())}
    unrecorded = sorted(set(used["seed"]) - set(recorded["seed"]))
    if unrecorded or recorded.empty:
        return TripwireResult(name, False, "no_recorded_split", metrics,
                              f"seed(s) {unrecorded or sorted(set(assignments['seed']))} have no recorded split")
    for key, reason, what in (("unit_id", "problem_leak", "problem"), ("chain_key", "chain_leak", "chain text")):
        n_splits = recorded.groupby(["seed", key])["split"].nunique()
        leaking = n_splits[n_splits > 1]
        if leaking.size:
            named = []
            for seed, value in leaking.index[:MAX_NAMED]:
                rows = recorded[(recorded["seed"] == seed) & (recorded[key] == value)]
                named.append(f"seed {seed}: {what} {str(value)[:10]} (" + ", ".join(
                    f"{r.chain_id} in {r.split}" for r in rows.itertuples()) + ")")
            return TripwireResult(name, False, reason, {**metrics, "n_leaking": int(leaking.size)},
                                  f"{leaking.size} {what}(s) in several splits: " + "; ".join(named))
    joined = used.merge(recorded[["seed", "chain_id", "split"]], on=["seed", "chain_id"], how="left",
                        suffixes=("", "_recorded"))
    moved = joined[joined["split"] != joined["split_recorded"]]
    if len(moved):
        named = [f"seed {r.seed} {r.scope}: {r.chain_id} in {r.split} (recorded: {r.split_recorded})"
                 for r in moved.head(MAX_NAMED).itertuples()]
        return TripwireResult(name, False, "split_moved", {**metrics, "n_moved": len(moved)},
                              f"{len(moved)} chain(s) used in another split than the recorded one: " + "; ".join(named))
    return TripwireResult(name, True, OK, metrics)


def anchor_frame(tokens: pd.DataFrame, max_chains: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Token rows in the probing package's frame layout (chain = problem, token = sentence, lag 0 label),
    restricted to the first ``max_chains`` chains by id (deterministic); returns the kept row mask."""
    chains = sorted(tokens["chain_id"].astype(str).unique())[:max_chains] if max_chains else None
    keep = tokens["chain_id"].astype(str).isin(chains).to_numpy() if chains else np.ones(len(tokens), bool)
    rows = tokens[keep]
    frame = pd.DataFrame({"trace_key": rows["chain_id"].astype(str), "problem_id": rows["chain_id"].astype(str),
                          "chunk_idx": rows["token_idx"], "n_chunks": rows["n_tokens"],
                          "rel_position": rows["rel_position"], "text": rows["token_id"].astype(str),
                          "anchor": rows["in_backtracking"].astype(int)}).reset_index(drop=True)
    return frame, keep


def probe_tripwires(tokens: pd.DataFrame, X, seed: int, config: LagConfig) -> list[TripwireResult]:
    """Permutation null, signal beats null and planted signal on the lag-0 probe of one slice."""
    frame, keep = anchor_frame(tokens, config.tripwire_max_chains)
    source = as_row_source(X)  # an array or an on-demand row view: only the kept chains' rows are read
    X = source.rows(resolve_rows(source, keep))
    probe_config = config.probe_config()
    return [*random_label_null(frame, X, seed, probe_config), planted_signal(frame, X, seed, probe_config)]


def summary_complete(metric_summary: pd.DataFrame, margin_summary: pd.DataFrame) -> TripwireResult:
    """Every (model, layer, lag) the probes scored has its span margin over the best baseline, with a finite
    interval, in ``backtracking_margin_summary``. Why a check: a summary step that failed (or wrote a partial
    table) must turn the gate red, and a check planned in a failed step is read by the gate as missing."""
    name = "summary_complete"
    keys = ["model", "layer", "lag"]
    expected = set() if metric_summary.empty else _cells(
        metric_summary[(metric_summary["probe"] == "linear_probe") & (metric_summary["metric"] == "auroc")], keys)
    if not expected:
        return TripwireResult(name, False, "no_probe_metrics", {}, "backtracking_metric_summary has no probe AUROC")
    have = set()
    if not margin_summary.empty:
        rows = margin_summary[(margin_summary["target"] == "span") & (margin_summary["metric"] == "auroc")
                              & (margin_summary["baseline"] == "best_baseline")]
        finite = np.isfinite(rows[["margin", "ci_low", "ci_high"]].to_numpy(np.float64)).all(axis=1)
        have = _cells(rows.loc[finite], keys)
    missing = sorted(expected - have)
    metrics = {"n_cells": len(expected), "n_missing": len(missing)}
    if missing:
        shown = ", ".join(f"{model}/{layer}/lag{lag:+d}" for model, layer, lag in missing[:8])
        return TripwireResult(name, False, "margins_missing", metrics,
                              f"{len(missing)} of {len(expected)} cells lack a margin with an interval: {shown}")
    return TripwireResult(name, True, OK, metrics)


def _cells(frame: pd.DataFrame, keys: list[str]) -> set[tuple[str, str, int]]:
    """(model, layer, lag) of each row; lag as an int whatever the table's numeric type."""
    return {(str(model), str(layer), int(lag)) for model, layer, lag in frame[keys].itertuples(index=False)}
