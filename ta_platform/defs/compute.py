"""The compute resource: device, dtype, token budget and model loading for extraction and judging.

Heavy imports (torch, transformers) happen inside methods, so loading the code location stays fast.
Extraction assets and the spot check declare ``pool="gpu"``; with dagster.yaml's default pool limit
of 1, one accelerator runs one model at a time across runs.

One model resident per process: every model is loaded through ``ComputeResource.loaded(spec)``, a
context manager that refuses to load a second model while one is held, and on exit drops the model
(the ``LoadedModel`` it handed out keeps no reference: its ``model`` becomes a placeholder that
names the released model), runs the garbage collector and empties the CUDA cache. Why: the previous
model otherwise stays resident while the next one loads (14B + 8B in bf16 is ~44 GB at the peak).
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg

GPU_POOL = "gpu"

_RESIDENT: dict[str, Any] = {}  # model key -> LoadedModel held by an open ``loaded`` block (at most one)


class ReleasedModel:
    """Stands in for a model after its ``loaded`` block ended: any use is a clear error, not a reload."""

    def __init__(self, model_key: str):
        self._model_key = model_key

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"model {self._model_key!r} was released when its `compute.loaded(...)` block ended; "
                           "use it inside the block")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__getattr__("__call__")


def resident_models() -> list[str]:
    """Keys of the models held by open ``loaded`` blocks in this process (empty or one)."""
    return list(_RESIDENT)


def free_accelerator_memory() -> None:
    """Collect garbage, then hand cached CUDA blocks back to the driver (when torch and CUDA are present)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


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

    def _dtype(self) -> str | None:
        return None if self.dtype == "auto" else self.dtype

    def load(self, spec):
        """The model ready for extraction (base model, eval mode, fast tokenizer) with its identity.

        Low level: it does not manage residency. Assets and checks use ``loaded(spec)``.
        """
        from ta_platform.extraction.loading import load_model

        return load_model(spec, device=self.device, dtype=self._dtype())

    @contextlib.contextmanager
    def loaded(self, spec, *, lm_head: bool = False) -> Iterator[Any]:
        """Load ``spec`` (the base model for extraction; with ``lm_head`` the causal LM, for judges) on
        this resource's device and dtype, the only model held in this process; release it on exit.

        Raises ``RuntimeError`` naming the held model when another ``loaded`` block is still open.
        """
        if _RESIDENT:
            raise RuntimeError(f"cannot load model {spec.key!r}: model {next(iter(_RESIDENT))!r} is still loaded "
                               "(one model at a time; leave its `compute.loaded(...)` block first)")
        free_accelerator_memory()  # anything a previous holder left for the collector goes before the load
        if lm_head:
            from ta_platform.preferences.judges import load_judge_model

            held = load_judge_model(spec, device=self.device, dtype=self._dtype())
        else:
            held = self.load(spec)
        _RESIDENT[spec.key] = held
        try:
            yield held
        finally:
            _RESIDENT.clear()
            held.model = ReleasedModel(spec.key)
            del held
            free_accelerator_memory()

    def load_tokenizer(self, spec):
        from ta_platform.extraction.loading import load_tokenizer

        return load_tokenizer(spec)

    def token_budget_for(self, loaded) -> int:
        from ta_platform.extraction.batching import default_token_budget

        return default_token_budget(loaded.device_type) if self.token_budget < 0 else self.token_budget
