"""The needle token-probe study (seed 003): dataset, token labels, token activations, probes, summary.

Plugged in through ``STUDY`` (listed in ``defs/studies.py``): ``ta-platform materialize --study needle``
runs its four stages and the release gate; the main job runs them after the thought-anchor stages.
"""

import dagster as dg

from ta_platform.defs.needle import assets, checks
from ta_platform.defs.needle.settings import NeedleSettings
from ta_platform.defs.stages import Stage, StudyWiring, all_partitions, seed_range

needle_data_job = dg.define_asset_job(
    "needle_data_job", selection=dg.AssetSelection.assets(assets.needle_dataset, assets.needle_token_labels),
    description="Needle dataset and token labels.")
needle_activations_job = dg.define_asset_job(
    "needle_activations_job", selection=dg.AssetSelection.assets(assets.needle_token_activations),
    description="Needle token activations, every model-layer partition (one pass per model).")
needle_probes_job = dg.define_asset_job(
    "needle_probes_job", selection=dg.AssetSelection.assets(assets.needle_probes),
    description="Needle probes for a seed range in one run.")
needle_summary_job = dg.define_asset_job(
    "needle_summary_job", selection=dg.AssetSelection.assets(assets.needle_summary),
    description="The needle summary (AUROC by layer, intervals, PNG).")

STUDY = StudyWiring(
    name="needle",
    asset_modules=(assets,),
    check_modules=(checks,),
    jobs=(needle_data_job, needle_activations_job, needle_probes_job, needle_summary_job),
    stages=(
        Stage("needle_data", "needle_data_job"),
        Stage("needle_activations", "needle_activations_job", partition_keys=all_partitions),
        Stage("needle_probes", "needle_probes_job", partition_keys=seed_range(assets.DEFAULT_SEEDS)),
        Stage("needle_summary", "needle_summary_job"),
    ),
    resources={"needle_settings": NeedleSettings()},
    description="Needle token probes: a token-level probe and the document monitor built on it.",
)
