"""Load a registry model (base model only, no LM head) and its fast tokenizer onto a device.

Why here: one place decides device, dtype, where weights live and the weight identity recorded in
provenance, for every source (tiny offline build, local folder, a GGUF inside an installed package,
Hugging Face Hub). ``AutoModel`` loads the decoder stack of a causal-LM checkpoint without the LM
head, so logits can never be computed and the head's memory (0.8 B parameters for Qwen-14B) is never
allocated. Everything the platform downloads or builds stays under ``TA_STORAGE``: tiny builds and
GGUF conversions in ``<storage>/models``, Hub files in ``<storage>/hf_cache``.
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

PathLike = str | os.PathLike[str]


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


@dataclass(frozen=True)
class WeightsLocation:
    """What ``from_pretrained`` receives for a spec, and the weights identity provenance records.

    ``identity`` is None where it is only known after loading (Hub: the resolved commit).
    """

    source: str  # a local folder, or a Hub repo id
    revision: str | None  # only Hub models have one
    cache_dir: str | None  # Hub cache under TA_STORAGE; None for local folders
    identity: str | None


def default_model_cache() -> Path:
    """Where tiny models are built and GGUFs converted: ``$TA_MODEL_CACHE`` or ``<storage>/models``."""
    configured = os.environ.get("TA_MODEL_CACHE")
    return Path(configured).expanduser().resolve() if configured else storage_root() / "models"


def hub_cache_dir() -> Path:
    """The Hugging Face cache for model weights: the platform's one HF cache under ``TA_STORAGE``."""
    from ta_platform.rollouts.sources import hf_cache_dir

    return hf_cache_dir()


def locate_weights(spec: ModelSpec, cache_dir: PathLike | None = None) -> WeightsLocation:
    """Resolve where ``spec``'s weights load from, building or converting them first if needed.

    tiny: built once under the model cache; package_gguf: the GGUF dequantized once into
    ``<model cache>/gguf/<package>/<file stem>`` (identity: the GGUF's sha256); local: the folder
    (identity: hash of its weight files); hub: the repo id at its revision, cached under TA_STORAGE.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_model_cache()
    if spec.source == "tiny":
        folder = ensure_tiny_model(str(spec.arch), cache)
        return WeightsLocation(str(folder), None, None, weights_hash(folder))
    if spec.source == "package_gguf":
        from ta_platform.extraction.gguf_package import ensure_converted, package_version

        installed = package_version(str(spec.package))
        if spec.revision not in ("main", installed):
            raise ValueError(f"{spec.where}: the registry pins {spec.package} {spec.revision}, "
                             f"{installed} is installed")
        conversion = ensure_converted(str(spec.package), str(spec.gguf_file), cache, where=spec.where)
        return WeightsLocation(str(conversion.folder), None, None, conversion.gguf_sha256)
    if spec.source == "local":
        if not spec.path or not Path(spec.path).is_dir():
            raise FileNotFoundError(f"{spec.where}: local folder {spec.path} does not exist")
        return WeightsLocation(str(spec.path), None, None, weights_hash(spec.path))
    return WeightsLocation(str(spec.hf_id), spec.revision, str(hub_cache_dir()), None)


def model_folder(spec: ModelSpec, cache_dir: PathLike | None = None) -> str:
    """What ``from_pretrained`` receives: a local folder (tiny built, GGUF converted on demand) or a Hub id."""
    return locate_weights(spec, cache_dir).source


def _tokenizer_from(spec: ModelSpec, where: WeightsLocation) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(where.source, revision=where.revision, cache_dir=where.cache_dir)
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"model {spec.key!r}: {type(tokenizer).__name__} is not a fast tokenizer (offsets need one)")
    return tokenizer


def load_tokenizer(spec: ModelSpec, cache_dir: PathLike | None = None) -> Any:
    """The model's fast tokenizer (offsets need one); a slow one is refused by name."""
    return _tokenizer_from(spec, locate_weights(spec, cache_dir))


def _check_depth(spec: ModelSpec, config: Any) -> None:
    n_layers = int(config.num_hidden_layers)
    if n_layers != spec.num_layers:
        raise ValueError(f"model {spec.key!r}: registry says num_layers={spec.num_layers}, the checkpoint has {n_layers}")


