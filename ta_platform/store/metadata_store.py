"""The DuckDB metadata file, safe under concurrent Dagster runs.

Why a file lock: DuckDB allows one writing process, and while it writes other processes cannot
even open the file read-only, so parallel runs of a backfill fail with "Could not set lock".
Every access goes through ``MetadataStore``, which holds an inter-process ``filelock`` for the
duration of one short connection. Writes of a slice (e.g. one partition) delete that slice and
insert the new rows inside one transaction, so re-materialising is idempotent and a crash never
leaves half a slice.

Every table written here has a declared schema (``ta_platform/store/tables.py``): tables are created
with explicit column types, never inferred from a frame (an empty frame has no types).
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
from ta_platform.store.tables import TABLES, TableSchema, TableSchemaError, table_schema

DEFAULT_LOCK_TIMEOUT_S = 600.0


def default_db_path() -> Path:
    configured = os.environ.get("TA_DUCKDB_PATH")
    return Path(configured).resolve() if configured else storage_path("metadata.duckdb")


def _quote(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise ValueError(f"unsafe SQL identifier {identifier!r}")
    return f'"{identifier}"'


class MetadataStore:
    """Serialised access to one DuckDB file. Cheap to construct; opens connections per call.

    ``tables``: the declared schemas writes are checked against (default: every platform table).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
                 tables: Mapping[str, TableSchema] | None = None):
        self.path = Path(path) if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout_s)
        self.tables = TABLES if tables is None else tables

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

        The table is created from its declared schema on first use (a table left with other columns
        or types by an older version is rebuilt to it, keeping its rows), and the frame is inserted by
        column name, cast to the declared types. A frame with missing or undeclared columns raises
        ``TableSchemaError`` naming the table; an undeclared table raises ``UndeclaredTableError``.
        A frame with no rows and no columns is an empty slice. Returns rows written.
        """
        schema = table_schema(table, self.tables)
        if not (frame.empty and len(frame.columns) == 0):
            schema.check_columns([str(column) for column in frame.columns])
        unknown = [column for column in (where or {}) if column not in schema.column_names]
        if unknown:
            raise TableSchemaError(f"table {table!r}: slice key column(s) {unknown} are not declared columns")
        name = _quote(table)
        started = time.monotonic()
        with self.connect() as con:
            con.register("incoming", frame)
            con.execute("BEGIN TRANSACTION")
            try:
                if where:
                    _ensure_declared(con, schema)
                    clause = " AND ".join(f"{_quote(col)} = ?" for col in where)
                    con.execute(f"DELETE FROM {name} WHERE {clause}", list(where.values()))
                else:  # the whole table: recreated from its declaration, so an old schema never lingers
                    con.execute(schema.create_sql(replace=True))
                if len(frame.columns):
                    con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
                con.execute("COMMIT")
            except BaseException as error:
                con.execute("ROLLBACK")
                if isinstance(error, duckdb.Error):
                    error.add_note(f"while writing table {table!r} of {self.path}")
                raise
            finally:
                con.unregister("incoming")
        self.last_write_seconds = time.monotonic() - started
        return len(frame)

    def column_types(self, table: str) -> list[tuple[str, str]]:
        """(column, DuckDB type) of a stored table in order; empty when it does not exist."""
        with self.connect() as con:
            return _stored_columns(con, table)

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


def _stored_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position", [table]
    ).fetchall()
    return [(column, dtype) for column, dtype in rows]


def _ensure_declared(con: duckdb.DuckDBPyConnection, schema: TableSchema) -> None:
    """Create the table from its declaration, or rebuild one stored with other columns or types.

    A rebuild keeps the stored rows of the declared columns (cast to the declared types): e.g. an
    empty ``faults`` table an older version created with NULL-typed columns becomes VARCHAR.
    """
    stored = _stored_columns(con, schema.name)
    if not stored:
        con.execute(schema.create_sql())
        return
    if stored == list(schema.columns):
        return
    name, old = _quote(schema.name), _quote(f"{schema.name}__undeclared")
    kept = [column for column, _ in stored if column in schema.column_names]
    con.execute(f"ALTER TABLE {name} RENAME TO {old}")
    con.execute(schema.create_sql())
    if kept:
        columns = ", ".join(_quote(column) for column in kept)
        con.execute(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {old}")
    con.execute(f"DROP TABLE {old}")
