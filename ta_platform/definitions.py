"""The code location: every asset, check, job and resource of ta-platform.

Loaded by ``dagster dev`` (workspace.yaml), ``dagster asset materialize -m ta_platform.definitions``
(the venv's activate script sets it) and ``ta-platform materialize``. Keep imports light: torch and
transformers are imported inside asset bodies only.
"""

from dataclasses import dataclass

import dagster as dg

from ta_platform.defs.activations import assets as activation_assets
from ta_platform.defs.activations import checks as activation_checks
from ta_platform.defs.aggregates.sql_assets import build_sql_assets
from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.gate.checks import build_release_gate, gated_check_keys
from ta_platform.defs.preferences import assets as preference_assets
from ta_platform.defs.preferences import checks as preference_checks
from ta_platform.defs.preferences.assets import PreferenceSettings
from ta_platform.defs.probes import assets as probe_assets
from ta_platform.defs.probes import checks as probe_checks
from ta_platform.defs.probes import summary as probe_summary
from ta_platform.defs.probes.settings import ProbeSettings
from ta_platform.defs.resources import MetadataStoreResource, RolloutsResource, StudySettings
from ta_platform.defs.thought_anchors import assets as thought_anchor_assets
from ta_platform.defs.thought_anchors import checks as thought_anchor_checks

ASSET_MODULES = [thought_anchor_assets, activation_assets, probe_assets, probe_summary, preference_assets]
CHECK_MODULES = [thought_anchor_checks, activation_checks, probe_checks, preference_checks]

all_assets = [*dg.load_assets_from_modules(ASSET_MODULES), *build_sql_assets()]
gated_checks = dg.load_asset_checks_from_modules(CHECK_MODULES)
GATED_CHECK_KEYS = gated_check_keys([*all_assets, *gated_checks])
release_gate = build_release_gate(GATED_CHECK_KEYS)
all_checks = [*gated_checks, release_gate]

partitioned = dg.AssetSelection.assets(activation_assets.sentence_activations, preference_assets.prompt_activations)
upstream = partitioned.upstream() - partitioned
gate = dg.AssetSelection.checks(release_gate)

data_job = dg.define_asset_job("data_job", selection=upstream, description="Unpartitioned inputs.")
activations_job = dg.define_asset_job(
    "activations_job", selection=dg.AssetSelection.assets(activation_assets.sentence_activations),
    description="Sentence activations, every model-layer partition (one pass per model).",
)
prompts_job = dg.define_asset_job(
    "prompts_job", selection=dg.AssetSelection.assets(preference_assets.prompt_activations),
    description="Prompt activations; the main job runs the judge's partition (what the preference study reads).",
)
probes_job = dg.define_asset_job("probes_job", selection=dg.AssetSelection.assets(probe_assets.probes),
                                 description="Probes for a seed range in one run.")
summary_job = dg.define_asset_job(
    "summary_job",
    selection=dg.AssetSelection.all() - upstream - partitioned - dg.AssetSelection.assets(probe_assets.probes) - gate,
    description="Tripwires, SQL aggregates, the scaling summary and the preference study.",
)
gate_job = dg.define_asset_job("gate_job", selection=gate, description="The release gate alone.")


@dataclass(frozen=True)
class Stage:
    """One run of the main job: a job, and for partitioned jobs the partition range it covers."""

    name: str
    job_name: str
    partitioned: bool = False

    def partition_tags(self, job: dg.JobDefinition, seeds: str | None = None) -> dict[str, str]:
        if not self.partitioned:
            return {}
        keys = job.partitions_def.get_partition_keys()
        if seeds and self.name == "probes":
            first, _, last = seeds.partition("...")
            keys = [first, last or first]
        elif self.name == "probes":
            keys = probe_assets.DEFAULT_SEEDS
        elif self.name == "prompts":  # other models' prompt partitions are there to backfill, not needed
            keys = [preference_assets.judge_partition_key(ComputeResource().registry(), PreferenceSettings())]
        return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


MAIN_STAGES = [
    Stage("data", "data_job"),
    Stage("activations", "activations_job", partitioned=True),
    Stage("prompts", "prompts_job", partitioned=True),
    Stage("probes", "probes_job", partitioned=True),
    Stage("summary", "summary_job"),
    Stage("gate", "gate_job"),
]

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[data_job, activations_job, prompts_job, probes_job, summary_job, gate_job],
    resources={
        "metadata_store": MetadataStoreResource(),
        "rollouts": RolloutsResource(),
        "settings": StudySettings(),
        "compute": ComputeResource(),
        "probe_settings": ProbeSettings(),
        "preference_settings": PreferenceSettings(),
    },
)
