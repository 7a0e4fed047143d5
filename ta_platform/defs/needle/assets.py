"""needle_dataset -> needle_token_labels -> needle_token_activations (model x layer) -> needle_probes (seeds)
-> needle_summary. Thin: the work is in ta_platform.needle and ta_platform.studies.needle."""


import base64

import dagster as dg
import pandas as pd

from ta_platform.common.atomic import atomic_write_bytes, atomic_write_text
from ta_platform.common.faults import FaultRecord
from ta_platform.common.paths import storage_path
from ta_platform.defs.compute import GPU_POOL, ComputeResource
from ta_platform.defs.needle.settings import NeedleSettings
from ta_platform.defs.resources import MetadataStoreResource, RolloutsResource
from ta_platform.defs.shared import activation_partitions, requested_layers

GROUP = "needle"
DEFAULT_SEEDS = ["0", "1", "2"]  # the main job; backfill others with --seeds (negatives stored for label_seeds)
needle_seed_partitions = dg.StaticPartitionsDefinition([str(s) for s in range(20)])
ALL_NEEDLE_ACTIVATIONS = dg.AssetDep("needle_token_activations", partition_mapping=dg.AllPartitionMapping())
ALL_NEEDLE_PROBES = dg.AssetDep("needle_probes", partition_mapping=dg.AllPartitionMapping())


@dg.asset(group_name=GROUP, kinds={"json"})
def needle_dataset(context: dg.AssetExecutionContext, needle_settings: NeedleSettings, rollouts: RolloutsResource,
                   metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Needle documents (JSONL: doc_id, text, needle_spans, has_needle, split), generated from the rollout
    traces or read from the user's file (TA_NEEDLE_SOURCE), validated; bad lines are skipped and recorded."""
    from ta_platform.needle.dataset import dataset_summary
    from ta_platform.studies.needle import build_dataset, user_source

    source = user_source(needle_settings.source)
    path, docs, faults, provenance = build_dataset(needle_settings.dataset_config(), lambda: rollouts.load()[1],
                                                   source)
    metadata_store.record_faults("needle_dataset", faults)
    summary = dataset_summary(docs)
    context.log.info(f"{path}: {summary}; {len(faults)} faulty line(s) skipped")
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path)), "n_faults": len(faults),
                                          "source": provenance["source"], "sha256": provenance["dataset_sha256"],
                                          **{k: v for k, v in summary.items() if k != "families"},
                                          "families": str(summary["families"])})


