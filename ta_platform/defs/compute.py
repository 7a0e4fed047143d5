"""The compute resource: device, dtype, token budget and model loading for extraction.

Heavy imports (torch, transformers) happen inside methods, so loading the code location stays fast.
Extraction assets also declare ``pool="gpu"``; with dagster.yaml's default pool limit of 1, one
accelerator runs one extraction at a time across runs.
"""

from __future__ import annotations

import dagster as dg

from ta_platform.common.paths import storage_path

GPU_POOL = "gpu"


class ComputeResource(dg.ConfigurableResource):
    """``device``: auto (CUDA, then Apple MPS, then CPU), cuda, mps or cpu. ``dtype``: auto (bf16 on
    GPU, fp32 on CPU), bfloat16 or float32. ``token_budget``: padded tokens per forward batch
    (-1 = the measured default for the device, 0 = one trace per forward). ``model_profile``: the
    registry profile (empty = TA_MODEL_PROFILE or the file's default)."""

    device: str = "auto"
    dtype: str = "auto"
    token_budget: int = -1
    model_profile: str = ""

    def registry(self):
        from ta_platform.extraction.registry import load_registry

        return load_registry(self.model_profile or None)

    def resolved_device(self) -> str:
        from ta_platform.extraction.device import select_device

        return select_device(self.device)

    def resolved_dtype(self, spec_dtype: str = "auto") -> str:
        from ta_platform.extraction.device import select_dtype_name

        return select_dtype_name(self.resolved_device(), spec_dtype if self.dtype == "auto" else self.dtype)

    def budget(self) -> int | None:
        return None if self.token_budget < 0 else self.token_budget

    def model_folder(self, spec) -> str:
        """Where ``from_pretrained`` loads from: a built tiny model, a local folder or a Hub id."""
        if spec.source == "tiny":
            from ta_platform.extraction.tiny_models import ensure_tiny_model

            return str(ensure_tiny_model(spec.arch, storage_path("models", "x").parent))
        return str(spec.path) if spec.source == "local" else spec.hf_id

    def load_tokenizer(self, spec):
        from transformers import AutoTokenizer

        revision = None if spec.source == "tiny" else spec.revision
        return AutoTokenizer.from_pretrained(self.model_folder(spec), revision=revision, use_fast=True)

    def load_model(self, spec):
        """The base model (no LM head: logits are never computed) in eval mode on the device."""
        from transformers import AutoModel

        from ta_platform.extraction.device import torch_dtype

        revision = None if spec.source == "tiny" else spec.revision
        model = AutoModel.from_pretrained(self.model_folder(spec), revision=revision,
                                          dtype=torch_dtype(self.resolved_dtype(spec.dtype)))
        return model.to(self.resolved_device()).eval()
