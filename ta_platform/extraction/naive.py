"""The naive extraction path, kept as the reference the platform path is checked and timed against.

Why keep it: it is the obvious code (one trace at a time, ``output_hidden_states=True`` on the whole
causal LM, a Python loop per sentence), so its output is easy to trust; tests require the fast path
to match it and the benchmark reports the speedup over it. Not for production use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ta_platform.extraction.extractor import TraceInput
from ta_platform.extraction.spans import char_spans_to_token_spans, tokenize_with_offsets


def naive_sentence_embeddings(model: Any, tokenizer: Any, traces: Sequence[TraceInput], layers: Sequence[int],
                              pooling: str = "mean") -> dict[int, np.ndarray]:
    """Per-layer ``float32`` matrices, rows in trace then sentence order (no failure handling).

    ``hidden_states[L + 1]`` is the output of block ``L``; do not ask for the last block, whose HF
    entry is taken after the final norm (the platform path returns the block output instead).
    """
    model.eval()
    device = next(model.parameters()).device
    rows: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for trace in traces:
            ids, offsets = tokenize_with_offsets(tokenizer, trace.text, item=trace.key)
            token_spans = char_spans_to_token_spans(offsets, trace.char_spans, item=trace.key)
            output = model(input_ids=torch.from_numpy(ids)[None].to(device), output_hidden_states=True)
            for layer in layers:
                hidden = output.hidden_states[layer + 1][0]
                for start, end in token_spans.tolist():
                    vector = hidden[end - 1] if pooling == "last" else hidden[start:end].float().mean(dim=0)
                    rows[layer].append(vector.float().cpu().numpy())
    return {layer: np.stack(vectors).astype(np.float32) for layer, vectors in rows.items()}