@dg.asset(group_name=GROUP, deps=[needle_dataset], kinds={"parquet"})
def needle_token_labels(context: dg.AssetExecutionContext, needle_settings: NeedleSettings, compute: ComputeResource,
                        metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Token labels per registry model (its own tokenizer, the exact string fed to it): needle tokens,
    the seeds' sampled negatives, which tokens get activations stored."""
    from ta_platform.studies.needle import build_labels

    counts = {}
    for model_key, spec in sorted(compute.registry().items()):
        path, frame, faults = build_labels(needle_settings.dataset_config(), needle_settings.label_config(),
                                           compute.load_tokenizer(spec), model_key)
        metadata_store.record_faults(f"needle_labels:{model_key}", faults)
        counts[model_key] = {"tokens": len(frame), "needle_tokens": int(frame["is_needle"].sum()),
                             "stored": int(frame["stored"].sum()), "skipped_docs": len(faults)}
        context.log.info(f"{model_key}: {counts[model_key]} -> {path}")
    return dg.MaterializeResult(metadata={"per_model": counts, "label_config": needle_settings.label_config().as_dict()})


@dg.asset(group_name=GROUP, partitions_def=activation_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          pool=GPU_POOL, deps=[needle_token_labels], kinds={"pytorch", "numpy"})
def needle_token_activations(context: dg.AssetExecutionContext, needle_settings: NeedleSettings,
                             compute: ComputeResource, metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Activations of the stored tokens only, every requested layer of a model from one forward pass per
    batch (the shared extraction core and per-trace cache); current partitions are not recomputed."""
    from ta_platform.studies.needle import activations_root, load_dataset, read_labels, token_trace_inputs
    from ta_platform.studies.sentence_extraction import extract_stale_layers

    config = needle_settings.dataset_config()
    docs = load_dataset(config)
    registry = compute.registry()
    fingerprints, computed, cached, skipped = {}, 0, 0, 0
    for model_key, layers in requested_layers(context.partition_keys).items():
        spec = registry[model_key]
        labels, _, _ = read_labels(config, model_key)
        traces = token_trace_inputs(docs, labels)
        context.log.info(f"{model_key}: {len(traces)} documents, {int(labels['stored'].sum())} stored tokens, "
                         f"layers {layers}")
        with compute.loaded(spec) as loaded:  # one model resident at a time
            outcome = extract_stale_layers(loaded, traces, layers, activations_root(), pooling="mean",
                                           token_budget=compute.token_budget_for(loaded), log=context.log.info)
        computed += outcome.traces_computed
        cached += outcome.traces_reused
        fingerprints.update({f"{model_key}/{k}": v for k, v in outcome.fingerprints.items()})
        if outcome.summary is not None:
            faults = [FaultRecord(f"needle_extract:{model_key}", f.item, f.path, f.kind, f.problem)
                      for f in outcome.summary.failures]
            metadata_store.record_faults(f"needle_extract:{model_key}", faults)
            skipped += len(faults)
    return dg.MaterializeResult(metadata={"fingerprints": fingerprints, "documents_computed": computed,
                                          "documents_from_cache": cached, "n_skipped_documents": skipped})


@dg.asset(group_name=GROUP, partitions_def=needle_seed_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          deps=[needle_token_labels, ALL_NEEDLE_ACTIVATIONS], kinds={"scikitlearn", "duckdb"})
def needle_probes(context: dg.AssetExecutionContext, needle_settings: NeedleSettings, compute: ComputeResource,
                  metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Token probe (L2 on validation AUROC), token-identity and position baselines and the document
    monitor, per (model, layer) and seed: weights + metadata JSON under storage/needle/, metrics in
    DuckDB needle_probe_metrics, one run record."""
    from threadpoolctl import threadpool_limits

    from ta_platform.studies.needle import run_seed, stored_slices, write_run_record

    config, probe_config = needle_settings.dataset_config(), needle_settings.probe_config()
    slices = stored_slices(compute.registry())
    if not slices:
        raise ValueError("no needle token activations for the registry's models: materialise needle_token_activations")
    store = metadata_store.store()
    files = []
    with threadpool_limits(limits=needle_settings.blas_threads):
        for key in context.partition_keys:
            seed = int(key)
            frames = []
            for model_key, layer in slices:
                metrics, meta_path = run_seed(seed, model_key, layer, config, probe_config, context.log.info)
                frames.append(metrics)
                files.append(meta_path)
            store.replace_slice("needle_probe_metrics", pd.concat(frames, ignore_index=True), {"seed": seed})
    record = write_run_record(config, probe_config, [int(k) for k in context.partition_keys],
                              [f"{m}/L{layer}" for m, layer in slices], files, context.run_id)
    return dg.MaterializeResult(metadata={"seeds": list(context.partition_keys), "run_record": str(record),
                                          "metadata_files": [str(p) for p in files],
                                          "probe_config": probe_config.as_dict()})


@dg.asset(group_name=GROUP, deps=[ALL_NEEDLE_PROBES], kinds={"duckdb", "markdown"})
def needle_summary(context: dg.AssetExecutionContext, needle_settings: NeedleSettings,
                   metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Per model: test AUROC by layer of the token probe, its baselines, the document monitor and its
    token-identity baseline, and the probe's margins, each with an across-seed interval from resampling
    test problem groups (the seed-averaged AUROC recomputed per draw); DuckDB needle_summary,
    storage/reports/needle_summary.{md,png}."""
    from ta_platform.needle.summary import INTERVAL_NOTE, markdown_table, summarise, summary_png
    from ta_platform.studies.needle import summary_predictions

    store = metadata_store.store()
    metrics = store.read_table("needle_probe_metrics")
    if metrics.empty:
        raise ValueError("needle_probe_metrics is empty: materialise needle_probes first")
    predictions = summary_predictions(needle_settings.dataset_config(), metrics)
    summary = summarise(metrics, predictions, n_resamples=needle_settings.summary_resamples)
    store.replace_slice("needle_summary", summary)
    table = markdown_table(summary)
    png = summary_png(summary)
    atomic_write_text(storage_path("reports", "needle_summary.md"), "# Needle token probes: test AUROC\n\n"
                      f"{INTERVAL_NOTE}; {needle_settings.summary_resamples} draws\n\n" + table + "\n")
    atomic_write_bytes(storage_path("reports", "needle_summary.png"), png)
    context.log.info("\n" + table)
    from ta_platform.defs import study_headlines, summary_metadata  # FLOAT keys (Plots tab), table schema

    return dg.MaterializeResult(metadata={
        **study_headlines.needle(summary), **summary_metadata.duckdb_table_metadata(store, "needle_summary"),
        "table": dg.MetadataValue.md(table),
        "plot": dg.MetadataValue.md(f"![needle summary](data:image/png;base64,{base64.b64encode(png).decode()})"),
        "report_path": dg.MetadataValue.path(str(storage_path("reports", "needle_summary.md"))),
        "html_report": dg.MetadataValue.path(str(storage_path("reports", "index.html"))),
        "seeds": sorted(int(s) for s in metrics["seed"].unique()),
    })
