"""The lag convention, written once and used everywhere in the study.

    The probe reads the activation at token t and predicts the label at token t + k.
    k > 0 is the future (predicting ahead), k < 0 the past, k = 0 the token itself.

Positions whose target t + k falls outside the chain are dropped (no padding, no wrap-around into
the next chain). ``lag_pairs`` is the only place that turns a lag into row indices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_LAGS = (-8, -4, 0, 4, 8, 16, 32)


def lag_pairs(tokens: pd.DataFrame, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """``(source_rows, target_rows)``: row i of ``tokens`` (token t) paired with the row of token t + lag.

    ``tokens`` must hold each chain's rows contiguously in ``token_idx`` order 0..n-1 (as
    ``token_labels`` writes them); this is checked, because a shuffled frame would pair wrong tokens.
    """
    token_idx = tokens["token_idx"].to_numpy(dtype=np.int64)
    n_tokens = tokens["n_tokens"].to_numpy(dtype=np.int64)
    chain = tokens["chain_id"].astype(str).to_numpy()
    starts = np.r_[True, chain[1:] != chain[:-1]]
    expected = np.arange(len(tokens)) - np.maximum.accumulate(np.where(starts, np.arange(len(tokens)), 0))
    if not np.array_equal(token_idx, expected):
        raise ValueError("token rows are not contiguous per chain in token_idx order; cannot apply a lag")
    target_idx = token_idx + int(lag)
    valid = (target_idx >= 0) & (target_idx < n_tokens)
    source = np.flatnonzero(valid)
    return source, source + int(lag)
