"""Where the platform writes: one storage root, overridable for tests and other datasets.

``TA_STORAGE`` (absolute or relative to the working directory) overrides the default
``<repo>/storage``. Every artifact lives under this root so a test can point the whole platform at
a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def storage_root() -> Path:
    configured = os.environ.get("TA_STORAGE")
    root = Path(configured).expanduser().resolve() if configured else REPO_ROOT / "storage"
    root.mkdir(parents=True, exist_ok=True)
    return root


def storage_dir(*parts: str) -> Path:
    """A folder under the storage root, created."""
    path = storage_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def storage_path(*parts: str) -> Path:
    """A path under the storage root; parent folders are created."""
    path = storage_root().joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
