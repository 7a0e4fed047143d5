"""Activation checks, evaluated on every stored partition of the registry's models.

Rows equal the aligned sentences, all finite, no constant column, no two different sentences with
one embedding, norms in a sane band, and provenance matching the current config, inputs and
extraction code (the fingerprint's own fields: labels and the git commit are not among them). The
spot check recomputes a sample inside the GPU pool, through the one-model-at-a-time loader.
"""

import functools
from collections.abc import Callable

import dagster as dg
import pandas as pd

from ta_platform.defs.activations.assets import sentence_activations
from ta_platform.defs.compute import GPU_POOL, ComputeResource
from ta_platform.defs.shared import activations_root
from ta_platform.extraction import checks as extraction_checks
from ta_platform.store import artifacts
from ta_platform.studies.activation_slices import activation_partitions

PartitionCheck = Callable[[object, pd.DataFrame, pd.DataFrame, dict], tuple[bool, dict]]


def _expected_rows(labels: pd.DataFrame, spans: pd.DataFrame, spec, manifest: dict) -> pd.DataFrame:
    from ta_platform.studies.sentence_extraction import within_problem_limit

    skipped = {f["item"] for f in manifest.get("failures", [])}
    keys = spans.merge(labels[["trace_key", "chunk_idx", "model", "problem_id"]], on=["trace_key", "chunk_idx"])
    keys = keys[keys["model"].isin(list(spec.trace_models))]
    # the problem limit first, as the extraction applied it: a skipped trace never lets a later problem in
    keys = keys[within_problem_limit(keys["problem_id"], spec.max_problems) & ~keys["trace_key"].isin(skipped)]
    return keys.sort_values(["trace_key", "chunk_idx"])[["trace_key", "chunk_idx"]]


def _current_fields(spec, compute: ComputeResource, ctx: dict) -> dict:
    """What the current registry, config, span table and extraction code say a partition must record."""
    return {"model_id": spec.model_id, "revision": spec.revision, "pooling": compute.pooling,
            "code_hash": ctx["code_hash"](), "inputs_hash": ctx["inputs_hash"](spec.trace_models, spec.max_problems)}


def _input_hashers(spans: pd.DataFrame) -> dict:
    """Memoised per check evaluation: the extraction-code hash and each trace-folder set's inputs hash."""

    @functools.cache
    def inputs_hash(trace_models: tuple[str, ...], max_problems: int | None) -> str:
        from ta_platform.studies.sentence_extraction import sentence_trace_inputs, traces_inputs_hash

        snapshot = pd.read_parquet(artifacts.thought_anchor_file(artifacts.SNAPSHOT))
        return traces_inputs_hash(sentence_trace_inputs(snapshot, spans, trace_models, max_problems))

    @functools.cache
    def code_hash() -> str:
        from ta_platform.extraction.provenance import extraction_code_hash

        return extraction_code_hash()

    return {"inputs_hash": inputs_hash, "code_hash": code_hash}


def _partition_check(name: str, description: str, evaluate: PartitionCheck) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=sentence_activations, name=name, description=description, blocking=True)
    def _check(compute: ComputeResource) -> dg.AssetCheckResult:
        from ta_platform.extraction.store import PartitionError, load_partition

        registry = compute.registry()
        labels = pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS))
        spans = pd.read_parquet(artifacts.thought_anchor_file(artifacts.CHAR_SPANS))
        failing, checked, hashers = {}, 0, _input_hashers(spans)
        for model_key, layer_key, folder in activation_partitions(activations_root()):
            if model_key not in registry:
                continue
            try:
                # The Partition itself, not .embeddings: the checks stream it block by block (a paper-scale
                # layer is larger than memory), and its index and manifest are read without the rows.
                partition = load_partition(folder)
                embeddings, index, manifest = partition, partition.index, partition.manifest
            except PartitionError as error:
                failing[f"{model_key}/{layer_key}"] = {"error": str(error)}
                continue
            context = {"spec": registry[model_key], "compute": compute, "labels": labels, "spans": spans, **hashers}
            passed, details = evaluate(embeddings, index, manifest, context)
            checked += 1
            if not passed:
                failing[f"{model_key}/{layer_key}"] = details
        if not checked and not failing:
            return dg.AssetCheckResult(passed=False, metadata={"reason_code": "no_partitions"})
        return dg.AssetCheckResult(passed=not failing, metadata={
            "n_partitions": checked, "failing_partitions": sorted(failing),
            "details": {k: str(v)[:800] for k, v in failing.items()}})

    return _check


