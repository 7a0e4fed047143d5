"""Span and label invariants, as plain functions the Dagster asset checks wrap.

Each returns an ``InvariantResult``: whether it passed, a one-line summary, and the offending
problems/sentences (bounded lists) so a failing check names what to look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MAX_LISTED = 50


@dataclass
class InvariantResult:
    passed: bool
    summary: str
    offenders: list[str] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict:
        return {"summary": self.summary, "offenders": self.offenders[:MAX_LISTED],
                "n_offenders": len(self.offenders), **self.counts}


def _result(offenders: list[str], what: str, total: int) -> InvariantResult:
    if offenders:
        return InvariantResult(False, f"{len(offenders)} of {total} {what}", offenders)
    return InvariantResult(True, f"all {total} ok", [])


def chunk_indices_contiguous(labels: pd.DataFrame) -> InvariantResult:
    offenders = []
    for key, group in labels.groupby("trace_key", sort=True):
        idx = np.sort(group["chunk_idx"].to_numpy())
        if not np.array_equal(idx, np.arange(len(idx))):
            offenders.append(f"{key}: chunk_idx not 0..{len(idx) - 1}")
    return _result(offenders, "traces have non-contiguous chunk indices", labels["trace_key"].nunique())


def importances_finite(labels: pd.DataFrame) -> InvariantResult:
    values = labels[["counterfactual_importance", "resampling_importance"]].to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(axis=1)
    offenders = [f"{r.trace_key}#{r.chunk_idx}" for r in labels.loc[bad, ["trace_key", "chunk_idx"]].itertuples()]
    return _result(offenders, "sentences have NaN/inf importance", len(labels))


def anchor_prevalence_in_band(labels: pd.DataFrame, low: float, high: float) -> InvariantResult:
    scored = labels[labels["in_label_set"]]
    prevalence = float(scored["anchor"].mean()) if len(scored) else float("nan")
    per_trace = scored.groupby("trace_key")["anchor"].mean()
    passed = bool(low <= prevalence <= high)
    summary = f"anchor prevalence {prevalence:.3f} ({'inside' if passed else 'outside'} [{low}, {high}])"
    offenders = [] if passed else [f"{k}: {v:.3f}" for k, v in per_trace.items() if not low <= v <= high]
    return InvariantResult(passed, summary, offenders, {"prevalence": prevalence})


def traces_have_both_classes(labels: pd.DataFrame) -> InvariantResult:
    scored = labels[labels["in_label_set"]]
    stats = scored.groupby("trace_key")["anchor"].agg(["sum", "count"])
    offenders = [f"{k}: {int(r['sum'])} anchors of {int(r['count'])}" for k, r in stats.iterrows()
                 if r["sum"] == 0 or r["sum"] == r["count"]]
    return _result(offenders, "traces lack a positive or a negative", len(stats))


def problems_in_one_split(labels: pd.DataFrame) -> InvariantResult:
    splits = labels.groupby("problem_id")["data_split"].unique()
    offenders = [f"problem {pid}: {sorted(s)}" for pid, s in splits.items() if len(s) > 1]
    return _result(offenders, "problems appear in more than one split", len(splits))


def every_sentence_aligned(labels: pd.DataFrame, spans: pd.DataFrame) -> InvariantResult:
    expected = set(zip(labels["trace_key"], labels["chunk_idx"], strict=True))
    aligned = set(zip(spans["trace_key"], spans["chunk_idx"], strict=True))
    missing = sorted(expected - aligned)
    offenders = [f"{k}#{i}" for k, i in missing]
    result = _result(offenders, "sentences have no character span", len(expected))
    result.counts = {"aligned_fraction": 1.0 - len(missing) / max(len(expected), 1)}
    return result


def char_spans_well_formed(spans: pd.DataFrame, traces: pd.DataFrame) -> InvariantResult:
    """Ordered, non-overlapping, inside the think region, gaps whitespace only."""
    offenders: list[str] = []
    texts = traces.set_index("trace_key")
    for key, group in spans.sort_values(["trace_key", "chunk_idx"]).groupby("trace_key", sort=True):
        row = texts.loc[key]
        full_cot, lo, hi = row["full_cot"], int(row["think_start"]), int(row["think_end"])
        starts, ends = group["char_start"].to_numpy(), group["char_end"].to_numpy()
        for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
            chunk = int(group["chunk_idx"].iloc[i])
            if not lo <= start < end <= hi:
                offenders.append(f"{key}#{chunk}: span [{start}, {end}) outside think region [{lo}, {hi})")
            elif i and start < ends[i - 1]:
                offenders.append(f"{key}#{chunk}: overlaps or precedes the previous sentence")
            elif i and full_cot[ends[i - 1]:start].strip():
                offenders.append(f"{key}#{chunk}: non-whitespace gap before the sentence")
    return _result(offenders, "sentence spans are malformed", len(spans))


def token_spans_well_formed(token_spans: pd.DataFrame) -> InvariantResult:
    bad = (token_spans["tok_end"] <= token_spans["tok_start"]) | (token_spans["tok_start"] < 0) | (
        token_spans["tok_end"] > token_spans["n_tokens"]
    )
    offenders = [f"{r.tokenizer}:{r.trace_key}#{r.chunk_idx} [{r.tok_start}, {r.tok_end}) of {r.n_tokens}"
                 for r in token_spans[bad].itertuples()]
    return _result(offenders, "token spans are empty or outside the sequence", len(token_spans))


def labels_match_recomputed(stored: pd.DataFrame, recomputed: pd.DataFrame) -> InvariantResult:
    """Every stored anchor label equals the label recomputed from the RAW ``chunks_labeled.json``
    importances with the label config the user has set now.

    Why not the stored provenance and stored importances: a check fed by the same file it checks
    cannot see that file being stale (the label config changed since it was written), edited, or
    built from other data. ``recomputed`` comes from the rollouts source read again. A sentence in
    one table and not the other is an offender too.
    """
    keys = ["trace_key", "chunk_idx"]
    merged = stored[[*keys, "anchor"]].merge(recomputed[[*keys, "anchor"]], on=keys, how="outer",
                                             suffixes=("_stored", "_recomputed"), indicator=True)
    missing = merged[merged["_merge"] != "both"]
    differ = merged[(merged["_merge"] == "both") & (merged["anchor_stored"] != merged["anchor_recomputed"])]
    offenders = [f"{r.trace_key}#{r.chunk_idx} (only in {'stored' if r._merge == 'left_only' else 'recomputed'})"
                 for r in missing.itertuples()]
    offenders += [f"{r.trace_key}#{r.chunk_idx} (stored {int(r.anchor_stored)}, recomputed {int(r.anchor_recomputed)})"
                  for r in differ.itertuples()]
    return _result(offenders, "sentences whose stored anchor label differs from the raw data under the current "
                              "label config", len(merged))
