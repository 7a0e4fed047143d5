"""Anchor labels from counterfactual importance, with explicit tie and zero policies.

Why explicit policies: 37% of real counterfactual importances are exactly 0, so a per-problem
90th percentile can itself be 0; labelling everything ``>= 0`` as an anchor would then make most
sentences anchors. We therefore (a) drop the last chunk (its importance is 0 by construction),
(b) label ``score >= threshold`` (ties at the threshold are all anchors, so the result does not
depend on row order) and (c) never label a score at or below ``zero_threshold`` as an anchor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ta_platform.rollouts.trace import Trace

LABEL_COLUMNS = [
    "trace_key", "model", "split", "setting", "problem_id", "chunk_idx", "n_chunks", "rel_position",
    "function_tag", "text", "counterfactual_importance", "resampling_importance", "is_last_chunk",
    "in_label_set", "anchor_score", "anchor", "data_split",
]


@dataclass(frozen=True)
class AnchorLabelConfig:
    """How anchors are defined. Stored with every labels artifact as provenance."""

    score: str = "abs"  # "abs": |CI| ; "signed": -CI (a sentence that helps accuracy has CI < 0)
    percentile: float = 90.0  # per problem trace; top (100 - percentile)% are anchors
    drop_last_chunk: bool = True
    zero_threshold: float = 1e-9  # scores <= this are never anchors
    importance_field: str = "counterfactual_importance_accuracy"

    def as_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.score not in {"abs", "signed"}:
            raise ValueError(f"anchor score must be 'abs' or 'signed', got {self.score!r}")
        if not 0.0 < self.percentile < 100.0:
            raise ValueError(f"anchor percentile must be in (0, 100), got {self.percentile}")


def anchor_scores(importance: np.ndarray, config: AnchorLabelConfig) -> np.ndarray:
    return np.abs(importance) if config.score == "abs" else -importance


def label_anchors(scores: np.ndarray, in_label_set: np.ndarray, config: AnchorLabelConfig) -> np.ndarray:
    """0/1 anchors for one trace: score >= per-trace percentile and above the zero threshold."""
    anchors = np.zeros(len(scores), dtype=np.int8)
    candidates = scores[in_label_set]
    if candidates.size == 0:
        return anchors
    threshold = float(np.percentile(candidates, config.percentile, method="linear"))
    chosen = in_label_set & (scores >= threshold) & (scores > config.zero_threshold)
    anchors[chosen] = 1
    return anchors


def trace_label_rows(trace: Trace, config: AnchorLabelConfig, data_split: str) -> pd.DataFrame:
    """One row per sentence of a trace (the contract in docs/ARCHITECTURE.md)."""
    chunks = trace.chunks
    n_chunks = len(chunks)
    importance = np.array([float(c[config.importance_field]) for c in chunks], dtype=np.float64)
    resampling = np.array([float(c["resampling_importance_accuracy"]) for c in chunks], dtype=np.float64)
    chunk_idx = np.arange(n_chunks)
    is_last = chunk_idx == n_chunks - 1
    in_label_set = ~is_last if config.drop_last_chunk else np.ones(n_chunks, dtype=bool)
    scores = anchor_scores(importance, config)
    return pd.DataFrame(
        {
            "trace_key": trace.key,
            "model": trace.model,
            "split": trace.split,
            "setting": trace.setting,
            "problem_id": trace.problem_id,
            "chunk_idx": chunk_idx,
            "n_chunks": n_chunks,
            "rel_position": chunk_idx / max(n_chunks - 1, 1),
            "function_tag": [(c.get("function_tags") or ["unknown"])[0] for c in chunks],
            "text": [c["chunk"] for c in chunks],
            "counterfactual_importance": importance,
            "resampling_importance": resampling,
            "is_last_chunk": is_last,
            "in_label_set": in_label_set,
            "anchor_score": scores,
            "anchor": label_anchors(scores, in_label_set, config),
            "data_split": data_split,
        },
        columns=LABEL_COLUMNS,
    )


def build_label_table(traces: list[Trace], config: AnchorLabelConfig, splits: dict[str, str]) -> pd.DataFrame:
    """Labels for many traces; ``splits`` maps problem id -> train/val/test."""
    config.validate()
    frames = [trace_label_rows(trace, config, splits[trace.problem_id]) for trace in traces]
    if not frames:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    return pd.concat(frames, ignore_index=True)
