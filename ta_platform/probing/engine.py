"""The probe engine: every study's linear probes (balanced L2 logistic heads, ridge) in one place.

Why one engine: the anchors, backtracking, needle and preference studies all fit linear probes on
activation matrices, and at paper scale those matrices do not fit in memory several times over.
The engine reads the rows once per pass (ndarray, memmap or a store partition with ``rows`` /
``iter_blocks``), standardises with training-row statistics from one streaming pass, and fits MANY
heads per pass: every C of a grid and every target sharing the rows (e.g. every lag of the
backtracking study, with a mask where a lag runs past the chain's end; every seed's split of an
anchors slice, each with its own standardisation), preconditioned by the rows' top covariance
directions. Ridge is solved for a whole alpha grid from one accumulated X'X, every leave-one-group-out
fold by subtraction, exactly or by preconditioned CG above 2,048 dims. torch computes: CUDA when
present, the CPU otherwise.

sklearn stays the reference (``ta_platform_tests/test_probing_engine.py``): same objectives, same
C / alpha conventions, agreement checked on every study's probe shape.

Usage (lags of one layer, C grid chosen per lag on validation)::

    heads = fit_logistic_heads(X, Y[train], mask=present[train], rows=train, c_grid=(1e-3, 1e-2, 1e-1))
    val_scores = heads.decision(X, val)          # [val rows, lags, C]
    weights = heads.head(lag_index, best_c_index)  # coef, intercept, scaler_mean, scaler_scale
"""

from __future__ import annotations

from .engine_data import DEFAULT_BLOCK_ROWS, RowSource, as_row_source, engine_device
from .engine_logistic import DEFAULT_MEMORY_BUDGET, LogisticHeads, fit_logistic_heads, plan_bytes
from .engine_ridge import RidgeGram, RidgeGrid, RidgePath, ridge_path
from .engine_ridge_folds import accumulate_gram, fit_ridge_grid, fit_ridge_grids_leaving_out, fit_ridge_path
from .streaming_scaler import Standardisation, StreamingScaler, fit_standardisation, fit_standardisations

__all__ = [
    "DEFAULT_BLOCK_ROWS", "DEFAULT_MEMORY_BUDGET", "LogisticHeads", "RidgeGram", "RidgeGrid", "RidgePath", "RowSource",
    "Standardisation", "StreamingScaler", "accumulate_gram", "as_row_source", "engine_device",
    "fit_logistic_heads", "fit_ridge_grid", "fit_ridge_grids_leaving_out", "fit_ridge_path", "fit_standardisation",
    "fit_standardisations", "plan_bytes", "ridge_path",
]
