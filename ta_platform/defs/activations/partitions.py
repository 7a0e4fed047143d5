"""The model-layer partitions, read from the model registry (config, not code; torch-free).

Why one dimension of ``"<model>/L<index>"`` keys instead of a model x layer grid: models differ in
depth (the paper pairs a 48-layer Qwen-14B with a 32-layer Llama-8B, the embedded profile a 30-layer
SmolLM2 with 8-layer tiny models), and a grid is the cross product of the layer keys of every model, so
it would hold keys naming layers a model does not have (L36 of a 32-layer model) and every model would
extract layers configured only for another. Here each model contributes exactly its own layers, so
every key (and any ``--partition-range``) names a layer its model has.
"""

from __future__ import annotations

import dagster as dg

from ta_platform.extraction.registry import load_registry, parse_partition_key


def model_layer_keys(profile: str | None = None) -> list[str]:
    """Every partition key of the active registry profile, grouped by model, layers in depth order."""
    registry = load_registry(profile)
    return [key for model in sorted(registry) for key in registry[model].partition_keys()]


def model_layer_partitions() -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(model_layer_keys())


def requested_layers(partition_keys) -> dict[str, list[int]]:
    """model key -> sorted layer indices requested in this run (one forward pass per model)."""
    by_model: dict[str, set[int]] = {}
    for key in partition_keys:
        model, layer = parse_partition_key(str(key))
        by_model.setdefault(model, set()).add(layer)
    return {model: sorted(layers) for model, layers in sorted(by_model.items())}
