"""Atomic file writes: write to a temporary sibling, fsync, then rename over the target.

Why: a run killed mid-write must never leave a half-written artifact that a later run reads as
valid. ``os.replace`` is atomic on POSIX within one filesystem, so readers see the old file or the
new one, never a mixture. With a remote artifact store (an fsspec ``TA_STORAGE``), the committed
file is then uploaded, atomically too (``remote_store.upload``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class NoSpaceError(OSError):
    """The filesystem filled while writing ``target``: nothing was replaced and no temporary file is left."""

    def __init__(self, target: Path):
        super().__init__(errno.ENOSPC, f"no space left on device while writing {target}: the previous version "
                         f"(if any) is intact and no temporary file was left; free space under {target.parent} "
                         "and rerun (finished outputs are reused)")
        self.target = target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp's 0600 would make reports unreadable to the rest of a lab
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise NoSpaceError(target) from error
        raise
    # With a remote artifact store (TA_STORAGE=s3://...), publish the committed file there too, itself
    # atomically (common/remote_store.py); a failed upload raises, so the step fails rather than
    # leaving an artifact only this machine has.
    from ta_platform.common import remote_store

    remote_store.upload(target)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], payload: Any) -> Path:
    """Write JSON with sorted keys so equal payloads give byte-identical files."""
    return atomic_write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
