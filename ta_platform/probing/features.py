"""What each probe sees: position features, sentence text, activations, or activations + position.

Probes take a ``ProbeInputs`` (label rows + aligned activation rows) so that every probe family has
the same ``fit(inputs, y)`` / ``predict_score(inputs)`` signature; the column selectors below are
the first step of each sklearn pipeline and decide which part of the inputs a probe may use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

POSITION_FEATURE_NAMES = (
    "rel_position",
    "rel_position_sq",
    "rel_position_cube",
    "is_first_chunk",
    "is_first_tenth",
    "log1p_chunk_idx",
    "log1p_n_chunks",
)


@dataclass(frozen=True)
class ProbeInputs:
    """Label rows and the activation rows aligned with them (row i of X is sentence i of frame)."""

    frame: pd.DataFrame
    X: np.ndarray

    def __post_init__(self) -> None:
        if len(self.frame) != self.X.shape[0]:
            raise ValueError(f"{len(self.frame)} label rows but {self.X.shape[0]} activation rows")

    def take(self, rows: np.ndarray) -> ProbeInputs:
        """The subset at integer positions or a boolean mask ``rows``."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return ProbeInputs(self.frame.iloc[rows].reset_index(drop=True), self.X[rows])

    def __len__(self) -> int:
        return len(self.frame)


def position_features(frame: pd.DataFrame) -> np.ndarray:
    """Position of each sentence in its trace, expanded so a linear model can bend.

    The anchor labels have a strong position confound (many anchors in the first tenth, few at the
    end), so the baseline must be flexible in position alone: a cubic in relative position, first
    chunk / first tenth indicators, and log counts for absolute position and trace length.
    """
    rel = frame["rel_position"].to_numpy(dtype=np.float64)
    chunk_idx = frame["chunk_idx"].to_numpy(dtype=np.float64)
    n_chunks = frame["n_chunks"].to_numpy(dtype=np.float64)
    return np.column_stack(
        [
            rel,
            rel**2,
            rel**3,
            (chunk_idx == 0).astype(np.float64),
            (rel < 0.1).astype(np.float64),
            np.log1p(chunk_idx),
            np.log1p(n_chunks),
        ]
    )


class PositionColumns(TransformerMixin, BaseEstimator):
    """Pipeline step: ``ProbeInputs`` -> position feature matrix."""

    def fit(self, inputs: ProbeInputs, y=None) -> PositionColumns:
        return self

    def transform(self, inputs: ProbeInputs) -> np.ndarray:
        return position_features(inputs.frame)


class ActivationColumns(TransformerMixin, BaseEstimator):
    """Pipeline step: ``ProbeInputs`` -> activations as float64 (float32 sums lose precision)."""

    def fit(self, inputs: ProbeInputs, y=None) -> ActivationColumns:
        return self

    def transform(self, inputs: ProbeInputs) -> np.ndarray:
        return np.asarray(inputs.X, dtype=np.float64)


class ActivationAndPositionColumns(TransformerMixin, BaseEstimator):
    """Pipeline step: activations with the position features appended (last columns)."""

    def fit(self, inputs: ProbeInputs, y=None) -> ActivationAndPositionColumns:
        return self

    def transform(self, inputs: ProbeInputs) -> np.ndarray:
        return np.hstack([np.asarray(inputs.X, dtype=np.float64), position_features(inputs.frame)])


class TextColumn(TransformerMixin, BaseEstimator):
    """Pipeline step: ``ProbeInputs`` -> list of sentence texts (for a TF-IDF vectoriser)."""

    def fit(self, inputs: ProbeInputs, y=None) -> TextColumn:
        return self

    def transform(self, inputs: ProbeInputs) -> list[str]:
        return inputs.frame["text"].fillna("").astype(str).tolist()
