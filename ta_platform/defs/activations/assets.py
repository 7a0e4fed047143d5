"""sentence_activations: mean-pooled sentence embeddings per model x layer (thin wrapper)."""

import dagster as dg
import pandas as pd

from ta_platform.anchors import artifacts
from ta_platform.common.faults import FaultRecord
from ta_platform.common.hashing import sha256_file
from ta_platform.common.paths import storage_dir
from ta_platform.defs.activations.partitions import model_layer_partitions, requested_layers
from ta_platform.defs.compute import GPU_POOL, ComputeResource
from ta_platform.defs.resources import MetadataStoreResource

GROUP = "activations"
activation_partitions = model_layer_partitions()


def activations_root():
    return storage_dir("activations")


@dg.asset(group_name=GROUP, partitions_def=activation_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          pool=GPU_POOL, deps=["sentence_spans", "sentence_labels"], kinds={"pytorch", "numpy"})
def sentence_activations(context: dg.AssetExecutionContext, compute: ComputeResource,
                         metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Sentence embeddings (mean pooling over each sentence's token span; last-token optional) for
    every requested layer of a model from ONE forward pass that stops after the deepest layer.
    Partitions whose provenance fingerprint is current are not recomputed."""
    from ta_platform.studies.sentence_extraction import extract_stale_layers, sentence_trace_inputs

    snapshot = pd.read_parquet(artifacts.thought_anchor_file(artifacts.SNAPSHOT))
    spans_file = artifacts.thought_anchor_file(artifacts.CHAR_SPANS)
    char_spans = pd.read_parquet(spans_file)
    input_versions = {"sentence_spans": sha256_file(spans_file),
                      "sentence_labels": sha256_file(artifacts.thought_anchor_file(artifacts.LABELS))}
    registry = compute.registry()
    fingerprints, faults, reused = {}, [], []
    for model_key, layers in requested_layers(context.partition_keys).items():
        spec = registry[model_key]
        unknown = sorted(set(layers) - set(range(spec.num_layers)))
        if unknown:
            raise ValueError(f"model {model_key!r} has {spec.num_layers} layers; requested layer(s) {unknown} do not exist")
        traces = sentence_trace_inputs(snapshot, char_spans, spec.trace_model)
        context.log.info(f"{model_key}: {len(traces)} traces of {spec.trace_model}, layers {layers}, "
                         f"device {compute.resolved_device()}")
        loaded = compute.load(spec)
        outcome = extract_stale_layers(loaded, traces, layers, activations_root(), pooling=compute.pooling,
                                       token_budget=compute.token_budget_for(loaded), input_versions=input_versions,
                                       log=context.log.info)
        fingerprints.update({f"{model_key}/{k}": v for k, v in outcome.fingerprints.items()})
        reused += [f"{model_key}/{k}" for k in outcome.reused_layers]
        if outcome.summary is not None:
            model_faults = [FaultRecord(f"extract:{model_key}", f.item, f.path, f.kind, f.problem)
                            for f in outcome.summary.failures]
            metadata_store.record_faults(f"extract:{model_key}", model_faults)
            faults += model_faults
    return dg.MaterializeResult(metadata={"fingerprints": fingerprints, "reused_partitions": reused,
                                          "n_skipped_traces": len(faults), "pooling": compute.pooling})
