"""Device and compute-dtype choice.

Why: one rule everywhere (CUDA, then Apple MPS, then CPU; bf16 on accelerators, fp32 on CPU) so
the provenance of an artifact says what actually ran. torch is imported inside the functions so
that importing this module (from the Dagster code location) stays cheap.
"""

from __future__ import annotations

from typing import Any

DTYPE_NAMES = ("bfloat16", "float32")


def select_device(preference: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` if available, else ``"mps"``, else ``"cpu"``; anything else is checked and returned."""
    import torch

    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    kind = preference.split(":", 1)[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {preference!r} requested but Apple MPS is not available")
    if kind not in ("cuda", "mps", "cpu"):
        raise ValueError(f"unknown device {preference!r} (use auto, cuda[:N], mps or cpu)")
    return preference


def select_dtype_name(device: str, configured: str = "auto") -> str:
    """The compute dtype name: bf16 on GPU/MPS, fp32 on CPU, unless configured. float16 is refused."""
    if configured in ("float16", "fp16", "half"):
        raise ValueError("float16 overflows on Qwen2-family activations; use bfloat16 or float32")
    if configured == "auto":
        return "float32" if device.split(":", 1)[0] == "cpu" else "bfloat16"
    aliases = {"bf16": "bfloat16", "fp32": "float32"}
    name = aliases.get(configured, configured)
    if name not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {configured!r} (use auto, bfloat16 or float32)")
    return name


def torch_dtype(name: str) -> Any:
    """The ``torch.dtype`` for a dtype name."""
    import torch

    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name]
