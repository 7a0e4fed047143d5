"""Checks of a preference study that can fail: recovery of a planted truth, accuracy above chance.

Why here (no Dagster): the asset checks in ``defs/preferences/checks.py`` call these, and tests
plant the faults they name (shuffled utilities, a judge that answers at random) directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def truth_recovery(utilities: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Spearman between fitted and planted mu, per task set (``utilities`` has ``task_set``).

    A task set whose tasks are missing from the truth scores NaN (counted as a failure by callers).
    """
    true_mu = truth.set_index(truth["task_id"].astype(str))["mu"]
    out = {}
    for task_set, group in utilities.groupby("task_set"):
        ids = group["task_id"].astype(str)
        if not ids.isin(true_mu.index).all() or len(group) < 3:
            out[str(task_set)] = float("nan")
            continue
        out[str(task_set)] = float(spearmanr(group["mu"].to_numpy(), true_mu.loc[ids].to_numpy()).statistic)
    return out


def failing_recovery(recovery: Mapping[str, float], bound: float) -> list[str]:
    """Task sets whose Spearman with the truth is below ``bound`` (or NaN)."""
    return [name for name, rho in recovery.items() if not np.isfinite(rho) or rho < bound]


def not_above_chance(fits: Iterable[Mapping]) -> list[str]:
    """Task sets whose held-out accuracy interval does not lie above 0.5 (or has no held-out pairs).

    Why the interval and not the point: 0.56 on 60 held-out pairs is chance within noise.
    """
    return [str(f["task_set"]) for f in fits
            if not (np.isfinite(f.get("heldout_accuracy_low", np.nan)) and f["heldout_accuracy_low"] > 0.5)]
