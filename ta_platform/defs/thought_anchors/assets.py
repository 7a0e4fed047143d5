"""problem_index -> sentence_labels -> sentence_spans. Thin: the science is in ta_platform.anchors."""


import time

import dagster as dg
import pandas as pd

from ta_platform.anchors.labels import build_label_table
from ta_platform.anchors.spans import char_span_table
from ta_platform.anchors.trace_table import problem_index_rows, trace_snapshot, traces_from_snapshot
from ta_platform.common.hashing import code_version, sha256_file, stable_json_hash
from ta_platform.common.parquet_io import write_parquet
from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.resources import MetadataStoreResource, RolloutsResource, StudySettings
from ta_platform.store import artifacts

GROUP = "thought_anchors"


@dg.asset(group_name=GROUP, kinds={"duckdb", "parquet"})
def problem_index(
    context: dg.AssetExecutionContext, rollouts: RolloutsResource, metadata_store: MetadataStoreResource
) -> dg.MaterializeResult:
    """One row per trace (model, split, problem, correctness, sentence count, think range, hashes).

    Broken traces are skipped and recorded in the ``faults`` table (stage "load"), never fatal.
    """
    started = time.monotonic()
    source, traces, faults = rollouts.load()
    context.log.info(f"loaded {len(traces)} traces from {source.describe()} in {time.monotonic() - started:.1f}s; "
                     f"{len(faults)} skipped")
    for fault in faults:
        context.log.warning(f"skipped {fault.item}: {fault.path}: {fault.problem}")
    index = problem_index_rows(traces)
    write_parquet(trace_snapshot(traces), artifacts.thought_anchor_file(artifacts.SNAPSHOT))
    store = metadata_store.store()
    store.replace_slice("problem_index", index)
    metadata_store.record_faults("load", faults)
    version = stable_json_hash(sorted(index["content_hash"])) if len(index) else "empty"
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "n_traces": len(index), "n_skipped": len(faults), "source": source.describe(),
            "models": sorted(index["model"].unique()) if len(index) else [],
            "n_sentences": int(index["n_sentences"].sum()) if len(index) else 0,
            "code_version": code_version(),
            "preview": dg.MetadataValue.md(index.head(20).to_markdown(index=False)) if len(index) else "",
        },
    )


@dg.asset(group_name=GROUP, deps=[problem_index], kinds={"duckdb", "parquet"})
def sentence_labels(
    context: dg.AssetExecutionContext, settings: StudySettings, metadata_store: MetadataStoreResource
) -> dg.MaterializeResult:
    """One row per sentence: position, function tag, importances, anchor label and problem split."""
    from ta_platform.probing.splits import problem_level_split

    snapshot_file = artifacts.thought_anchor_file(artifacts.SNAPSHOT)
    traces = traces_from_snapshot(pd.read_parquet(snapshot_file))
    problem_ids = sorted({t.problem_id for t in traces})
    splits = problem_level_split(problem_ids, settings.split_seed, tuple(settings.split_fractions))
    label_config = settings.label_config()
    labels = build_label_table(traces, label_config, splits)
    provenance = {"label_config": label_config.as_dict(), "split_seed": settings.split_seed,
                  "split_fractions": list(settings.split_fractions), "snapshot_sha256": sha256_file(snapshot_file),
                  "code_version": code_version()}
    write_parquet(labels, artifacts.thought_anchor_file(artifacts.LABELS), provenance)
    metadata_store.store().replace_slice("sentence_labels", labels.drop(columns=["text"]))
    scored = labels[labels["in_label_set"]]
    context.log.info(f"labelled {len(labels)} sentences of {len(traces)} traces; prevalence {scored['anchor'].mean():.3f}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(stable_json_hash(provenance)),
        metadata={
            "n_sentences": len(labels), "n_anchors": int(labels["anchor"].sum()),
            "prevalence": float(scored["anchor"].mean()) if len(scored) else float("nan"),
            "split_sizes": {k: int(v) for k, v in pd.Series(splits).value_counts().items()},
            "provenance": provenance,
        },
    )


@dg.asset(group_name=GROUP, deps=[problem_index], kinds={"duckdb", "parquet"})
def sentence_spans(
    context: dg.AssetExecutionContext, metadata_store: MetadataStoreResource, compute: ComputeResource
) -> dg.MaterializeResult:
    """Character spans of every sentence in ``full_cot`` and token spans for each registry tokenizer."""
    from ta_platform.anchors.token_table import token_span_table

    snapshot_file = artifacts.thought_anchor_file(artifacts.SNAPSHOT)
    snapshot = pd.read_parquet(snapshot_file)
    char_spans, faults = char_span_table(snapshot)
    for fault in faults:
        context.log.warning(f"unaligned {fault.item}: {fault.problem}")
    tokenizers = {key: compute.load_tokenizer(spec) for key, spec in compute.registry().items()}
    token_spans, token_faults = token_span_table(snapshot, char_spans, tokenizers)
    tokenizer_hashes = {key: stable_json_hash(tok.backend_tokenizer.to_str()) for key, tok in tokenizers.items()}
    provenance = {"snapshot_sha256": sha256_file(snapshot_file), "tokenizers": tokenizer_hashes,
                  "code_version": code_version()}
    write_parquet(char_spans, artifacts.thought_anchor_file(artifacts.CHAR_SPANS), provenance)
    write_parquet(token_spans, artifacts.thought_anchor_file(artifacts.TOKEN_SPANS), provenance)
    store = metadata_store.store()
    store.replace_slice("sentence_spans", char_spans)
    store.replace_slice("token_spans", token_spans)
    metadata_store.record_faults("align", faults)
    metadata_store.record_faults("tokenize", token_faults)
    n_whitespace = int((char_spans["match"] == "whitespace").sum())
    return dg.MaterializeResult(
        data_version=dg.DataVersion(stable_json_hash(provenance)),
        metadata={"n_spans": len(char_spans), "n_whitespace_matches": n_whitespace, "n_unaligned_traces": len(faults),
                  "n_untokenizable": len(token_faults),
                  "n_token_spans": len(token_spans), "tokenizers": sorted(tokenizer_hashes), "provenance": provenance},
    )
