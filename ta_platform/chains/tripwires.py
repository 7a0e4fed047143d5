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

from ta_platform.probing.tripwires import OK, TripwireResult, planted_signal, random_label_null, split_leakage

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
    """No chain in two splits within a seed, across every slice: ``assignments`` rows (seed, scope,
    chain_id, chain_key, split) as the probes used them; ``chain_key`` is a hash of the chain's text,
    so the same chain filed under two task ids is caught too (``probing.tripwires.split_leakage``)."""
    frame = assignments.rename(columns={"chain_id": "problem_id", "chain_key": "problem_key"})
    result = split_leakage(frame)
    detail = result.detail.replace("problem text", "chain text").replace("problem", "chain")
    return TripwireResult("chains_in_one_split", result.passed,
                          "chain_leak" if result.reason_code == "problem_leak" else result.reason_code,
                          result.metrics, detail)


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


def probe_tripwires(tokens: pd.DataFrame, X: np.ndarray, seed: int, config: LagConfig) -> list[TripwireResult]:
    """Permutation null, signal beats null and planted signal on the lag-0 probe of one slice."""
    frame, keep = anchor_frame(tokens, config.tripwire_max_chains)
    X = np.asarray(X)[keep]
    probe_config = config.probe_config()
    return [*random_label_null(frame, X, seed, probe_config), planted_signal(frame, X, seed, probe_config)]
