"""probes (seed partitions) and probe_tripwires. Thin: the work is in ta_platform.studies."""

import dagster as dg
import pandas as pd

from ta_platform.common.hashing import stable_json_hash
from ta_platform.common.parquet_io import read_provenance
from ta_platform.common.paths import storage_dir
from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.probes.settings import ProbeSettings
from ta_platform.defs.resources import MetadataStoreResource, RolloutsResource, StudySettings
from ta_platform.defs.shared import activations_root
from ta_platform.store import artifacts
from ta_platform.studies.activation_slices import iter_probe_slices

GROUP = "probes"
# The main job runs three seeds (problem-level splits and initialisations); backfill more from the UI or with
# `--seeds A...B` (partitions 0-19 exist).
DEFAULT_SEEDS = [str(s) for s in range(3)]
seed_partitions = dg.StaticPartitionsDefinition([str(s) for s in range(20)])
ALL_ACTIVATIONS = dg.AssetDep("sentence_activations", partition_mapping=dg.AllPartitionMapping())
ALL_PROBES = dg.AssetDep("probes", partition_mapping=dg.AllPartitionMapping())


def probes_dir():
    """``<storage>/probes``: one ``seed_<s>/`` folder per seed (predictions, selection, split, weights)."""
    return storage_dir("probes")


def slices(compute: ComputeResource):
    labels = pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS))
    trace_model_of = {key: spec.trace_models for key, spec in compute.registry().items()}
    return iter_probe_slices(labels, activations_root(), trace_model_of)


@dg.asset(group_name=GROUP, partitions_def=seed_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          deps=["sentence_labels", ALL_ACTIVATIONS], kinds={"scikitlearn", "duckdb"})
def probes(context: dg.AssetExecutionContext, probe_settings: ProbeSettings, compute: ComputeResource,
           metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Position and text baselines beside the linear and activations+position probes (MLP on request)
    for every model, layer and setting; the seed picks the problem split (or folds) and the
    initialisation, one split per seed for the whole dataset. A seed range runs in one run, and its
    seeds share each read of a slice (their linear probes are heads of one engine fit)."""
    from ta_platform.studies.anchor_probes import run_seeds

    config = probe_settings.probe_config()
    labels_file = artifacts.thought_anchor_file(artifacts.LABELS)
    labels_provenance = read_provenance(labels_file)
    problem_ids = pd.read_parquet(labels_file, columns=["problem_id"])["problem_id"].astype(str)
    store = metadata_store.store()
    seeds = [int(key) for key in context.partition_keys]
    results = run_seeds(seeds, slices(compute), config, probes_dir(), labels_provenance, problem_ids, context.log.info)
    provenances = {}
    for seed, (metrics, provenance) in results.items():
        store.replace_slice("probe_metrics", metrics, {"seed": seed})
        provenances[str(seed)] = {k: v for k, v in provenance.items() if k not in ("code_version", "files")}
    version = stable_json_hash(provenances)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={"seeds": list(context.partition_keys), "probe_config": config.as_dict(),
                  "config_hash": next(iter(provenances.values()))["config_hash"],
                  "scheme": next(iter(provenances.values()))["scheme"], "provenance_hash": version})


@dg.asset(group_name=GROUP, deps=["sentence_labels", "sentence_spans", ALL_ACTIVATIONS], kinds={"numpy", "duckdb"})
def probe_tripwires(context: dg.AssetExecutionContext, probe_settings: ProbeSettings, compute: ComputeResource,
                    metadata_store: MetadataStoreResource, rollouts: RolloutsResource,
                    settings: StudySettings) -> dg.MaterializeResult:
    """Row alignment, trace rank, permutation null (keeping position), planted signal on every slice,
    and labels recomputed from the raw data; once per dataset and config (not per seed: a tripwire
    must not depend on luck)."""
    from ta_platform.anchors.labels import build_label_table
    from ta_platform.studies.anchor_probes import (
        expected_text_sha1,
        labels_consistent_row,
        run_slice_tripwires,
    )

    snapshot = pd.read_parquet(artifacts.thought_anchor_file(artifacts.SNAPSHOT))
    spans = pd.read_parquet(artifacts.thought_anchor_file(artifacts.CHAR_SPANS))
    results = run_slice_tripwires(slices(compute), probe_settings.probe_config(), probe_settings.tripwire_seed,
                                  context.log.info, expected_sha1=expected_text_sha1(snapshot, spans))
    _, traces, _ = rollouts.load()  # the raw chunks_labeled.json importances, read again
    recomputed = build_label_table(traces, settings.label_config(), {t.problem_id: "all" for t in traces})
    stored = pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS))
    results = pd.concat([results, pd.DataFrame([labels_consistent_row(stored, recomputed)])], ignore_index=True)
    metadata_store.store().replace_slice("tripwire_results", results)
    failed = results[~results["passed"]]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(stable_json_hash(results.drop(columns=["metrics"]).to_dict("records"))),
        metadata={
            "n_results": len(results), "n_failed": len(failed),
            "failed": [f"{r.tripwire} {r.model_key}/{r.layer_key}/{r.setting}: {r.reason_code}"
                       for r in failed.itertuples()],
        })
