"""The model x layer partitions, read from the model registry (config, not code; torch-free)."""

import dagster as dg

from ta_platform.extraction.registry import load_registry


def model_layer_partitions() -> dg.MultiPartitionsDefinition:
    registry = load_registry()
    layers = sorted({key for spec in registry.values() for key in spec.layer_keys()}, key=lambda k: int(k[1:]))
    return dg.MultiPartitionsDefinition({
        "model": dg.StaticPartitionsDefinition(sorted(registry)),
        "layer": dg.StaticPartitionsDefinition(layers),
    })


def requested_layers(partition_keys) -> dict[str, list[int]]:
    """model key -> sorted layer indices requested in this run (one forward pass per model)."""
    by_model: dict[str, set[int]] = {}
    for key in partition_keys:
        dims = key.keys_by_dimension  # Dagster hands multi-partition keys as MultiPartitionKey
        by_model.setdefault(dims["model"], set()).add(int(dims["layer"][1:]))
    return {model: sorted(layers) for model, layers in sorted(by_model.items())}

