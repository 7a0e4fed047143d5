"""The compute resource: device, dtype, token budget and model loading for extraction.

Heavy imports (torch, transformers) happen inside methods, so loading the code location stays fast.
Extraction assets also declare ``pool="gpu"``; with dagster.yaml's default pool limit of 1, one
accelerator runs one extraction at a time across runs.
"""

from __future__ import annotations

import dagster as dg

GPU_POOL = "gpu"


class ComputeResource(dg.ConfigurableResource):
    """``device``: auto (CUDA, then Apple MPS, then CPU), cuda, mps or cpu. ``dtype``: auto (bf16 on
    GPU, fp32 on CPU), bfloat16 or float32. ``token_budget``: padded tokens per forward batch
    (-1 = the measured default for the device, 0 = one trace per forward). ``model_profile``: the
    registry profile (empty = TA_MODEL_PROFILE or the file's default). ``pooling``: mean or last."""

    device: str = "auto"
    dtype: str = "auto"
    token_budget: int = -1
    model_profile: str = ""
    pooling: str = "mean"

    def registry(self):
        from ta_platform.extraction.registry import load_registry

        return load_registry(self.model_profile or None)

    def resolved_device(self) -> str:
        from ta_platform.extraction.device import select_device

        return select_device(self.device)

    def load(self, spec):
        """The model ready for extraction (base model, eval mode, fast tokenizer) with its identity."""
        from ta_platform.extraction.loading import load_model

        return load_model(spec, device=self.device, dtype=None if self.dtype == "auto" else self.dtype)

    def load_tokenizer(self, spec):
        from ta_platform.extraction.loading import load_tokenizer

        return load_tokenizer(spec)

    def token_budget_for(self, loaded) -> int:
        from ta_platform.extraction.batching import default_token_budget

        return default_token_budget(loaded.device_type) if self.token_budget < 0 else self.token_budget
