"""Vectorised sentence pooling over a padded batch of hidden states.

Why: a trace has up to ~300 sentences; a Python loop per sentence (slice, mean, copy) costs more
than the forward pass of a small model. Here the index arithmetic is done once per batch and each
layer is pooled with one gather + one ``index_add_`` (mean) or one gather (last token), in float32
whatever the compute dtype (bf16 sums lose precision).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ta_platform.extraction.pooling_names import POOLINGS


@dataclass(frozen=True)
class SegmentPlan:
    """Where every sentence of a batch lives in the flattened ``[B * T, H]`` hidden states."""

    token_rows: torch.Tensor  # flat row of every (sentence, token) pair, sentence-major
    segment_ids: torch.Tensor  # sentence of each pair (0..S-1, batch order)
    counts: torch.Tensor  # tokens per sentence, float32 [S, 1]
    last_rows: torch.Tensor  # flat row of each sentence's last token [S]
    n_segments: int


def plan_segments(token_spans: Sequence[np.ndarray], padded_length: int, device: torch.device | str) -> SegmentPlan:
    """Build the gather/scatter indices for sequences ``0..B-1`` padded to ``padded_length``.

    ``token_spans[b]`` is the ``int[n_b, 2]`` (start, end-exclusive) array of sequence ``b``.
    """
    spans = np.concatenate([np.asarray(s, dtype=np.int64).reshape(-1, 2) for s in token_spans], axis=0)
    base = np.repeat(np.arange(len(token_spans), dtype=np.int64) * padded_length,
                     [len(s) for s in token_spans])
    starts, ends = spans[:, 0] + base, spans[:, 1] + base
    lengths = ends - starts
    segment_ids = np.repeat(np.arange(len(spans), dtype=np.int64), lengths)
    offsets_in_segment = np.arange(lengths.sum(), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    token_rows = np.repeat(starts, lengths) + offsets_in_segment
    as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return SegmentPlan(
        token_rows=as_tensor(token_rows), segment_ids=as_tensor(segment_ids),
        counts=as_tensor(lengths.astype(np.float32)).unsqueeze(1), last_rows=as_tensor(ends - 1),
        n_segments=len(spans),
    )


def pool_segments(hidden: torch.Tensor, plan: SegmentPlan, pooling: str) -> torch.Tensor:
    """``float32 [S, H]``: the mean (or last token) of each sentence's hidden states."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    if pooling == "last":
        return flat.index_select(0, plan.last_rows).float()
    if pooling != "mean":
        raise ValueError(f"unknown pooling {pooling!r} (use one of {POOLINGS})")
    gathered = flat.index_select(0, plan.token_rows).float()
    sums = torch.zeros(plan.n_segments, flat.shape[-1], dtype=torch.float32, device=flat.device)
    sums.index_add_(0, plan.segment_ids, gathered)
    return sums / plan.counts
