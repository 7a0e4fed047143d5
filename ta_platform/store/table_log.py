"""Metadata tables as immutable Parquet files: any number of writers, no lock, readers never wait.

Why: one DuckDB file admits one writing process, and while it writes no other process may even read
it, so the store used to serialise every access behind a file lock on one machine. Here each write
of a slice is its own Parquet file, written to a temporary name and renamed (atomic), never changed
afterwards; DuckDB is only the query layer, a view per table over the files that are current.

Layout, under the store's root (``<storage>/metadata/`` for the default store)::

    <table>/<slice id>/where.json                             the slice's key, e.g. {"stage": "load"}; null = whole table
    <table>/<slice id>/<commit ns>-<writer>.<sha256>.parquet  one write of that slice (rows in the declared types)

The slice id is a hash of the key, so two writers of one slice share a folder and ``where.json`` is
the same bytes whoever writes it. The state of a table is the writes folded in commit order, the
semantics of "delete the rows matching the key, insert the frame": within a slice the latest write
wins; a later write of another slice hides the rows of an earlier file that match its key; a later
whole-table write hides everything before it. The commit time is taken just before the rename, so
files appear in (nearly) commit order, and two writers of one slice at once end as one of them.
Writers delete files that a later write has fully superseded; a reader that listed such a file just
before retries (``MetadataStore`` does), so readers never block and never see half a write.

Integrity: the sha256 of each file is part of its name, so a file truncated or bit-flipped after its
commit (a disk error, a bad copy, a sync tool) is detected before DuckDB reads it; ``verify`` raises
``CorruptSliceError`` naming the file, its table and slice, and how to recover, and the file is never
used. Parquet's own footer does not catch this: a flipped bit in a data page reads as another value.
Files written before this naming (no hash) are checked for their Parquet end marker only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ta_platform.common import remote_store

WHERE_FILE = "where.json"
_HASHED_NAME = re.compile(r"^\d+-[0-9a-z]+\.(?P<sha256>[0-9a-f]{64})\.parquet$")
PARQUET_MAGIC = b"PAR1"


class CorruptSliceError(RuntimeError):
    """A committed slice file whose bytes are not what was written: names it and how to recover."""
GC_GRACE_S = 60.0  # how long a superseded file stays readable (see collect_garbage)
WRITER_ID = uuid.uuid4().hex[:12]


def plain(value: object) -> object:
    """A slice-key value as JSON can hold it (numpy scalars become Python ones)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def slice_key(where: Mapping[str, object] | None) -> dict[str, object] | None:
    return None if not where else {str(col): plain(val) for col, val in where.items()}


def slice_id(where: Mapping[str, object] | None) -> str:
    text = json.dumps(slice_key(where), sort_keys=True, default=str)
    return "all" if where is None or not where else hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class SliceFile:
    """One current write: its file, commit order and the key of the slice it replaced."""

    path: Path
    order: tuple[int, str]
    where: dict[str, object] | None

    def columns(self) -> list[str]:
        return list(pq.read_schema(self.path).names)


def slice_folder(root: Path, table: str, where: Mapping[str, object] | None) -> Path:
    folder = root / table / slice_id(where)
    if not (folder / WHERE_FILE).exists():
        from ta_platform.common.atomic import atomic_write_text

        atomic_write_text(folder / WHERE_FILE, json.dumps(slice_key(where), sort_keys=True, default=str))
    return folder


def commit_name(sha256: str) -> str:
    """``<ns since epoch>-<writer>.<sha256>.parquet``: sortable commit order, unique per writer and call,
    and the content hash a reader checks."""
    return f"{time.time_ns():020d}-{WRITER_ID}{uuid.uuid4().hex[:6]}.{sha256}.parquet"


_verified: dict[tuple[str, int, int, int], bool] = {}
_verified_lock = threading.Lock()


def verify(file: SliceFile, table: str) -> None:
    """Raise ``CorruptSliceError`` unless ``file`` holds the bytes its name's sha256 says.

    Files are immutable once committed, so a file already verified with the same size, mtime and
    inode is not hashed again in this process (a rewrite in place changes its mtime)."""
    try:
        stat = file.path.stat()
    except FileNotFoundError:
        return  # superseded and collected meanwhile: the reader lists again
    key = (str(file.path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if _verified.get(key):
        return
    match = _HASHED_NAME.match(file.path.name)
    if match is not None:
        from ta_platform.common.hashing import sha256_file

        actual = sha256_file(file.path)
        problem = None if actual == match["sha256"] else (
            f"its sha256 is {actual[:12]}..., it was written as {match['sha256'][:12]}... ({stat.st_size} bytes now)")
    else:
        with open(file.path, "rb") as handle:
            if stat.st_size >= 12:
                handle.seek(-4, os.SEEK_END)
            tail = handle.read(4)
        problem = None if tail == PARQUET_MAGIC else f"it does not end with the Parquet marker ({stat.st_size} bytes)"
    if problem is not None:
        where = "the whole table" if file.where is None else f"slice {json.dumps(file.where, sort_keys=True)}"
        raise CorruptSliceError(
            f"metadata table {table!r}: slice file {file.path} is corrupt: {problem}. It is not read. "
            f"To recover, re-run the step that writes {where} of {table!r} (its next write supersedes this "
            f"file), or move the file out of {file.path.parent} to read the table without it.")
    with _verified_lock:
        _verified[key] = True


def _order(path: Path) -> tuple[int, str]:
    """(commit ns, writer part): the commit order of a data file, from its name."""
    stamp, _, rest = path.name.partition("-")
    return int(stamp), rest


def _data_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("*.parquet") if not p.name.startswith(".")), key=_order)