def load_model(spec: ModelSpec, device: str = "auto", dtype: str | None = None,
               cache_dir: PathLike | None = None) -> LoadedModel:
    """Load ``spec`` for extraction (eval mode, base model, fast tokenizer) and check its depth."""
    from transformers import AutoModel

    device = select_device(device)
    model, tokenizer, dtype_name, where = _load_with(AutoModel, spec, device, dtype, cache_dir)
    identity = where.identity or f"hub:{_hub_commit(where) or spec.revision}"
    max_length = spec.max_length or getattr(model.config, "max_position_embeddings", None)
    return LoadedModel(spec, model, tokenizer, device, dtype_name, identity, tokenizer_hash(tokenizer), max_length)


def _hub_commit(where: WeightsLocation) -> str | None:
    """The commit a Hub revision resolved to: the snapshot folder its config was loaded from.

    Why not ``config._commit_hash``: transformers 5 leaves it unset, and a branch name such as
    ``main`` is no weights identity (it moves).
    """
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(where.source, "config.json", cache_dir=where.cache_dir, revision=where.revision)
    return Path(found).parent.name if isinstance(found, str) else None


def load_causal_lm(spec: ModelSpec, device: str = "auto", dtype: str | None = None,
                   cache_dir: PathLike | None = None) -> tuple[Any, Any]:
    """The full causal LM (with its head) and tokenizer, for generation or judging: same device, dtype,
    revision and cache rules as ``load_model``."""
    from transformers import AutoModelForCausalLM

    model, tokenizer, _, _ = _load_with(AutoModelForCausalLM, spec, select_device(device), dtype, cache_dir)
    return model, tokenizer


def _load_with(auto_class: Any, spec: ModelSpec, device: str, dtype: str | None,
               cache_dir: PathLike | None) -> tuple[Any, Any, str, WeightsLocation]:
    """One loading rule for every model class: registry dtype for the device, pinned revision, the
    cache under TA_STORAGE, eval mode, depth checked against the registry."""
    dtype_name = select_dtype_name(device, dtype or spec.dtype)
    where = locate_weights(spec, cache_dir)
    tokenizer = _tokenizer_from(spec, where)
    model = auto_class.from_pretrained(where.source, revision=where.revision, cache_dir=where.cache_dir,
                                       dtype=torch_dtype(dtype_name)).to(device).eval()
    _check_depth(spec, model.config)
    return model, tokenizer, dtype_name, where


def weights_available_offline(spec: ModelSpec) -> tuple[bool, str]:
    """Whether ``spec``'s weights can be loaded with no network, and what was checked. Never downloads.

    tiny: always (built locally); package_gguf: the package and its GGUF file are installed; local:
    the folder exists; hub: the config and weight files of ``revision`` are in the HF cache under
    TA_STORAGE.
    """
    if spec.source == "tiny":
        return True, "built offline from a config"
    if spec.source == "package_gguf":
        from ta_platform.extraction.gguf_package import GgufPackageError, locate_gguf

        try:
            return True, str(locate_gguf(str(spec.package), str(spec.gguf_file)))
        except GgufPackageError as exc:
            return False, str(exc)
    if spec.source == "local":
        ok = bool(spec.path) and Path(spec.path).is_dir()
        return ok, f"{spec.path} {'exists' if ok else 'does not exist'}"
    return _hub_cached(str(spec.hf_id), spec.revision, hub_cache_dir())


def _hub_cached(repo_id: str, revision: str, cache_dir: Path) -> tuple[bool, str]:
    """Config and every weight file (every shard of a sharded index) of ``repo_id@revision`` in the cache."""
    import json

    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> str | None:
        found = try_to_load_from_cache(repo_id, name, cache_dir=str(cache_dir), revision=revision)
        return found if isinstance(found, str) else None

    if cached("config.json") is None:
        return False, f"{repo_id}@{revision}: config.json not in {cache_dir}"
    for single in ("model.safetensors", "pytorch_model.bin"):
        if cached(single):
            return True, f"{repo_id}@{revision} cached in {cache_dir}"
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = cached(index_name)
        if index:
            shards = sorted(set(json.loads(Path(index).read_text(encoding="utf-8")).get("weight_map", {}).values()))
            missing = [s for s in shards if cached(s) is None]
            if missing:
                return False, f"{repo_id}@{revision}: {len(missing)} of {len(shards)} weight shards not in {cache_dir}"
            return True, f"{repo_id}@{revision} cached in {cache_dir} ({len(shards)} shards)"
    return False, f"{repo_id}@{revision}: no weight files in {cache_dir}"
