"""The DuckDB metadata file, safe under concurrent Dagster runs.

Why a file lock: DuckDB allows one writing process, and while it writes other processes cannot
even open the file read-only, so parallel runs of a backfill fail with "Could not set lock".
Every access goes through ``MetadataStore``, which holds an inter-process ``filelock`` for the
duration of one short connection. Writes of a slice (e.g. one partition) delete that slice and
insert the new rows inside one transaction, so re-materialising is idempotent and a crash never
leaves half a slice.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
import pandas as pd
from filelock import FileLock

from ta_platform.common.paths import storage_path

DEFAULT_LOCK_TIMEOUT_S = 600.0


def default_db_path() -> Path:
    configured = os.environ.get("TA_DUCKDB_PATH")
    return Path(configured).resolve() if configured else storage_path("metadata.duckdb")


def _quote(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise ValueError(f"unsafe SQL identifier {identifier!r}")
    return f'"{identifier}"'


class MetadataStore:
    """Serialised access to one DuckDB file. Cheap to construct; opens connections per call."""

    def __init__(self, path: str | os.PathLike[str] | None = None, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S):
        self.path = Path(path) if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout_s)

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A locked connection; released (and the lock freed) on exit."""
        with self._lock:
            connection = duckdb.connect(str(self.path))
            try:
                yield connection
            finally:
                connection.close()

    def replace_slice(self, table: str, frame: pd.DataFrame, where: Mapping[str, object] | None = None) -> int:
        """Replace the rows of ``table`` matching ``where`` (the whole table if None) with ``frame``.

        A slice write creates the table from the frame's schema on first use; a whole-table write
        replaces table and schema. Returns rows written.
        """
        name = _quote(table)
        started = time.monotonic()
        with self.connect() as con:
            con.register("incoming", frame)
            con.execute("BEGIN TRANSACTION")
            try:
                if where:
                    con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM incoming LIMIT 0")
                    clause = " AND ".join(f"{_quote(col)} = ?" for col in where)
                    con.execute(f"DELETE FROM {name} WHERE {clause}", list(where.values()))
                    con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
                else:  # the whole table: take the frame's schema, so a new column never breaks a rerun
                    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("incoming")
        self.last_write_seconds = time.monotonic() - started
        return len(frame)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def execute(self, sql: str, params: list | None = None) -> None:
        with self.connect() as con:
            con.execute(sql, params or [])

    def table_exists(self, table: str) -> bool:
        found = self.query(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?", [table]
        )
        return bool(found["n"].iloc[0])

    def read_table(self, table: str, where: Mapping[str, object] | None = None) -> pd.DataFrame:
        """All rows of ``table`` (optionally filtered by equality); empty frame if it does not exist."""
        if not self.table_exists(table):
            return pd.DataFrame()
        sql = f"SELECT * FROM {_quote(table)}"
        if where:
            sql += " WHERE " + " AND ".join(f"{_quote(col)} = ?" for col in where)
        return self.query(sql, list(where.values()) if where else None)