def tables(root: Path) -> list[str]:
    """Table folders under ``root`` (a folder may hold no current file yet)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def current_files(root: Path, table: str) -> list[SliceFile]:
    """The latest write of every slice not hidden by a later whole-table write, in commit order."""
    latest: list[SliceFile] = []
    folder = root / table
    if not folder.is_dir():
        return []
    for sub in folder.iterdir():
        files = _data_files(sub) if sub.is_dir() else []
        if not files:
            continue
        try:
            where = json.loads((sub / WHERE_FILE).read_text())
        except (OSError, ValueError):
            continue  # a slice whose key is not written yet: its data file cannot be either
        latest.append(SliceFile(files[-1], _order(files[-1]), where))
    latest.sort(key=lambda f: f.order)
    wholes = [i for i, f in enumerate(latest) if f.where is None]
    return latest[wholes[-1]:] if wholes else latest


def publish(root: Path, table: str, where: Mapping[str, object] | None, write: Callable[[Path], object]) -> SliceFile:
    """``write(tmp)`` the slice's rows to a temporary file, then rename it to the next commit name.

    The rename is the commit: a reader sees the whole file or none of it. Files it supersedes are
    deleted afterwards.
    """
    folder = slice_folder(root, table, where)
    tmp = folder / f".{uuid.uuid4().hex}.parquet.tmp"
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        from ta_platform.common.hashing import sha256_file

        target = folder / commit_name(sha256_file(tmp))  # commit order taken at the rename
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    remote_store.upload(target)  # with a remote artifact store: the same commit there (no-op locally)
    written = SliceFile(target, _order(target), slice_key(where))
    collect_garbage(root, table, written)
    return written


def collect_garbage(root: Path, table: str, written: SliceFile) -> None:
    """Delete the table's files superseded more than ``GC_GRACE_S`` ago.

    A file is superseded by the next write of its slice, or by a later whole-table write. The grace
    period is for readers: one that listed a file just before it was superseded can still open it
    (and one that cannot, after the grace, lists again). ``written`` is the write that triggered this.
    """
    horizon = time.time_ns() - int(GC_GRACE_S * 1e9)
    folders = [p for p in (root / table).iterdir() if p.is_dir()]
    by_folder = {folder: _data_files(folder) for folder in folders}
    wholes = sorted(_order(p)[0] for p in by_folder.get(root / table / slice_id(None), []))
    for files in by_folder.values():
        for i, path in enumerate(files):
            stamp = _order(path)[0]
            superseded = [_order(files[i + 1])[0]] if i + 1 < len(files) else []
            superseded += [w for w in wholes if w > stamp][:1]
            if superseded and min(superseded) < horizon:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                remote_store.delete(path)


def sql_literal(value: object) -> str:
    value = plain(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"CAST({value!r} AS DOUBLE)"
    return "'" + str(value).replace("'", "''") + "'"


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def visible_rows_sql(files: list[SliceFile], select_for: Callable[[SliceFile], str]) -> str | None:
    """``UNION ALL`` of each current file's rows minus those a later write's key hides.

    ``select_for(file)`` gives the select list for a file (casts to the declared types). A key
    with a NULL value matches no row (as ``DELETE ... WHERE col = NULL`` deletes none).
    """
    parts = []
    for i, file in enumerate(files):
        hides = []
        for later in files[i + 1:]:
            key = later.where or {}
            if any(value is None for value in key.values()):
                continue
            hides.append(" OR ".join(f"{quote(col)} IS DISTINCT FROM {sql_literal(val)}" for col, val in key.items()))
        where = " AND ".join(f"({h})" for h in hides)
        parts.append(f"SELECT {select_for(file)} FROM read_parquet({sql_literal(str(file.path))})"
                     + (f" WHERE {where}" if where else ""))
    return " UNION ALL BY NAME ".join(parts) if parts else None
