"""The code location: every asset, check, job and resource of ta-platform.

Loaded by ``dagster dev`` (workspace.yaml), ``dagster asset materialize -m ta_platform.definitions``
(the venv's activate script sets it) and ``ta-platform materialize``. Keep imports light: torch and
transformers are imported inside asset bodies only.
"""

import dagster as dg

from ta_platform.defs.activations import assets as activation_assets
from ta_platform.defs.activations import checks as activation_checks
from ta_platform.defs.aggregates.sql_assets import build_sql_assets
from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.gate.checks import build_release_gate, gated_check_keys
from ta_platform.defs.k8s import cluster_executor
from ta_platform.defs.preferences import assets as preference_assets
from ta_platform.defs.preferences import checks as preference_checks
from ta_platform.defs.preferences.assets import PreferenceSettings
from ta_platform.defs.probes import assets as probe_assets
from ta_platform.defs.probes import checks as probe_checks
from ta_platform.defs.probes import summary as probe_summary
from ta_platform.defs.probes.settings import ProbeSettings
from ta_platform.defs.resources import MetadataStoreResource, RolloutsResource, StudySettings
from ta_platform.defs.stages import Stage, all_partitions, seed_range
from ta_platform.defs.studies import STUDIES
from ta_platform.defs.thought_anchors import assets as thought_anchor_assets
from ta_platform.defs.thought_anchors import checks as thought_anchor_checks
from ta_platform.defs.thought_anchors import verification as label_verification_defs

CORE_ASSET_MODULES = [thought_anchor_assets, label_verification_defs, activation_assets, probe_assets,
                      preference_assets]
CORE_CHECK_MODULES = [thought_anchor_checks, label_verification_defs, activation_checks, probe_checks,
                      preference_checks]
ASSET_MODULES = [*CORE_ASSET_MODULES, *(module for study in STUDIES for module in study.asset_modules)]
CHECK_MODULES = [*CORE_CHECK_MODULES, *(module for study in STUDIES for module in study.check_modules)]
_CORE = {key for d in [*dg.load_assets_from_modules(CORE_ASSET_MODULES),
                       *dg.load_asset_checks_from_modules(CORE_CHECK_MODULES)]
         for key in [*getattr(d, "keys", ()), *d.check_keys]}


def _own(definitions: list) -> list:
    """A study's own definitions: not the core ones its modules import (e.g. OOD reads preference assets)."""
    return [d for d in definitions if not {*getattr(d, "keys", ()), *d.check_keys} & _CORE]


study_assets = _own(dg.load_assets_from_modules([module for study in STUDIES for module in study.asset_modules]))
core_assets = [*dg.load_assets_from_modules(ASSET_MODULES), *build_sql_assets()]
gated_checks = dg.load_asset_checks_from_modules(CHECK_MODULES)
GATED_CHECK_KEYS = gated_check_keys([*core_assets, *gated_checks])
all_assets = [*core_assets, probe_summary.build_scaling_summary(GATED_CHECK_KEYS)]
release_gate = build_release_gate(GATED_CHECK_KEYS)
all_checks = [*gated_checks, release_gate]

partitioned = dg.AssetSelection.assets(activation_assets.sentence_activations, preference_assets.prompt_activations)
preferences = dg.AssetSelection.groups(preference_assets.GROUP)
# the data stage: what the sentence activations read, and the label verification (it reads the rollouts source)
upstream = ((dg.AssetSelection.assets(activation_assets.sentence_activations).upstream() - partitioned)
            | dg.AssetSelection.assets(label_verification_defs.label_verification))
gate = dg.AssetSelection.checks(release_gate)

data_job = dg.define_asset_job("data_job", selection=upstream, description="Unpartitioned thought-anchor inputs.")
preferences_data_job = dg.define_asset_job("preferences_data_job", selection=dg.AssetSelection.assets(
    preference_assets.task_pool), description="The preference study's task pool (what its prompt activations read).")
preferences_job = dg.define_asset_job(
    "preferences_job", selection=preferences - dg.AssetSelection.assets(preference_assets.task_pool) - partitioned,
    description="The preference study: judge, Thurstonian utilities, utility probes, summary.")
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
tripwires_job = dg.define_asset_job(
    "tripwires_job", selection=dg.AssetSelection.assets(probe_assets.probe_tripwires),
    description="The probe tripwires on every slice and the labels recomputed from the raw data, with their checks.")
