"""The metadata store: declared tables any number of processes write at once, queried with DuckDB.

Why not one DuckDB file: DuckDB admits one writing process per file, and while it writes other
processes cannot even open it read-only, so parallel runs of a backfill failed with "Could not set
lock" and the store used to serialise every access behind a file lock (one machine, one writer).
Now every ``replace_slice`` writes its rows as one immutable Parquet file (temporary name, then
rename; its sha256 in its name, checked before it is read) in the table's folder beside the store's path (``ta_platform/store/table_log.py``), and every
read opens an in-memory DuckDB whose views fold those files: writers never wait for each other,
readers never wait at all, a crash never leaves half a slice, and re-materialising a slice is
idempotent. The SQL models run unchanged: ``execute`` runs their ``CREATE OR REPLACE TABLE`` on the
views and stores each table it creates the same way (a whole-table write).

Every table written through ``replace_slice`` has a declared schema (``ta_platform/store/tables.py``):
rows are cast to the declared types when written and read back as those types, never inferred from a
frame (an empty frame has no types). A DuckDB file left at the store's path by an older version is
imported once (its tables as whole-table writes) the first time the store is used.
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

from ta_platform.common import remote_store
from ta_platform.common.atomic import atomic_write_text
from ta_platform.common.paths import storage_path
from ta_platform.store import table_log
from ta_platform.store.table_log import SliceFile, quote
from ta_platform.store.tables import TABLES, TableSchema, TableSchemaError, table_schema

DEFAULT_LOCK_TIMEOUT_S = 600.0
READ_RETRIES = 8  # a file a writer superseded and deleted between our listing and our read: list again
STORED = "stored"  # the schema of the per-table views; new tables go to "main", which is searched first
LEGACY_MARK = ".imported-duckdb"


def default_db_path() -> Path:
    configured = os.environ.get("TA_DUCKDB_PATH")
    return Path(configured).resolve() if configured else storage_path("metadata.duckdb")


def _quote(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise ValueError(f"unsafe SQL identifier {identifier!r}")
    return f'"{identifier}"'


class MetadataStore:
    """Declared tables as Parquet slices under ``<path stem>.tables/``; DuckDB in memory to query them.

    ``path`` names the store (default ``<storage>/metadata.duckdb``, or ``TA_DUCKDB_PATH``): its tables
    live in the folder beside it, and a DuckDB file there from an older version is imported once.
    ``tables``: the declared schemas writes are checked against (default: every platform table).
    Cheap to construct; each call opens (and closes) its own in-memory DuckDB connection.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
                 tables: Mapping[str, TableSchema] | None = None):
        self.path = Path(path) if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.root = self.path.parent / f"{self.path.stem}.tables"
        self.lock_timeout_s = lock_timeout_s
        self.tables = TABLES if tables is None else tables
        self._legacy_checked = False

    # -- writes ---------------------------------------------------------------------------------------

    def replace_slice(self, table: str, frame: pd.DataFrame, where: Mapping[str, object] | None = None) -> int:
        """Replace the rows of ``table`` matching ``where`` (the whole table if None) with ``frame``.

        The frame is inserted by column name, cast to the declared types, and written as one Parquet
        file that later reads fold in (a whole-table write hides every earlier write; a table left
        with other columns or types by an older version reads as the declaration). A frame with
        missing or undeclared columns raises ``TableSchemaError`` naming the table; an undeclared
        table raises ``UndeclaredTableError``; a value that does not cast raises DuckDB's error with
        a note naming the table. Nothing is written on error. A frame with no rows and no columns is
        an empty slice. Returns rows written.
        """
        schema = table_schema(table, self.tables)
        if not (frame.empty and len(frame.columns) == 0):
            schema.check_columns([str(column) for column in frame.columns])
        unknown = [column for column in (where or {}) if column not in schema.column_names]
        if unknown:
            raise TableSchemaError(f"table {table!r}: slice key column(s) {unknown} are not declared columns")
        self._import_legacy()
        started = time.monotonic()
        con = duckdb.connect()
        try:
            con.execute(schema.create_sql())
            if len(frame.columns):
                con.register("incoming", frame)
                con.execute(f"INSERT INTO {_quote(table)} BY NAME SELECT * FROM incoming")
            self._publish(con, table, where)
        except duckdb.Error as error:
            error.add_note(f"while writing table {table!r} of {self.root}")
            raise
        finally:
            con.close()
        self.last_write_seconds = time.monotonic() - started
        return len(frame)

    def _publish(self, con: duckdb.DuckDBPyConnection, table: str, where: Mapping[str, object] | None,
                 source: str | None = None) -> SliceFile:
        """Write ``source`` (default: the in-memory table ``table``) as the slice's next file, atomically."""
        rows = source or quote(table)
        return table_log.publish(self.root, table, where, lambda tmp: con.execute(
            f"COPY {rows} TO {table_log.sql_literal(str(tmp))} (FORMAT parquet)"))

    # -- reads ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, sql: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory DuckDB with one view per stored table (those named in ``sql``, if given).

        Tables the caller creates in it (``CREATE [OR REPLACE] TABLE``) are stored on a clean exit, each
        as a whole-table write; stored tables themselves are read-only views.
        """
        self._import_legacy()
        remote_store.pull(self.root)  # other writers' slices, with a remote artifact store (no-op locally)
        con = duckdb.connect()
        try:
            self._create_views(con, sql)
            yield con
            self._store_created_tables(con)
        finally:
            con.close()

    def _create_views(self, con: duckdb.DuckDBPyConnection, sql: str | None) -> None:
        con.execute(f"CREATE SCHEMA {STORED}")
        wanted = sql.lower() if sql is not None else None
        for table in table_log.tables(self.root):
            if wanted is not None and table.lower() not in wanted:
                continue
            view = self._view_sql(table)
            if view is not None:
                con.execute(f"CREATE VIEW {STORED}.{quote(table)} AS {view}")
        con.execute(f"SET search_path = 'main,{STORED}'")

    def _view_sql(self, table: str) -> str | None:
        files = table_log.current_files(self.root, table)
        for file in files:  # a corrupt file raises CorruptSliceError naming it: never read
            table_log.verify(file, table)
        schema = self.tables.get(table)
        if schema is None:
            return table_log.visible_rows_sql(files, lambda file: "*")

        def select_for(file: SliceFile) -> str:
            present = set(file.columns())
            return ", ".join(
                f"CAST({quote(col) if col in present else 'NULL'} AS {dtype}) AS {quote(col)}"
                for col, dtype in schema.columns)

        return table_log.visible_rows_sql(files, select_for)

    def _store_created_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        created = [name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT temporary").fetchall()]
        for table in created:
            schema = self.tables.get(table)
            source = quote(table)
            if schema is not None:  # a declared table written through SQL still takes its declared types
                source = "(SELECT " + ", ".join(f"CAST({quote(c)} AS {t}) AS {quote(c)}" for c, t in schema.columns) \
                    + f" FROM main.{quote(table)})"
            else:
                source = f"main.{source}"
            self._publish(con, table, None, source=source)

    def _retrying(self, sql: str, run):
        for attempt in range(READ_RETRIES):
            try:
                with self.connect(sql) as con:
                    return run(con)
            except (duckdb.IOException, OSError):
                if attempt == READ_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def column_types(self, table: str) -> list[tuple[str, str]]:
        """(column, DuckDB type) of a stored table in order; empty when it does not exist."""
        if not self.table_exists(table):
            return []
        sql = f"DESCRIBE {quote(table)}"
        rows = self._retrying(sql, lambda con: con.execute(sql).fetchall())
        return [(row[0], row[1]) for row in rows]

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        return self._retrying(sql, lambda con: con.execute(sql, params or []).df())

    def execute(self, sql: str, params: list | None = None) -> None:
        self._retrying(sql, lambda con: con.execute(sql, params or []))

    def table_exists(self, table: str) -> bool:
        self._import_legacy()
        remote_store.pull(self.root / table)
        return bool(table_log.current_files(self.root, table))

    def read_table(self, table: str, where: Mapping[str, object] | None = None) -> pd.DataFrame:
        """All rows of ``table`` (optionally filtered by equality); empty frame if it does not exist."""
        if not self.table_exists(table):
            return pd.DataFrame()
        sql = f"SELECT * FROM {_quote(table)}"
        if where:
            sql += " WHERE " + " AND ".join(f"{_quote(col)} = ?" for col in where)
        return self.query(sql, [table_log.plain(v) for v in where.values()] if where else None)

    # -- an older version's DuckDB file ---------------------------------------------------------------

    def _import_legacy(self) -> None:
        """Import, once, the tables of a DuckDB file an older version left at ``path``.

        Each becomes a whole-table write (declared tables cast to their declaration, keeping the
        declared columns it has), unless the new store already holds that table.
        """
        if self._legacy_checked:
            return
        self._legacy_checked = True
        mark = self.root / LEGACY_MARK
        if not self.path.is_file() or mark.exists():
            return
        with FileLock(str(self.path) + ".lock", timeout=self.lock_timeout_s):
            if mark.exists():
                return
            con = duckdb.connect()
            try:
                con.execute(f"ATTACH {table_log.sql_literal(str(self.path))} AS legacy (READ_ONLY)")
                names = [name for (name,) in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = 'legacy' AND schema_name = 'main'"
                ).fetchall()]
                for table in names:
                    if table_log.current_files(self.root, table):
                        continue
                    self._import_table(con, table)
            finally:
                con.close()
            atomic_write_text(mark, f"imported from {self.path}\n")

    def _import_table(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        schema = self.tables.get(table)
        if schema is None:
            self._publish(con, table, None, source=f"legacy.main.{quote(table)}")
            return
        stored = {name for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = 'legacy' AND table_name = ?",
            [table]).fetchall()}
        kept = [column for column in schema.column_names if column in stored]
        con.execute(schema.create_sql(replace=True))
        if kept:
            columns = ", ".join(quote(column) for column in kept)
            con.execute(f"INSERT INTO main.{quote(table)} ({columns}) SELECT {columns} FROM legacy.main.{quote(table)}")
        self._publish(con, table, None)
        con.execute(f"DROP TABLE main.{quote(table)}")
