"""sentence_activations: mean-pooled sentence embeddings per model x layer (thin wrapper)."""

import dagster as dg
import pandas as pd

from ta_platform.common.faults import FaultRecord
from ta_platform.common.hashing import stable_json_hash
from ta_platform.defs.compute import GPU_POOL, ComputeResource
from ta_platform.defs.k8s import GPU_OP_TAGS
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.defs.shared import activation_partitions, activations_root, requested_layers
from ta_platform.store import artifacts

GROUP = "activations"

@dg.asset(group_name=GROUP, partitions_def=activation_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          pool=GPU_POOL, deps=["sentence_spans", "sentence_labels"], kinds={"pytorch", "numpy"}, op_tags=GPU_OP_TAGS)
def sentence_activations(context: dg.AssetExecutionContext, compute: ComputeResource,
                         metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Sentence embeddings (mean pooling over each sentence's token span; last-token optional) for
    every requested layer of a model from ONE forward pass that stops after the deepest layer.
    Partitions whose provenance fingerprint is current are not recomputed."""
    from ta_platform.studies.sentence_extraction import extract_stale_layers, sentence_trace_inputs

    snapshot = pd.read_parquet(artifacts.thought_anchor_file(artifacts.SNAPSHOT))
    char_spans = pd.read_parquet(artifacts.thought_anchor_file(artifacts.CHAR_SPANS))
    registry = compute.registry()
    fingerprints, faults, reused, computed, cached = {}, [], [], 0, 0
    for model_key, layers in requested_layers(context.partition_keys).items():
        spec = registry[model_key]
        unknown = sorted(set(layers) - set(range(spec.num_layers)))
        if unknown:
            raise ValueError(f"model {model_key!r} has {spec.num_layers} layers; requested layer(s) {unknown} do not exist")
        traces = sentence_trace_inputs(snapshot, char_spans, spec.trace_models, spec.max_problems)
        context.log.info(f"{model_key}: {len(traces)} traces of {', '.join(spec.trace_models)}, layers {layers}, "
                         f"device {compute.resolved_device()}")
        with compute.loaded(spec) as loaded:  # the previous model is released before this one loads
            outcome = extract_stale_layers(loaded, traces, layers, activations_root(), pooling=compute.pooling,
                                           token_budget=compute.token_budget_for(loaded), log=context.log.info)
        computed += outcome.traces_computed
        cached += outcome.traces_reused
        fingerprints.update({f"{model_key}/{k}": v for k, v in outcome.fingerprints.items()})
        reused += [f"{model_key}/{k}" for k in outcome.reused_layers]
        if outcome.summary is not None:
            model_faults = [FaultRecord(f"extract:{model_key}", f.item, f.path, f.kind, f.problem)
                            for f in outcome.summary.failures]
            metadata_store.record_faults(f"extract:{model_key}", model_faults)
            faults += model_faults
    # The data version is the partitions' provenance fingerprints: the UI marks probes and everything
    # downstream unsynced when an input, the model or the extraction code changed them.
    return dg.MaterializeResult(data_version=dg.DataVersion(stable_json_hash(fingerprints)),
                                metadata={"fingerprints": fingerprints, "reused_partitions": reused,
                                          "traces_computed": computed, "traces_from_cache": cached,
                                          "n_skipped_traces": len(faults), "pooling": compute.pooling})
