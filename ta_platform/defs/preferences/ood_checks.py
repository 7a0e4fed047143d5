"""OOD study checks: complete results, and behaviour that follows the prompts where the truth is known."""


import dagster as dg
import numpy as np
import pandas as pd

from ta_platform.common.parquet_io import read_provenance
from ta_platform.defs.preferences.ood_assets import ood_behaviour, ood_file, ood_results
from ta_platform.store.artifacts import pref_file


@dg.asset_check(asset=ood_results, blocking=True,
                description="Every experiment of the prompt set has a result for every feature set, n >= 3, r finite.")
def ood_results_complete() -> dg.AssetCheckResult:
    from ta_platform.preferences.ood import incomplete_results

    results = pd.read_parquet(ood_file("ood_results.parquet"))
    experiments = pd.read_parquet(ood_file("prompt_set.parquet"))["experiment"].unique()
    missing = incomplete_results(results, experiments)
    return dg.AssetCheckResult(passed=not missing, metadata={"incomplete": missing[:50], "n_rows": len(results)})


@dg.asset_check(asset=ood_behaviour, blocking=True,
                description="Target tasks move in the prompt's direction (simulated judge: every one, an error; "
                            "real judge: share reported, a WARN when below 0.5).")
def ood_behaviour_follows_prompts() -> dg.AssetCheckResult:
    from ta_platform.preferences.ood import direction_agreement

    behaviour = pd.read_parquet(ood_file("behaviour.parquet"))
    prompts = pd.read_parquet(ood_file("prompt_set.parquet"))
    pool = pd.read_parquet(pref_file("task_pool.parquet"))
    share = direction_agreement(behaviour, prompts, dict(zip(pool["task_id"], pool["topic"], strict=True)))
    simulated = str(read_provenance(ood_file("behaviour.parquet")).get("judge", "")).startswith("simulated")
    passed = bool(np.isfinite(share) and (share == 1.0 if simulated else share >= 0.5))
    return dg.AssetCheckResult(passed=passed,
                               severity=dg.AssetCheckSeverity.ERROR if simulated else dg.AssetCheckSeverity.WARN,
                               metadata={"direction_agreement": share, "simulated": simulated})
