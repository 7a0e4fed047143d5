"""Needle test helpers: a synthetic slice (label frame + activations) with a known signal, and the label check."""

import numpy as np
import pandas as pd

from ta_platform.extraction.spans import tokenize_with_offsets


def synthetic_slice(seed: int = 0, n_docs: int = 90, tokens: int = 40, dims: int = 24, signal: float = 1.5,
                    noise_dims_signal: int = 1):
    """Documents of ``tokens`` tokens; half hold a needle of 6 tokens whose activations are shifted by ``signal``
    along the first ``noise_dims_signal`` dimensions. Splits by document: 60% train, 20% val, 20% test."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_docs):
        split = "train" if d % 5 < 3 else ("val" if d % 5 == 3 else "test")
        has = d % 2 == 0
        start = int(rng.integers(1, tokens - 7))
        for p in range(tokens):
            needle = has and start <= p < start + 6
            rows.append({"doc_id": f"doc{d}", "group": f"g{d}", "split": split, "has_needle": has, "position": p,
                         "token_id": int(rng.integers(0, 50)), "char_start": 4 * p, "char_end": 4 * p + 3,
                         "is_needle": needle, "n_tokens": tokens, "rel_position": p / (tokens - 1), "stored": True})
    frame = pd.DataFrame(rows)
    X = rng.normal(size=(len(frame), dims)).astype(np.float32)
    X[frame["is_needle"].to_numpy(), :noise_dims_signal] += signal
    return frame, X


def check_labels(doc, tokenizer, labels):
    """Every needle character is in a positive token; every positive token overlaps the needle; no special token."""
    ids, offsets = tokenize_with_offsets(tokenizer, doc.text)
    assert (labels["n_tokens"] == len(ids)).all()
    assert (offsets[labels["position"], 1] > offsets[labels["position"], 0]).all()  # real tokens only
    positives = labels[labels["is_needle"]]
    (start, end), = doc.needle_spans
    covered = np.zeros(len(doc.text), dtype=bool)
    for s, e in zip(positives["char_start"], positives["char_end"], strict=True):
        assert s < end and e > start  # overlaps the needle
        covered[s:e] = True
    assert covered[start:end].all()
    assert tokenizer.decode(ids[positives["position"].to_numpy()]).strip().startswith(doc.text[start:end][:8])
    negatives = labels[~labels["is_needle"]]
    assert ((negatives["char_end"] <= start) | (negatives["char_start"] >= end)).all()
