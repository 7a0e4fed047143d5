"""Load a registry model (base model only, no LM head) and its fast tokenizer onto a device.

Why here: one place decides device, dtype and the weight identity recorded in provenance, for every
source (tiny offline build, local folder, Hugging Face Hub). ``AutoModel`` loads the decoder stack of
a causal-LM checkpoint without the LM head, so logits can never be computed and the head's memory
(0.8 B parameters for Qwen-14B) is never allocated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ta_platform.common.paths import storage_root
from ta_platform.extraction.device import select_device, select_dtype_name, torch_dtype
from ta_platform.extraction.provenance import tokenizer_hash, weights_hash
from ta_platform.extraction.registry import ModelSpec
from ta_platform.extraction.tiny_models import ensure_tiny_model


@dataclass
class LoadedModel:
    """A model ready for extraction plus the identity facts its provenance needs."""

    spec: ModelSpec
    model: Any
    tokenizer: Any
    device: str
    dtype_name: str
    weights_hash: str
    tokenizer_hash: str
    max_length: int | None

    @property
    def device_type(self) -> str:
        return self.device.split(":", 1)[0]


def default_model_cache() -> Path:
    """Where tiny models are built: ``$TA_MODEL_CACHE`` or ``<storage>/models``."""
    configured = os.environ.get("TA_MODEL_CACHE")
    return Path(configured).expanduser().resolve() if configured else storage_root() / "models"


def model_folder(spec: ModelSpec, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """What ``from_pretrained`` receives: a local folder (tiny builds on demand) or a Hub id."""
    if spec.source == "tiny":
        return str(ensure_tiny_model(str(spec.arch), cache_dir or default_model_cache()))
    if spec.source == "local":
        if not spec.path or not Path(spec.path).is_dir():
            raise FileNotFoundError(f"model {spec.key!r}: local folder {spec.path} does not exist")
        return str(spec.path)
    return str(spec.hf_id)


def _revision(spec: ModelSpec) -> str | None:
    """Only Hub models have a revision; local and tiny folders are loaded as they are."""
    return spec.revision if spec.source == "hub" else None


def load_tokenizer(spec: ModelSpec, cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """The model's fast tokenizer (offsets need one); a slow one is refused by name."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder(spec, cache_dir), revision=_revision(spec))
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"model {spec.key!r}: {type(tokenizer).__name__} is not a fast tokenizer (offsets need one)")
    return tokenizer


def load_model(spec: ModelSpec, device: str = "auto", dtype: str | None = None,
               cache_dir: str | os.PathLike[str] | None = None) -> LoadedModel:
    """Load ``spec`` for extraction (eval mode, base model, fast tokenizer) and check its depth."""
    from transformers import AutoModel

    device = select_device(device)
    dtype_name = select_dtype_name(device, dtype or spec.dtype)
    source = model_folder(spec, cache_dir)
    tokenizer = load_tokenizer(spec, cache_dir)
    model = AutoModel.from_pretrained(source, revision=_revision(spec), dtype=torch_dtype(dtype_name)).to(device).eval()
    n_layers = int(model.config.num_hidden_layers)
    if n_layers != spec.num_layers:
        raise ValueError(f"model {spec.key!r}: registry says num_layers={spec.num_layers}, the checkpoint has {n_layers}")
    if spec.source == "hub":
        identity = f"hub:{getattr(model.config, '_commit_hash', None) or spec.revision}"
    else:
        identity = weights_hash(source)
    max_length = spec.max_length or getattr(model.config, "max_position_embeddings", None)
    return LoadedModel(spec, model, tokenizer, device, dtype_name, identity, tokenizer_hash(tokenizer), max_length)
