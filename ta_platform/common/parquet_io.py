"""Parquet writes with provenance in the file's key-value metadata, atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ta_platform.common.atomic import atomic_path


def write_parquet(frame: pd.DataFrame, path: Path, provenance: dict | None = None) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if provenance is not None:
        meta = dict(table.schema.metadata or {})
        meta[b"ta_provenance"] = json.dumps(provenance, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_provenance(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"ta_provenance")
    return json.loads(raw) if raw else {}
