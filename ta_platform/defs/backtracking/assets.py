"""Backtracking lag study assets (thin: the work is in ta_platform.studies.backtracking and ta_platform.chains).

chains -> token labels -> token activations (model x layer, one pass per model) -> lag probes (by
seed: the seed's split recorded once in ``backtracking_splits``, then every slice) -> tripwires, SQL
metric summary -> summary (across-seed margin intervals by chain problem, layer x lag heatmap per model).
"""

import json

import dagster as dg
import pandas as pd

from ta_platform.common.faults import FaultRecord
from ta_platform.common.parquet_io import write_parquet
from ta_platform.defs.backtracking.settings import BacktrackingSettings
from ta_platform.defs.compute import GPU_POOL, ComputeResource
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.defs.shared import activation_partitions, build_sql_assets, requested_layers
from ta_platform.sql_models import SQL_DIR

GROUP = "backtracking"
DEFAULT_SEEDS = ["0"]  # the main job's seed (its time budget); more chain splits with --seeds 0...4 (0-19 exist)
seed_partitions = dg.StaticPartitionsDefinition([str(s) for s in range(20)])
ALL_ACTIVATIONS = dg.AssetDep("backtracking_token_activations", partition_mapping=dg.AllPartitionMapping())
ALL_SEEDS = dg.AssetDep("backtracking_lag_probes", partition_mapping=dg.AllPartitionMapping())
CHAINS_STAGE = "backtracking:chains"