summary_job = dg.define_asset_job(
    "summary_job",
    selection=(dg.AssetSelection.all() - upstream - partitioned - dg.AssetSelection.assets(probe_assets.probes) - gate
               - dg.AssetSelection.assets(probe_assets.probe_tripwires)
               - dg.AssetSelection.assets(*study_assets) - preferences),
    description="SQL aggregates and the scaling summary.",
)
gate_job = dg.define_asset_job("gate_job", selection=gate, description="The release gate alone.")


def _prompt_partition(job: dg.JobDefinition, seeds: str | None = None) -> list[str]:
    """Only the judge's prompt partition: other models' prompt partitions are there to backfill."""
    return [preference_assets.judge_partition_key(ComputeResource().registry(), PreferenceSettings())]


ANCHOR_STAGES = [
    Stage("data", "data_job"),
    Stage("activations", "activations_job", partition_keys=all_partitions),
    Stage("probes", "probes_job", partition_keys=seed_range(probe_assets.DEFAULT_SEEDS)),
    Stage("tripwires", "tripwires_job"),
    Stage("summary", "summary_job"),
]
PREFERENCE_STAGES = [
    Stage("preferences-data", "preferences_data_job"),
    Stage("prompts", "prompts_job", partition_keys=_prompt_partition),
    Stage("preferences", "preferences_job"),
]
GATE_STAGE = Stage("gate", "gate_job")
# The main job: thought anchors, preferences, then every plugged-in study, then the release gate.
MAIN_STAGES = [*ANCHOR_STAGES, *PREFERENCE_STAGES, *(stage for study in STUDIES for stage in study.stages), GATE_STAGE]
_STAGES_OF = {"anchors": ANCHOR_STAGES, "preferences": PREFERENCE_STAGES,
              **{study.name: list(study.stages) for study in STUDIES}}
_STAGE_BY_NAME = {stage.name: stage for stages in _STAGES_OF.values() for stage in stages}
# ``--study NAME``: the stages it needs from other studies (``StudyWiring.needs``), then its own; the CLI
# then reports the gate over that study's checks (and those of any study whose every stage it ran).
STUDY_STAGES = {name: stages for name, stages in _STAGES_OF.items()}
STUDY_STAGES.update({study.name: [*(_STAGE_BY_NAME[n] for n in study.needs), *study.stages] for study in STUDIES})


def _check_keys(asset_modules, check_modules, own=True) -> set[dg.AssetCheckKey]:
    definitions = [*dg.load_assets_from_modules(list(asset_modules)), *dg.load_asset_checks_from_modules(list(check_modules))]
    return set(gated_check_keys(_own(definitions) if own else definitions))


_STUDY_KEYS = {"preferences": _check_keys([preference_assets], [preference_checks], own=False),
               **{study.name: _check_keys(study.asset_modules, study.check_modules) for study in STUDIES}}
_STUDY_KEYS["anchors"] = set(GATED_CHECK_KEYS).difference(*_STUDY_KEYS.values())
for _study in STUDIES:  # a study also answers for the checks of every study whose stages it all runs first
    _STUDY_KEYS[_study.name] |= set().union(*(_STUDY_KEYS[name] for name, stages in _STAGES_OF.items()
                                             if name != _study.name and {s.name for s in stages} <= set(_study.needs)))
STUDY_CHECK_KEYS = {name: sorted(keys, key=lambda k: k.to_user_string()) for name, keys in _STUDY_KEYS.items()}

defs = dg.Definitions(
    executor=cluster_executor(),  # a pod per step on Kubernetes (TA_K8S_EXECUTOR=1, docs/deploy.md), else the default
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[data_job, activations_job, preferences_data_job, prompts_job, preferences_job, probes_job, tripwires_job,
          summary_job, gate_job,
          *(job for study in STUDIES for job in study.jobs)],
    resources={
        "metadata_store": MetadataStoreResource(),
        "rollouts": RolloutsResource(),
        "settings": StudySettings(),
        "compute": ComputeResource(),
        "probe_settings": ProbeSettings(),
        "preference_settings": PreferenceSettings(),
        "verification": label_verification_defs.LabelVerificationSettings(),
        **{key: resource for study in STUDIES for key, resource in study.resources.items()},
    },
)
