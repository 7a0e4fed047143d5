"""Preference study checks: disjoint task sets, converged fits, sane sigma, above-chance accuracy."""

import dagster as dg
import numpy as np
import pandas as pd

from ta_platform.defs.preferences.assets import task_pool, thurstonian_utilities
from ta_platform.store.artifacts import pref_file


@dg.asset_check(asset=task_pool, blocking=True, description="Train and eval task sets are disjoint.")
def task_sets_disjoint() -> dg.AssetCheckResult:
    from ta_platform.preferences.tasks import overlapping_ids

    pool = pd.read_parquet(pref_file("task_pool.parquet"))
    shared = sorted(overlapping_ids(pool.loc[pool["task_set"] == "train", "task_id"],
                                    pool.loc[pool["task_set"] == "eval", "task_id"]))
    return dg.AssetCheckResult(passed=not shared, metadata={"n_shared": len(shared), "shared": shared[:50]})


def _fits() -> list[dict]:
    from ta_platform.common.parquet_io import read_provenance

    return read_provenance(pref_file("thurstonian_utilities.parquet"))["fits"]


@dg.asset_check(asset=thurstonian_utilities, blocking=True, description="Every fit converged.")
def fits_converged() -> dg.AssetCheckResult:
    fits = _fits()
    failed = [f["task_set"] for f in fits if not f["converged"]]
    return dg.AssetCheckResult(passed=not failed, metadata={"not_converged": failed})


@dg.asset_check(asset=thurstonian_utilities, blocking=True, description="sigma positive and finite, mu finite.")
def utilities_finite() -> dg.AssetCheckResult:
    utilities = pd.read_parquet(pref_file("thurstonian_utilities.parquet"))
    bad = utilities[~(np.isfinite(utilities["mu"]) & np.isfinite(utilities["sigma"]) & (utilities["sigma"] > 0))]
    return dg.AssetCheckResult(passed=bad.empty, metadata={"n_bad": len(bad), "tasks": bad["task_id"].head(50).tolist()})


@dg.asset_check(asset=thurstonian_utilities, blocking=True,
                description="Held-out pairwise accuracy above chance (0.55) for every task set.")
def heldout_accuracy_above_chance() -> dg.AssetCheckResult:
    fits = _fits()
    accuracy = {f["task_set"]: f["heldout_accuracy"] for f in fits}
    return dg.AssetCheckResult(passed=all(a > 0.55 for a in accuracy.values()), metadata={"heldout_accuracy": accuracy})
