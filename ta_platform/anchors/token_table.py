"""Token spans of every sentence for each configured tokenizer, via offset mappings.

Why per tokenizer: each model tokenizes ``full_cot`` differently, and extraction pools over that
model's tokens; the span table is computed once here so a span check can gate extraction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ta_platform.common.faults import DataFault, FaultRecord
from ta_platform.extraction.spans import char_spans_to_token_spans, tokenize_with_offsets

TOKEN_SPAN_COLUMNS = ["tokenizer", "trace_key", "chunk_idx", "tok_start", "tok_end", "n_tokens"]


def token_span_table(
    snapshot: pd.DataFrame, char_spans: pd.DataFrame, tokenizers: Mapping[str, Any]
) -> tuple[pd.DataFrame, list[FaultRecord]]:
    """Rows for every (tokenizer, sentence); a trace whose spans cannot be mapped is recorded."""
    frames: list[pd.DataFrame] = []
    faults: list[FaultRecord] = []
    grouped = {key: group.sort_values("chunk_idx") for key, group in char_spans.groupby("trace_key")}
    for name, tokenizer in sorted(tokenizers.items()):
        for trace in snapshot.itertuples():
            spans = grouped.get(trace.trace_key)
            if spans is None:
                continue
            item = f"{name}:{trace.trace_key}"
            try:
                ids, offsets = tokenize_with_offsets(tokenizer, trace.full_cot, item=item)
                tokens = char_spans_to_token_spans(offsets, spans[["char_start", "char_end"]].to_numpy(),
                                                   item=item, text_length=len(trace.full_cot))
            except DataFault as fault:
                faults.append(FaultRecord.from_fault("tokenize", item, fault))
                continue
            frames.append(pd.DataFrame({
                "tokenizer": name, "trace_key": trace.trace_key, "chunk_idx": spans["chunk_idx"].to_numpy(),
                "tok_start": tokens[:, 0], "tok_end": tokens[:, 1], "n_tokens": len(ids),
            }))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TOKEN_SPAN_COLUMNS)
    return table, faults
