"""The artifact store behind an fsspec URL (``TA_STORAGE=s3://bucket/prefix``, ``memory://x``, ...).

Why a local mirror rather than fsspec paths everywhere: the platform's readers take local paths
(pandas, numpy, DuckDB, torch all read files), and model weights and the HF cache must stay on local
disk anyway. So with a remote URL, ``storage_root()`` is a local folder (``TA_STORAGE_CACHE``, else
``~/.cache/ta-platform/mirror/<hash of the URL>``) and this module keeps it and the remote in step:

- every atomic write (``common.atomic``, the metadata store's slices) is uploaded once committed
  locally, itself atomically: to a temporary key then renamed where the filesystem can rename
  (local, memory), or as one PUT on object stores (an object appears whole or not at all);
- ``storage_path`` / ``storage_dir`` pull what the remote has and the mirror lacks (read-through), so
  a fresh process or pod sees what others wrote.

A plain path or a ``file://`` URL has no remote: the local folder is the store.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

RENAMING_PROTOCOLS = {"file", "local", "memory"}


def storage_setting() -> str | None:
    return os.environ.get("TA_STORAGE") or None


def is_remote(setting: str | None) -> bool:
    if not setting or "://" not in setting:
        return False
    return urlparse(setting).scheme not in ("", "file")


def local_path_of(setting: str) -> Path:
    """The local folder of a plain path or a ``file://`` URL."""
    if setting.startswith("file://"):
        parsed = urlparse(setting)
        return Path(parsed.netloc + parsed.path if parsed.netloc not in ("", "localhost") else parsed.path)
    return Path(setting)


def mirror_root(url: str) -> Path:
    configured = os.environ.get("TA_STORAGE_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "ta-platform" / "mirror" / hashlib.sha256(url.encode()).hexdigest()[:16]


@lru_cache(maxsize=8)
def _filesystem(url: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def remote() -> tuple[object, str, Path] | None:
    """(filesystem, remote root, local mirror) when TA_STORAGE is a remote URL, else None."""
    setting = storage_setting()
    if not is_remote(setting):
        return None
    fs, root = _filesystem(setting)
    return fs, root, mirror_root(setting)


def _key(path: Path, root: str, mirror: Path) -> str | None:
    try:
        relative = Path(os.path.abspath(path)).relative_to(mirror)
    except ValueError:
        return None  # not under the storage root (a temp file, the HF cache, ...)
    return f"{root}/{relative.as_posix()}"


def upload(path: str | os.PathLike[str]) -> None:
    """Publish a committed local file of the mirror to the remote, atomically. No-op without a remote."""
    found = remote()
    if found is None:
        return
    fs, root, mirror = found
    key = _key(Path(path), root, mirror)
    if key is None or Path(path).name.startswith(".") and Path(path).suffix == ".tmp":
        return
    parent = key.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if fs.protocol in RENAMING_PROTOCOLS or (isinstance(fs.protocol, tuple) and set(fs.protocol) & RENAMING_PROTOCOLS):
        tmp = f"{parent}/.{uuid.uuid4().hex}.upload"
        fs.put_file(str(path), tmp)
        fs.mv(tmp, key)
    else:
        fs.put_file(str(path), key)  # one object PUT: readers see the old object or the new one


def delete(path: str | os.PathLike[str]) -> None:
    """Remove a mirror file's remote copy (superseded metadata slices). No-op without a remote."""
    found = remote()
    if found is None:
        return
    fs, root, mirror = found
    key = _key(Path(path), root, mirror)
    if key is not None and fs.exists(key):
        fs.rm_file(key)


def pull(path: str | os.PathLike[str]) -> None:
    """Fetch into the mirror what the remote has under ``path`` (a file or a folder) and the mirror lacks."""
    found = remote()
    if found is None:
        return
    fs, root, mirror = found
    key = _key(Path(path), root, mirror)
    if key is None:
        return
    if fs.isfile(key):
        keys = [key]
    elif fs.isdir(key):
        keys = [k for k in fs.find(key) if not k.rsplit("/", 1)[-1].startswith(".")]
    else:
        return
    for remote_key in keys:
        local = mirror / remote_key[len(root):].lstrip("/")
        if local.exists():
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.parent / f".{local.name}.{uuid.uuid4().hex}.pull"
        fs.get_file(remote_key, str(tmp))
        os.replace(tmp, local)