@dg.asset(group_name=GROUP, kinds={"parquet", "duckdb"})
def backtracking_chains(context: dg.AssetExecutionContext, backtracking_settings: BacktrackingSettings,
                        metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Annotated chains (TA_CHAINS_SOURCE): tags parsed, sections aligned to reasoning_chain; faulty
    records (missing key, unknown label, unbalanced tags, empty, unalignable) recorded in ``faults``."""
    from ta_platform.studies import backtracking as bt

    table, source = bt.load_chains(backtracking_settings.source or None,
                                   embedded_chains=backtracking_settings.embedded_chains)
    metadata_store.record_faults(CHAINS_STAGE, table.faults)
    for fault in table.faults:
        context.log.warning(f"skipped chain {fault.item}: {fault.problem}")
    path = write_parquet(table.chains, bt.backtracking_file(bt.CHAINS_FILE), provenance={
        "source": source, "n_records": table.n_records, "faults": [f.as_row() for f in table.faults]})
    context.log.info(f"{len(table.chains)}/{table.n_records} chains aligned from {source}")
    return dg.MaterializeResult(metadata={
        "source": source, "n_records": table.n_records, "n_chains": len(table.chains),
        "n_faults": len(table.faults), "faults": [f"{f.item}: {f.problem}" for f in table.faults][:50],
        "mean_coverage": float(table.chains["coverage"].mean()) if len(table.chains) else 0.0,
        "n_backtracking_sections": int(table.chains["n_backtracking"].sum()), "path": str(path)})


@dg.asset(group_name=GROUP, deps=[backtracking_chains], kinds={"parquet"})
def backtracking_token_labels(context: dg.AssetExecutionContext, compute: ComputeResource) -> dg.MaterializeResult:
    """``in_backtracking`` and ``backtrack_onset`` per token of every model's tokenizer, from offsets on
    the exact string fed to the model (reasoning_chain, the model's default special tokens)."""
    from ta_platform.extraction.provenance import tokenizer_hash
    from ta_platform.studies import backtracking as bt

    chains = pd.read_parquet(bt.backtracking_file(bt.CHAINS_FILE))
    tokenizers = {key: compute.load_tokenizer(spec) for key, spec in compute.registry().items()}
    tokens = bt.label_tokens(chains, tokenizers)
    write_parquet(tokens, bt.backtracking_file(bt.TOKENS_FILE),
                  provenance={"tokenizers": {k: tokenizer_hash(t) for k, t in tokenizers.items()}})
    stats = tokens.groupby("model").agg(tokens=("token_idx", "size"), prevalence=("in_backtracking", "mean"),
                                        onsets=("backtrack_onset", "sum"))
    context.log.info("\n" + stats.to_string())
    return dg.MaterializeResult(metadata={"by_model": dg.MetadataValue.md(stats.to_markdown()),
                                          "n_rows": len(tokens)})


@dg.asset(group_name=GROUP, partitions_def=activation_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          pool=GPU_POOL, deps=[backtracking_token_labels], kinds={"pytorch", "numpy"})
def backtracking_token_activations(context: dg.AssetExecutionContext, compute: ComputeResource,
                                   metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Residual stream at every labelled token, every requested layer of a model from ONE forward pass
    (the extraction core; stops after the deepest layer; per-chain cache; fingerprinted partitions).
    Stored float32 (the store's format: float16 overflows on Qwen2 activations, bf16 is not a NumPy dtype)."""
    from ta_platform.studies import backtracking as bt
    from ta_platform.studies.sentence_extraction import extract_stale_layers

    chains = pd.read_parquet(bt.backtracking_file(bt.CHAINS_FILE))
    tokens = pd.read_parquet(bt.backtracking_file(bt.TOKENS_FILE))
    registry = compute.registry()
    fingerprints, reused, computed, skipped = {}, [], 0, 0
    for model_key, layers in requested_layers(context.partition_keys).items():
        spec = registry[model_key]
        traces = bt.chain_trace_inputs(chains, bt.tokens_of_model(tokens, model_key))
        context.log.info(f"{model_key}: {len(traces)} chains, layers {layers}")
        with compute.loaded(spec) as loaded:
            outcome = extract_stale_layers(loaded, traces, layers, bt.activations_root(), pooling="mean",
                                           token_budget=compute.token_budget_for(loaded), log=context.log.info)
        computed += outcome.traces_computed
        fingerprints.update({f"{model_key}/{k}": v for k, v in outcome.fingerprints.items()})
        reused += [f"{model_key}/{k}" for k in outcome.reused_layers]
        if outcome.summary is not None:
            faults = [FaultRecord(f"backtracking:extract:{model_key}", f.item, f.path, f.kind, f.problem)
                      for f in outcome.summary.failures]
            metadata_store.record_faults(f"backtracking:extract:{model_key}", faults)
            skipped += len(faults)
    return dg.MaterializeResult(metadata={"fingerprints": fingerprints, "reused_partitions": reused,
                                          "chains_computed": computed, "n_skipped_chains": skipped})


def _all_slices(compute: ComputeResource) -> list[tuple[str, int]]:
    return [(key, layer) for key, spec in sorted(compute.registry().items()) for layer in spec.layer_indices()]


@dg.asset(group_name=GROUP, partitions_def=seed_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          deps=[backtracking_token_labels, ALL_ACTIVATIONS], kinds={"scikitlearn", "duckdb"})
def backtracking_lag_probes(context: dg.AssetExecutionContext, backtracking_settings: BacktrackingSettings,
                            compute: ComputeResource, metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """A logistic probe per (model, layer, lag) with its baselines. The seed's ONE split (every chain of the
    chains table, by problem) is recorded in ``backtracking_splits`` first and read back by every slice."""
    from ta_platform.chains.splits import split_from_table
    from ta_platform.studies import backtracking as bt

    config = backtracking_settings.lag_config()
    chains = pd.read_parquet(bt.backtracking_file(bt.CHAINS_FILE))
    tokens = pd.read_parquet(bt.backtracking_file(bt.TOKENS_FILE))
    store = metadata_store.store()
    records = {}
    for key in context.partition_keys:
        seed = int(key)
        store.replace_slice("backtracking_splits", bt.split_table(chains, seed, config), {"seed": seed})
        split = split_from_table(store.read_table("backtracking_splits", {"seed": seed}), seed)
        result = bt.run_seed(split, bt.iter_slices(_all_slices(compute), tokens), config, context.log.info)
        store.replace_slice("backtracking_probe_metrics", bt.metric_table(result.metrics), {"seed": seed})
        store.replace_slice("backtracking_probe_margins", bt.margin_table(result.margins), {"seed": seed})
        bt.write_test_scores(result)
        records[key] = str(bt.write_run_record(seed, result.provenance))
    return dg.MaterializeResult(metadata={"seeds": list(context.partition_keys), "config": config.as_dict(),
                                          "run_records": records})


@dg.asset(group_name=GROUP, deps=[backtracking_token_labels, ALL_ACTIVATIONS], kinds={"scikitlearn", "duckdb"})
def backtracking_tripwires(context: dg.AssetExecutionContext, backtracking_settings: BacktrackingSettings,
                           compute: ComputeResource, metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Permutation null, signal vs null and planted signal on each model's deepest layer at lag 0,
    once per dataset and config (not per seed)."""
    from ta_platform.studies import backtracking as bt

    tokens = pd.read_parquet(bt.backtracking_file(bt.TOKENS_FILE))
    results = bt.run_tripwires(_all_slices(compute), tokens, backtracking_settings.lag_config(),
                               backtracking_settings.tripwire_seed, context.log.info)
    metadata_store.store().replace_slice("backtracking_tripwire_results", results)
    failed = results[~results["passed"]]
    return dg.MaterializeResult(metadata={"n_results": len(results), "n_failed": len(failed),
                                          "failed": [f"{r.tripwire} {r.scope}: {r.detail}" for r in failed.itertuples()]})


SQL_ASSETS = build_sql_assets(SQL_DIR / "backtracking", {
    "backtracking_probe_metrics": ["backtracking_lag_probes"]}, GROUP)


@dg.asset(group_name=GROUP, deps=["backtracking_metric_summary", ALL_SEEDS, backtracking_tripwires],
          kinds={"duckdb", "markdown"})
def backtracking_summary(context: dg.AssetExecutionContext, backtracking_settings: BacktrackingSettings,
                         metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Table ``backtracking_margin_summary`` (seed-averaged AUROC margins over every baseline with intervals
    from resampling chain problems, computed here in Python from every seed's stored test rows), then the
    layer x lag table and heatmap per model (probe, token identity, persistence, position, lag-0 probe),
    in the metadata and under storage/reports/."""
    from ta_platform.studies import backtracking as bt

    store = metadata_store.store()
    margin_summary = bt.margin_summary_table(store.read_table("backtracking_probe_margins"),
                                             backtracking_settings.lag_config())
    store.replace_slice("backtracking_margin_summary", margin_summary)
    reports = bt.write_reports(store.read_table("backtracking_metric_summary"), margin_summary)
    metadata = {"report_path": dg.MetadataValue.path(str(reports.markdown_path))}
    metadata["html_report"] = dg.MetadataValue.path(str(reports.markdown_path.parent / "index.html"))
    from ta_platform.defs import study_headlines  # FLOAT keys for the Plots tab, headline for the CLI table

    metadata.update(study_headlines.backtracking(store.read_table("backtracking_metric_summary"),
                                                 store.read_table("backtracking_margin_summary")))
    for model, report in reports.models.items():
        context.log.info(f"{model}\n{report.markdown}")
        metadata[f"{model}_table"] = dg.MetadataValue.md(report.markdown)
        metadata[f"{model}_heatmap"] = dg.MetadataValue.md(report.png_markdown)
        metadata[f"{model}_heatmap_path"] = dg.MetadataValue.path(str(report.png_path))
        metadata[f"{model}_beats_both_span"] = json.dumps(report.beats_both_span)
        metadata[f"{model}_beats_both_onset"] = json.dumps(report.beats_both_onset)
    return dg.MaterializeResult(metadata=metadata)
