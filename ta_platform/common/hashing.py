"""Content hashes and the code version recorded in every artifact's provenance."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_json_hash(payload: Any) -> str:
    """Hash of a JSON-serialisable value that does not depend on dict ordering."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(text.encode("utf-8"))


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the checkout (with ``-dirty``), else a hash of the package sources.

    Why both: installed wheels have no git, but a provenance record must still change whenever
    the code that produced an artifact changes.
    """
    package_root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=package_root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(package_root)],
            cwd=package_root, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"git:{commit[:12]}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        digest = hashlib.sha256()
        for source in sorted(package_root.rglob("*.py")):
            digest.update(source.relative_to(package_root).as_posix().encode())
            digest.update(source.read_bytes())
        return f"src:{digest.hexdigest()[:12]}"
