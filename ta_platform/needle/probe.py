"""The token probe and its baselines: logistic regression with L2 chosen on validation AUROC.

One path for the three probes, so they differ only in what they see (``PROBES``): the activations
(``linear_probe``), the token's identity (``token_identity``: one-hot token ids) or its position
(``position``). Each is a ``probing.models.Probe`` chosen by ``probing.models.select_and_fit`` on the
same documents: the grid is L2 strengths (``C = 1 / L2``, strongest first, ties to the stronger),
the choice is by validation AUROC, the probe is fitted on train only (so val metrics are held out).

Class balance: ``weighted`` keeps every training row and weights classes inversely to their counts;
``downsample`` draws (seeded) as many rows of the larger class as the smaller class has, after which
the balanced weights are all 1. Caps (``max_train_docs`` / ``max_val_docs``: a seeded choice of
documents; ``max_train_tokens`` / ``max_val_tokens``: a seeded choice of rows) make quick runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.features import ProbeInputs
from ta_platform.probing.metrics import auroc, pr_auc
from ta_platform.probing.models import Probe, ProbeSpec, Selection, make_linear_probe, select_and_fit
from ta_platform.probing.splits import hash_order
from ta_platform.probing.thresholds import best_f1_threshold, f1_at

BALANCE_MODES = ("weighted", "downsample")
POSITION_FEATURES = ("position", "log1p_position", "sqrt_position", "is_first_token")


@dataclass(frozen=True)
class NeedleProbeConfig:
    l2_grid: tuple[float, ...] = (100.0, 10.0, 1.0, 0.1)  # L2 strengths; C = 1 / L2
    class_balance: str = "weighted"
    max_train_docs: int = 0  # 0 = no cap
    max_val_docs: int = 0
    max_train_tokens: int = 0
    max_val_tokens: int = 0
    logistic_max_iter: int = 500
    bootstrap_resamples: int = 200  # over documents
    monitor_top_k: int = 5

    def __post_init__(self) -> None:
        if self.class_balance not in BALANCE_MODES:
            raise ValueError(f"class_balance must be one of {BALANCE_MODES}, not {self.class_balance!r}")
        if not self.l2_grid or min(self.l2_grid) <= 0:
            raise ValueError(f"l2_grid must be positive L2 strengths, not {self.l2_grid}")

    def probe_config(self) -> ProbeConfig:
        """The shared probe config: C grid strongest first, no refit on val (val metrics stay held out)."""
        return ProbeConfig(l2_c_grid=tuple(1.0 / l2 for l2 in sorted(self.l2_grid, reverse=True)),
                           logistic_max_iter=self.logistic_max_iter, refit_on_train_val=False,
                           probes=("linear_probe",), bootstrap_resamples=0)

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class FrameColumns(TransformerMixin, BaseEstimator):
    """Pipeline step: ``ProbeInputs`` -> columns of its frame, computed by ``pick`` (no fitting)."""

    def __init__(self, pick: Callable[[pd.DataFrame], np.ndarray]):
        self.pick = pick

    def fit(self, inputs: ProbeInputs, y: Any = None) -> FrameColumns:
        return self

    def transform(self, inputs: ProbeInputs) -> np.ndarray:
        return self.pick(inputs.frame)


def position_features(frame: pd.DataFrame) -> np.ndarray:
    """Where the token sits: its absolute position, bendable (a needle can be anywhere).

    Not the document's length or the relative position: both would tell a needle document (longer by
    its needle) from a clean one, a document-level cue that says nothing about which token is the needle.
    """
    position = frame["position"].to_numpy(dtype=np.float64)
    return np.column_stack([position, np.log1p(position), np.sqrt(position), (position <= 1).astype(np.float64)])


def _token_ids(frame: pd.DataFrame) -> np.ndarray:
    return frame[["token_id"]].to_numpy(dtype=np.int64)


def _logistic(c_value: float, config: ProbeConfig) -> LogisticRegression:
    return LogisticRegression(C=c_value, class_weight="balanced", max_iter=config.logistic_max_iter)


def make_token_identity(c_value: float, seed: int, config: ProbeConfig) -> Probe:
    """One-hot token id + logistic: how far the token alone goes (unseen ids score the intercept)."""
    steps = [("columns", FrameColumns(_token_ids)), ("onehot", OneHotEncoder(handle_unknown="ignore")),
             ("model", _logistic(c_value, config))]
    return Probe("token_identity", Pipeline(steps))


def make_position(c_value: float, seed: int, config: ProbeConfig) -> Probe:
    steps = [("columns", FrameColumns(position_features)), ("scale", StandardScaler()),
             ("model", _logistic(c_value, config))]
    return Probe("position", Pipeline(steps))


PROBES: dict[str, Callable[[float, int, ProbeConfig], Probe]] = {
    "linear_probe": make_linear_probe, "token_identity": make_token_identity, "position": make_position}


def cap_rows(frame: pd.DataFrame, rows: np.ndarray, max_docs: int, max_tokens: int, seed: int, salt: str) -> np.ndarray:
    """``rows`` (positions into ``frame``) limited to a seeded choice of documents, then of rows."""
    rows = np.asarray(rows)
    if max_docs:
        prefix = f"{salt}:docs:"  # salted ids: the order is sha256(f"{seed}:{salt}:docs:{doc_id}")
        ordered = hash_order([prefix + str(d) for d in np.unique(frame["doc_id"].to_numpy()[rows])], seed)
        docs = [d[len(prefix):] for d in ordered[:max_docs]]
        rows = rows[np.isin(frame["doc_id"].to_numpy()[rows], docs)]
    if max_tokens and rows.size > max_tokens:
        rng = np.random.default_rng([seed, 31337, len(salt)])
        rows = np.sort(rng.choice(rows, size=max_tokens, replace=False))
    return rows


def balance_rows(labels: np.ndarray, rows: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """``weighted``: ``rows`` unchanged; ``downsample``: every row of the smaller class and as many of the larger."""
    if mode == "weighted":
        return np.asarray(rows)
    rows = np.asarray(rows)
    y = np.asarray(labels)[rows].astype(bool)
    pos, neg = rows[y], rows[~y]
    small, large = (pos, neg) if pos.size <= neg.size else (neg, pos)
    rng = np.random.default_rng([seed, 4099])
    kept = rng.choice(large, size=small.size, replace=False) if small.size else large[:0]
    return np.sort(np.concatenate([small, kept]))


def row_stats(frame: pd.DataFrame, labels: np.ndarray) -> dict[str, float]:
    y = np.asarray(labels).astype(bool)
    return {"n_docs": int(frame["doc_id"].nunique()), "n_tokens": int(y.size), "n_positive": int(y.sum()),
            "n_negative": int((~y).sum()), "positive_rate": float(y.mean()) if y.size else float("nan"),
            "n_docs_with_needle": int(frame.loc[frame["has_needle"].astype(bool), "doc_id"].nunique())}


def token_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    return {"auroc": auroc(labels, scores), "pr_auc": pr_auc(labels, scores), "f1": f1_at(labels, scores, threshold)}


@dataclass
class FittedProbe:
    name: str
    selection: Selection
    l2_scores: dict[float, float]  # L2 strength -> val AUROC
    threshold: float

    @property
    def selected_l2(self) -> float:
        return 1.0 / self.selection.value

    def score(self, inputs: ProbeInputs) -> np.ndarray:
        return self.selection.probe.predict_score(inputs)


def fit_probe(name: str, train: ProbeInputs, y_train: np.ndarray, val: ProbeInputs, y_val: np.ndarray, seed: int,
              config: NeedleProbeConfig) -> FittedProbe:
    """Choose L2 on validation AUROC, fit on train; the F1 threshold is chosen on validation too (every token of
    the validation documents: drawn like the test rows it is applied to, ``labels.EVERY_TOKEN_SPLITS``)."""
    shared = config.probe_config()
    spec = ProbeSpec(name, PROBES[name], "C", shared.l2_c_grid)
    selection = select_and_fit(spec, train, y_train, val, y_val, seed, shared, metric="auroc")
    threshold = best_f1_threshold(y_val, selection.probe.predict_score(val))  # +inf (predict none) without positives
    return FittedProbe(name, selection, {1.0 / c: s for c, s in selection.val_scores.items()}, threshold)
