"""Baselines of the lag probes, fitted on the same train chains and scored on the same rows.

- ``token_identity``: the token at t alone. Score = the train rate of the target among rows whose
  source token has this id, shrunk toward the train prevalence by ``prior`` pseudo-rows (an unseen
  token scores the prevalence). This is the exact maximum-likelihood answer of a one-hot model and
  costs one ``groupby`` instead of a logistic fit over the vocabulary.
- ``position``: the relative position of t in its chain; train rate of the target per position bin.
- ``persistence``: the label at t used as the prediction for t + k ("a backtrack is under way");
  at k = 0 it IS the label, so it is reported only for k != 0.
- ``lag0_probe``: the lag-0 probe's score at t used as the prediction for t + k: does a lag-k probe
  know more than "a backtrack is under way now"? (k != 0 only.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BASELINES = ("token_identity", "position", "persistence", "lag0_probe")


def applicable_baselines(lag: int) -> tuple[str, ...]:
    """The baselines that apply at ``lag``: all four, except at k = 0 where persistence IS the label and
    the lag-0 probe is the probe itself. A claim "beats the baselines" must beat every one of these."""
    return BASELINES if int(lag) != 0 else BASELINES[:2]


def rate_by_key(train_keys: np.ndarray, train_labels: np.ndarray, keys: np.ndarray, prior: float = 1.0) -> np.ndarray:
    """Shrunk train rate of the label per key, looked up for ``keys`` (unseen keys: the prevalence)."""
    labels = np.asarray(train_labels, dtype=np.float64)
    base = float(labels.mean()) if labels.size else 0.0
    stats = pd.DataFrame({"key": train_keys, "y": labels}).groupby("key")["y"].agg(["sum", "count"])
    rate = (stats["sum"] + prior * base) / (stats["count"] + prior)
    return pd.Series(keys).map(rate).fillna(base).to_numpy(dtype=np.float64)


def position_bins(rel_position: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((np.asarray(rel_position, dtype=np.float64) * n_bins).astype(np.int64), n_bins - 1)
