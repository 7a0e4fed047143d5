"""The backtracking lag study (seed 002), plugged into the code location as one ``StudyWiring``.

Stages (``ta-platform materialize --study backtracking``, and the main job after the anchor stages):
data (chains, token labels) -> activations (every model x layer partition, one run) -> probes (seed
range, one run) -> summary (tripwires, SQL summaries, heatmaps). Its checks feed the release gate.
"""

import dagster as dg

from ta_platform.defs.backtracking import assets, checks
from ta_platform.defs.backtracking.settings import BacktrackingSettings
from ta_platform.defs.stages import Stage, StudyWiring, all_partitions, seed_range

_data = dg.AssetSelection.assets(assets.backtracking_chains, assets.backtracking_token_labels)
_summary = dg.AssetSelection.assets(assets.backtracking_tripwires, assets.backtracking_summary, *assets.SQL_ASSETS)

JOBS = (
    dg.define_asset_job("backtracking_data_job", selection=_data, description="Chains and token labels."),
    dg.define_asset_job("backtracking_activations_job",
                        selection=dg.AssetSelection.assets(assets.backtracking_token_activations),
                        description="Token activations, every model-layer partition (one pass per model)."),
    dg.define_asset_job("backtracking_probes_job", selection=dg.AssetSelection.assets(assets.backtracking_lag_probes),
                        description="Lag probes and baselines for a seed range in one run."),
    dg.define_asset_job("backtracking_summary_job", selection=_summary,
                        description="Tripwires, SQL summaries across seeds, layer x lag heatmaps."),
)

STUDY = StudyWiring(
    name="backtracking",
    asset_modules=(assets,),
    check_modules=(checks,),
    jobs=JOBS,
    stages=(
        Stage("backtracking-data", "backtracking_data_job"),
        Stage("backtracking-activations", "backtracking_activations_job", partition_keys=all_partitions),
        Stage("backtracking-probes", "backtracking_probes_job", partition_keys=seed_range(assets.DEFAULT_SEEDS)),
        Stage("backtracking-summary", "backtracking_summary_job"),
    ),
    resources={"backtracking_settings": BacktrackingSettings()},
    description="Can the activations at token t predict a backtrack k tokens ahead? (seed 002)",
)
