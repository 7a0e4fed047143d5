"""Model registry: which models exist, where their weights come from, which layers to extract.

Why a data file: swapping the tiny offline models for the paper's 14B/8B models (or a local
checkpoint) is configuration, not a code change. The registry resolves fractional layers to indices
from ``num_layers`` alone, so the Dagster code location can build its ``<model_key>/<layer_key>``
partitions without loading a model (and without importing torch: this module must stay light).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_REGISTRY = Path(__file__).with_name("models.toml")
PROFILE_ENV = "TA_MODEL_PROFILE"
REGISTRY_ENV = "TA_MODEL_REGISTRY"
SOURCES = ("tiny", "hub", "local")
DTYPES = ("auto", "bfloat16", "float32")
TINY_ARCHS = ("qwen2", "llama")


class UnknownModelError(KeyError):
    """A model key that the active registry profile does not define."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class RegistryError(ValueError):
    """A malformed registry file or entry (the message names the file and the key)."""


LayerRef = int | float | str


def resolve_layer(ref: LayerRef, num_layers: int, *, model_key: str = "model") -> int:
    """Map one layer reference to an index in ``[0, num_layers)``.

    ``int`` -> itself (negative counts from the end); ``float`` in [0, 1] -> fraction of depth,
    ``min(n - 1, int(f * n))`` (Gemma 62 layers: 0.5 -> 31); ``"L31"`` -> 31. Anything else, or an
    index outside the model, raises ``ValueError`` naming the model and its depth.
    """
    if isinstance(ref, bool):
        raise ValueError(f"{model_key}: layer {ref!r} is not a layer reference")
    if isinstance(ref, str):
        text = ref.strip()
        if not (text[:1] in "Ll" and text[1:].isdigit()):
            raise ValueError(f"{model_key}: unknown layer {ref!r} (use an index, a fraction or 'L<index>')")
        ref = int(text[1:])
    if isinstance(ref, float):
        if not 0.0 <= ref <= 1.0:
            raise ValueError(f"{model_key}: layer fraction {ref} is outside [0, 1]")
        return min(num_layers - 1, int(ref * num_layers))
    if isinstance(ref, int):
        index = ref + num_layers if ref < 0 else ref
        if not 0 <= index < num_layers:
            raise ValueError(f"{model_key}: unknown layer {ref} (the model has {num_layers} layers: 0..{num_layers - 1})")
        return index
    raise ValueError(f"{model_key}: layer {ref!r} is not a layer reference")


def resolve_layers(refs: list[LayerRef] | tuple[LayerRef, ...], num_layers: int, *, model_key: str = "model") -> list[int]:
    """Resolve several references; duplicates collapse; the result is sorted ascending."""
    return sorted({resolve_layer(ref, num_layers, model_key=model_key) for ref in refs})


def layer_key(index: int) -> str:
    """Partition key of a layer index (``31 -> "L31"``)."""
    return f"L{index}"


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry. ``model_id`` is what provenance records as the model's identity."""

    key: str
    source: str
    num_layers: int
    layers: tuple[LayerRef, ...]
    trace_model: str
    revision: str = "main"
    dtype: str = "auto"
    hf_id: str | None = None
    path: Path | None = None
    arch: str | None = None
    max_length: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        if self.source == "tiny":
            return f"tiny:{self.arch}"
        if self.source == "hub":
            return str(self.hf_id)
        return str(self.path)

    def layer_indices(self, refs: list[LayerRef] | tuple[LayerRef, ...] | None = None) -> list[int]:
        """The configured layers (or ``refs``) as sorted absolute indices."""
        return resolve_layers(list(self.layers if refs is None else refs), self.num_layers, model_key=self.key)

    def layer_keys(self, refs: list[LayerRef] | tuple[LayerRef, ...] | None = None) -> list[str]:
        return [layer_key(i) for i in self.layer_indices(refs)]


def _parse_spec(key: str, raw: dict[str, Any], origin: Path) -> ModelSpec:
    where = f"{origin}: model {key!r}"
    known = {"source", "num_layers", "layers", "trace_model", "revision", "dtype", "id", "path", "arch", "max_length"}
    source = raw.get("source")
    if source not in SOURCES:
        raise RegistryError(f"{where}: source must be one of {SOURCES}, got {source!r}")
    num_layers = raw.get("num_layers")
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers <= 0:
        raise RegistryError(f"{where}: num_layers must be a positive integer")
    if "trace_model" not in raw:
        raise RegistryError(f"{where}: trace_model is required")
    dtype = raw.get("dtype", "auto")
    if dtype not in DTYPES:
        raise RegistryError(f"{where}: dtype must be one of {DTYPES} (float16 overflows on Qwen2 activations)")
    layers = tuple(raw.get("layers", [0.5]))
    try:
        resolve_layers(list(layers), num_layers, model_key=key)
    except ValueError as exc:
        raise RegistryError(f"{where}: {exc}") from exc
    path = None
    if source == "hub" and not raw.get("id"):
        raise RegistryError(f"{where}: source 'hub' needs an id (a Hugging Face repo id)")
    if source == "local":
        if not raw.get("path"):
            raise RegistryError(f"{where}: source 'local' needs a path")
        path = Path(raw["path"]).expanduser()
        path = path if path.is_absolute() else (origin.parent / path).resolve()
    if source == "tiny" and raw.get("arch") not in TINY_ARCHS:
        raise RegistryError(f"{where}: source 'tiny' needs arch in {TINY_ARCHS}")
    return ModelSpec(
        key=key, source=source, num_layers=num_layers, layers=layers, trace_model=str(raw["trace_model"]),
        revision=str(raw.get("revision", "main")), dtype=dtype, hf_id=raw.get("id"), path=path,
        arch=raw.get("arch"), max_length=raw.get("max_length"),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def registry_file() -> Path:
    """The registry in force: ``$TA_MODEL_REGISTRY`` if set, else the packaged ``models.toml``."""
    configured = os.environ.get(REGISTRY_ENV)
    return Path(configured).expanduser().resolve() if configured else DEFAULT_REGISTRY


def load_registry(profile: str | None = None, path: str | os.PathLike[str] | None = None) -> dict[str, ModelSpec]:
    """Model key -> spec for one profile (``profile`` arg, else ``$TA_MODEL_PROFILE``, else the file's default).

    A user file may either use ``[profiles.<name>.models.<key>]`` tables like the packaged one or
    list ``[models.<key>]`` tables directly (a single implicit profile).
    """
    origin = Path(path).expanduser().resolve() if path is not None else registry_file()
    try:
        data = tomllib.loads(origin.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"{origin}: cannot read model registry: {exc}") from exc
    if "profiles" in data:
        name = profile or os.environ.get(PROFILE_ENV) or data.get("default_profile", "embedded")
        if name not in data["profiles"]:
            raise RegistryError(f"{origin}: unknown profile {name!r} (known: {sorted(data['profiles'])})")
        models = data["profiles"][name].get("models", {})
    else:
        models = data.get("models", {})
    if not models:
        raise RegistryError(f"{origin}: no models defined")
    return {key: _parse_spec(key, raw, origin) for key, raw in models.items()}


def get_model_spec(key: str, profile: str | None = None, path: str | os.PathLike[str] | None = None) -> ModelSpec:
    """The spec of ``key``; ``UnknownModelError`` lists the keys that do exist."""
    registry = load_registry(profile, path)
    if key not in registry:
        raise UnknownModelError(f"unknown model key {key!r} (known in this registry profile: {sorted(registry)})")
    return registry[key]
