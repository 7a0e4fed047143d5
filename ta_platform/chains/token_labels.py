"""Token labels from character offsets on the exact string fed to the model.

The text fed to the model is ``reasoning_chain`` itself, tokenized once with the same special-token
setting as the forward pass (``extraction.spans.tokenize_with_offsets``). A token is
``in_backtracking`` when its characters overlap a backtracking section; ``backtrack_onset`` marks
the first token of each section. Special tokens (zero-width offsets, e.g. a BOS) get no row: their
activation says nothing about the text. Rows are numbered ``token_idx`` 0..n-1 within the chain, so
a lag is a shift of ``token_idx`` (see ``lags.py``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.extraction.spans import tokenize_with_offsets

from .tags import BACKTRACKING

TOKEN_COLUMNS = ["chain_id", "token_idx", "position", "token_id", "n_tokens", "rel_position", "in_backtracking",
                 "backtrack_onset", "section_index"]


def chain_token_labels(chain_id: str, text: str, spans: list[list[Any]], tokenizer: Any) -> pd.DataFrame:
    """One row per real token of ``text`` with both labels (``TOKEN_COLUMNS``)."""
    ids, offsets = tokenize_with_offsets(tokenizer, text, add_special_tokens=True, item=chain_id)
    real = np.flatnonzero(offsets[:, 1] > offsets[:, 0])
    starts, ends = offsets[real, 0], offsets[real, 1]
    in_bt = np.zeros(real.size, dtype=bool)
    onset = np.zeros(real.size, dtype=bool)
    section = np.full(real.size, -1, dtype=np.int64)
    for number, (label, char_start, char_end) in enumerate(spans):
        if label != BACKTRACKING:
            continue
        overlap = np.flatnonzero((starts < char_end) & (ends > char_start))
        if overlap.size:
            in_bt[overlap] = True
            section[overlap] = number
            onset[overlap[0]] = True
    n = real.size
    return pd.DataFrame({
        "chain_id": chain_id, "token_idx": np.arange(n, dtype=np.int64), "position": real.astype(np.int64),
        "token_id": ids[real].astype(np.int64), "n_tokens": np.int64(n),
        "rel_position": np.arange(n, dtype=np.float64) / max(n - 1, 1),
        "in_backtracking": in_bt, "backtrack_onset": onset, "section_index": section,
    }, columns=TOKEN_COLUMNS)


def token_label_table(chains: pd.DataFrame, tokenizer: Any) -> pd.DataFrame:
    """Token labels of every chain of the chains table, in chain order."""
    frames = [chain_token_labels(row.chain_id, row.text, json.loads(row.spans), tokenizer)
              for row in chains.itertuples()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TOKEN_COLUMNS)
