"""Sentence character spans -> token spans, on the exact string fed to the model.

Why: a probe row is the pooled activation of one sentence; which tokens belong to it must come
from the offsets of the very tokenization the forward pass used (same string, same special-token
setting), or every row silently shifts. Offsets need a fast tokenizer. Pure numpy, vectorised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ta_platform.common.faults import DataFault


def tokenize_with_offsets(tokenizer: Any, text: str, *, add_special_tokens: bool = True,
                          item: str = "<text>") -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids int64[n], offsets int64[n, 2])`` for ``text``, with the default special-token setting.

    Special tokens (e.g. a BOS) get the empty offset ``(0, 0)``. Raises ``TypeError`` for a slow
    tokenizer (no offsets), ``DataFault`` for a text that tokenizes to nothing.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: character offsets need one "
            "(load it with AutoTokenizer.from_pretrained(..., use_fast=True) or ship a tokenizer.json)"
        )
    encoding = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                         return_attention_mask=False, truncation=False)
    ids = np.asarray(encoding["input_ids"], dtype=np.int64)
    offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    if ids.size == 0:
        raise DataFault(item, "text tokenizes to no tokens", kind="empty")
    return ids, offsets


def char_spans_to_token_spans(offsets: np.ndarray, char_spans: Sequence[tuple[int, int]] | np.ndarray, *,
                              item: str = "<text>", text_length: int | None = None) -> np.ndarray:
    """Token spans ``int64[n, 2]`` (end-exclusive) of the tokens overlapping each character span.

    A token belongs to a sentence when their character ranges overlap, so a token that straddles
    a boundary belongs to both sentences. Zero-width tokens (special tokens) belong to none. Every
    span is non-empty and inside the sequence; a sentence that no token covers, or a span that is
    empty, reversed or past the text, raises ``DataFault`` naming ``item`` and the sentence index.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    spans = np.asarray(char_spans, dtype=np.int64).reshape(-1, 2)
    starts, ends = spans[:, 0], spans[:, 1]
    bad = np.flatnonzero((starts < 0) | (ends <= starts)
                         | ((ends > text_length) if text_length is not None else np.zeros_like(starts, bool)))
    if bad.size:
        i = int(bad[0])
        raise DataFault(item, f"sentence {i}: character span ({starts[i]}, {ends[i]}) is empty or outside the text",
                        kind="misaligned_span")
    real = np.flatnonzero(offsets[:, 1] > offsets[:, 0])  # skip special tokens (zero-width offsets)
    tok_starts, tok_ends = offsets[real, 0], offsets[real, 1]
    if np.any(np.diff(tok_starts) < 0) or np.any(np.diff(tok_ends) < 0):
        raise DataFault(item, "token offsets are not monotonic; cannot map sentences to tokens", kind="offsets")
    first = np.searchsorted(tok_ends, starts, side="right")  # first real token ending after the span starts
    stop = np.searchsorted(tok_starts, ends, side="left")  # first real token starting at/after the span end
    empty = np.flatnonzero(stop <= first)
    if empty.size:
        i = int(empty[0])
        raise DataFault(item, f"sentence {i}: character span ({starts[i]}, {ends[i]}) covers no token "
                              f"({empty.size} such sentence(s))", kind="no_tokens")
    token_spans = np.stack([real[first], real[stop - 1] + 1], axis=1)
    return token_spans.astype(np.int64)
