"""Run configuration of one extraction, resolved against the model registry (torch-free).

Why separate: the Dagster code location builds its partitions and config schema from this without
loading a model; ``resolve()`` turns layer references (fractions, indices, ``"L31"``) into indices
and fails early, with the registry's message, on an unknown model key or layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ta_platform.extraction.pooling_names import POOLINGS
from ta_platform.extraction.registry import LayerRef, ModelSpec, get_model_spec


@dataclass(frozen=True)
class ExtractionConfig:
    """What to extract: model key, layers (``None`` = the registry's), pooling, device, dtype, batching."""

    model_key: str
    layers: tuple[LayerRef, ...] | None = None
    pooling: str = "mean"
    device: str = "auto"
    dtype: str | None = None  # None = the registry's (auto: bf16 on GPU, fp32 on CPU)
    token_budget: int | None = None  # None = measured default for the device
    profile: str | None = None
    registry_path: str | None = None

    def spec(self) -> ModelSpec:
        return get_model_spec(self.model_key, self.profile, self.registry_path)

    def resolve(self) -> tuple[ModelSpec, list[int]]:
        """The registry spec and the absolute layer indices; raises on unknown key, layer or pooling."""
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r} (use one of {POOLINGS})")
        spec = self.spec()
        return spec, spec.layer_indices(self.layers)