def _rows(embeddings, index, manifest, ctx):
    return extraction_checks.check_rows_match_keys(
        index, _expected_rows(ctx["labels"], ctx["spans"], ctx["spec"], manifest))


def _distinct(embeddings, index, manifest, ctx):
    text_of = dict(zip(zip(ctx["labels"]["trace_key"], ctx["labels"]["chunk_idx"], strict=True),
                       ctx["labels"]["text"], strict=True))
    texts = [text_of.get((k, int(c)), "") for k, c in zip(index["trace_key"], index["chunk_idx"], strict=True)]
    return extraction_checks.check_distinct_texts_distinct_vectors(embeddings, index, texts)


def _provenance(embeddings, index, manifest, ctx):
    from ta_platform.extraction.provenance import provenance_fingerprint

    current = _current_fields(ctx["spec"], ctx["compute"], ctx)
    differing = {k: {"recorded": manifest.get(k), "current": v} for k, v in current.items() if manifest.get(k) != v}
    try:
        own = provenance_fingerprint(manifest)
    except KeyError as error:  # a manifest of an older layout: its fingerprint cannot be current
        own = f"unverifiable ({error})"
    if own != manifest.get("fingerprint"):
        differing["fingerprint"] = {"recorded": manifest.get("fingerprint"), "from_recorded_fields": own}
    return not differing, {"differing_fields": differing}


activation_checks = [
    _partition_check("rows_match_sentences", "Rows equal the aligned sentences of the model's traces, in order.", _rows),
    _partition_check("activations_finite", "No NaN/inf.",
                     lambda e, i, m, c: extraction_checks.check_all_finite(e, i)),
    _partition_check("no_constant_column", "No feature constant across all rows.",
                     lambda e, i, m, c: extraction_checks.check_no_constant_column(e)),
    _partition_check("distinct_texts_distinct_vectors", "No two different sentences share an embedding.", _distinct),
    _partition_check("norms_in_band", "Row norms within [0.02, 50] x the median norm.",
                     lambda e, i, m, c: extraction_checks.check_norms_in_band(e, i)),
    _partition_check("provenance_current", "Model, revision, pooling, input traces and spans, and the extraction "
                     "code match the current config; the recorded fingerprint matches the recorded fields.",
                     _provenance),
]


@dg.asset_check(asset=sentence_activations, blocking=True, pool=GPU_POOL,
                description="Stored rows equal a fresh extraction of a deterministic sample of traces (catches "
                            "rows whose keys are right but whose vectors belong to another sentence).")
def rows_match_recomputed_sample(compute: ComputeResource) -> dg.AssetCheckResult:
    from ta_platform.extraction.store import load_partition
    from ta_platform.studies.sentence_extraction import sentence_trace_inputs, spot_check_rows

    registry = compute.registry()
    snapshot = pd.read_parquet(artifacts.thought_anchor_file(artifacts.SNAPSHOT))
    spans = pd.read_parquet(artifacts.thought_anchor_file(artifacts.CHAR_SPANS))
    by_model: dict[str, dict[int, tuple]] = {}
    for model_key, layer_key, folder in activation_partitions(activations_root()):
        if model_key in registry:
            partition = load_partition(folder)  # spot_check_rows reads only the sampled rows from its maps
            by_model.setdefault(model_key, {})[int(layer_key[1:])] = (partition, partition.index)
    if not by_model:
        return dg.AssetCheckResult(passed=False, metadata={"reason_code": "no_partitions"})
    results, all_passed = {}, True
    for model_key, stored in sorted(by_model.items()):
        spec = registry[model_key]
        traces = sentence_trace_inputs(snapshot, spans, spec.trace_models, spec.max_problems)
        with compute.loaded(spec) as loaded:  # the previous model is released before this one loads
            passed, details = spot_check_rows(loaded, traces, stored, pooling=compute.pooling)
        all_passed &= passed
        results[model_key] = details
    return dg.AssetCheckResult(passed=all_passed, metadata={
        "reason_code": "ok" if all_passed else "misaligned", "details": str(results)[:3000]})
