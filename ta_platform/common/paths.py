"""Where the platform writes: one storage root, overridable for tests and other datasets.

``TA_STORAGE`` (absolute or relative to the working directory) overrides the default
``<repo>/storage``. Every artifact lives under this root so a test can point the whole platform at
a temporary folder. It may also be a URL: ``file:///path`` is that folder; any other fsspec URL
(``s3://bucket/prefix``, ``memory://x``) is the artifact store, and the root here is its local mirror
(``ta_platform/common/remote_store.py``: writes are uploaded, these helpers pull what is missing).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def storage_root() -> Path:
    """The local storage folder: TA_STORAGE's path (or ``file://`` URL), a remote URL's mirror, or <repo>/storage."""
    from ta_platform.common import remote_store

    configured = remote_store.storage_setting()
    if not configured:
        root = REPO_ROOT / "storage"
    elif remote_store.is_remote(configured):
        root = remote_store.mirror_root(configured)
    else:
        root = remote_store.local_path_of(configured).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def storage_dir(*parts: str) -> Path:
    """A folder under the storage root, created (with a remote store: what it holds there, pulled)."""
    from ta_platform.common import remote_store

    path = storage_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    remote_store.pull(path)
    return path


def storage_path(*parts: str) -> Path:
    """A path under the storage root; parent folders are created (with a remote store: the file, pulled)."""
    from ta_platform.common import remote_store

    path = storage_root().joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    remote_store.pull(path)
    return path
