"""probes (seed partitions) and probe_tripwires. Thin: the work is in ta_platform.studies."""

import dagster as dg
import pandas as pd

from ta_platform.common.parquet_io import read_provenance
from ta_platform.common.paths import storage_dir
from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.probes.settings import ProbeSettings
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.defs.shared import activations_root
from ta_platform.store import artifacts
from ta_platform.studies.activation_slices import iter_probe_slices

GROUP = "probes"
# The main job runs three seeds (problem-level splits and initialisations); backfill more from the UI or with
# `--seeds A...B` (partitions 0-19 exist).
DEFAULT_SEEDS = [str(s) for s in range(3)]
seed_partitions = dg.StaticPartitionsDefinition([str(s) for s in range(20)])
ALL_ACTIVATIONS = dg.AssetDep("sentence_activations", partition_mapping=dg.AllPartitionMapping())


def _slices(compute: ComputeResource):
    labels = pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS))
    trace_model_of = {key: spec.trace_models for key, spec in compute.registry().items()}
    return iter_probe_slices(labels, activations_root(), trace_model_of)


@dg.asset(group_name=GROUP, partitions_def=seed_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          deps=["sentence_labels", ALL_ACTIVATIONS], kinds={"scikitlearn", "duckdb"})
def probes(context: dg.AssetExecutionContext, probe_settings: ProbeSettings, compute: ComputeResource,
           metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Position, text-only, linear, MLP and activations+position probes for every model, layer and
    setting; the seed picks the problem split and initialisation. A seed range runs in one run."""
    from ta_platform.studies.anchor_probes import run_seed, seed_data_version

    config = probe_settings.probe_config()
    labels_provenance = read_provenance(artifacts.thought_anchor_file(artifacts.LABELS))
    store = metadata_store.store()
    out_dir = storage_dir("probes")
    versions: dict[str, str] = {}
    for key in context.partition_keys:
        seed = int(key)
        metrics, margins, provenance = run_seed(seed, _slices(compute), config, out_dir, labels_provenance,
                                                context.log.info)
        store.replace_slice("probe_metrics", metrics, {"seed": seed})
        store.replace_slice("probe_margins", margins, {"seed": seed})
        versions[key] = seed_data_version(provenance)
    return dg.MaterializeResult(metadata={"seeds": list(context.partition_keys), "probe_config": config.as_dict(),
                                          "provenance_hashes": versions})


@dg.asset(group_name=GROUP, deps=["sentence_labels", ALL_ACTIVATIONS], kinds={"numpy", "duckdb"})
def probe_tripwires(context: dg.AssetExecutionContext, probe_settings: ProbeSettings, compute: ComputeResource,
                    metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Memorisation, permutation null, signal vs null, planted signal and data integrity on every
    slice, once per dataset and config (not per seed: a tripwire must not depend on luck)."""
    from ta_platform.anchors.labels import AnchorLabelConfig
    from ta_platform.studies.anchor_probes import run_slice_tripwires

    labels_file = artifacts.thought_anchor_file(artifacts.LABELS)
    recorded = read_provenance(labels_file).get("label_config")
    if recorded is None:
        raise ValueError(f"{labels_file}: no label provenance (label_config); re-materialise sentence_labels")
    label_config = AnchorLabelConfig(**recorded)
    results = run_slice_tripwires(_slices(compute), probe_settings.probe_config(), probe_settings.tripwire_seed,
                                  context.log.info, labels=pd.read_parquet(labels_file), label_config=label_config)
    metadata_store.store().replace_slice("tripwire_results", results)
    failed = results[~results["passed"]]
    return dg.MaterializeResult(metadata={
        "n_results": len(results), "n_failed": len(failed),
        "failed": [f"{r.tripwire} {r.model_key}/{r.layer_key}/{r.setting}: {r.reason_code}" for r in failed.itertuples()],
    })
