"""The metadata store past one writer: Parquet slices written by separate processes, DuckDB on top.

What could break and is planted here: writer processes racing on one table (rows lost or a slice
half-visible to a reader running at the same time), a reader blocked by a lock, a later write of
another key not hiding the rows it replaces, the SQL models' CREATE TABLE not persisting, an older
version's DuckDB file not read, a failed write leaving a file, and superseded files piling up.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import pandas as pd
import pytest
from filelock import FileLock

from ta_platform.store import table_log
from ta_platform.store.metadata_store import MetadataStore
from ta_platform.store.tables import TableSchema

ROWS = {"rows": TableSchema("rows", (("worker", "BIGINT"), ("round", "BIGINT"), ("value", "BIGINT")))}
T = {"t": TableSchema("t", (("k", "VARCHAR"), ("g", "BIGINT"), ("v", "DOUBLE")))}

WRITER = textwrap.dedent(
    """
    import sys, pandas as pd
    from ta_platform.store.metadata_store import MetadataStore
    from ta_platform.store.tables import TableSchema
    path, worker = sys.argv[1], int(sys.argv[2])
    rows = TableSchema("rows", (("worker", "BIGINT"), ("round", "BIGINT"), ("value", "BIGINT")))
    store = MetadataStore(path, tables={"rows": rows})
    for round_ in range(12):
        store.replace_slice("rows", pd.DataFrame({"worker": worker, "round": round_, "value": range(50)}),
                            {"worker": worker, "round": round_})
        store.replace_slice("rows", pd.DataFrame({"worker": worker, "round": -1, "value": [round_]}),
                            {"worker": worker, "round": -1})  # one slice rewritten over and over
    """
)
READER = textwrap.dedent(
    """
    import sys, time
    from ta_platform.store.metadata_store import MetadataStore
    from ta_platform.store.tables import TableSchema
    rows = TableSchema("rows", (("worker", "BIGINT"), ("round", "BIGINT"), ("value", "BIGINT")))
    store = MetadataStore(sys.argv[1], tables={"rows": rows})
    reads, slowest = 0, 0.0
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        started = time.monotonic()
        counts = store.query("SELECT worker, round, count(*) AS n FROM rows GROUP BY ALL") if store.table_exists("rows") else None
        slowest = max(slowest, time.monotonic() - started)
        if counts is not None:
            partial = counts[(counts["round"] >= 0) & (counts["n"] != 50) | (counts["round"] < 0) & (counts["n"] != 1)]
            assert partial.empty, f"a half-visible slice: {partial}"
        reads += 1
    print(reads, slowest)
    """
)


def test_writer_processes_lose_no_rows_while_a_reader_never_sees_half_a_slice(tmp_path):
    path = tmp_path / "metadata.duckdb"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), "12"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)], stderr=subprocess.PIPE, text=True)
               for w in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in writers]
    assert [p.returncode for p in writers] == [0] * 4, errors
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err
    assert int(out.split()[0]) > 0  # the reader did read while the writers wrote
    store = MetadataStore(path, tables=ROWS)
    counts = store.query("SELECT worker, count(*) AS n FROM rows WHERE round >= 0 GROUP BY worker ORDER BY worker")
    assert counts["n"].tolist() == [12 * 50] * 4
    last = store.query("SELECT worker, value FROM rows WHERE round = -1 ORDER BY worker")
    assert last.to_dict("records") == [{"worker": w, "value": 11} for w in range(4)]
    leftovers = [p for p in store.root.rglob("*") if p.name.startswith(".") and p.is_file()]
    assert not leftovers, leftovers  # no temporary file survives
    # each slice's latest file is current: 4 workers x (12 rounds + the rewritten slice)
    assert len(table_log.current_files(store.root, "rows")) == 4 * 13


def test_a_reader_never_waits_for_the_old_store_lock(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb", tables=T)
    store.replace_slice("t", pd.DataFrame({"k": ["a"], "g": [1], "v": [1.0]}))
    with FileLock(str(store.path) + ".lock"):  # what every access used to wait for
        started = time.monotonic()
        assert store.read_table("t")["k"].tolist() == ["a"]
        store.replace_slice("t", pd.DataFrame({"k": ["b"], "g": [2], "v": [2.0]}), {"k": "b"})
        assert time.monotonic() - started < 30
    assert sorted(store.read_table("t")["k"]) == ["a", "b"]


def test_writes_fold_like_delete_then_insert_whatever_the_slice_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(table_log, "GC_GRACE_S", 0.0)  # superseded files go at once (no reader here)
    store = MetadataStore(tmp_path / "m.duckdb", tables=T)
    store.replace_slice("t", pd.DataFrame({"k": ["a", "a", "b", None], "g": [1, 2, 1, 1], "v": [1.0, 2.0, 3.0, 4.0]}))
    store.replace_slice("t", pd.DataFrame({"k": ["a"], "g": [9], "v": [9.0]}), {"k": "a"})
    assert sorted(store.read_table("t")["v"]) == [3.0, 4.0, 9.0]
    store.replace_slice("t", pd.DataFrame({"k": ["c"], "g": [1], "v": [5.0]}), {"g": 1})  # another key column
    assert sorted(store.read_table("t")["v"]) == [5.0, 9.0]  # hides b/1 and the NULL-keyed row with g=1
    store.replace_slice("t", pd.DataFrame({"k": ["d"], "g": [3], "v": [6.0]}), {"k": None})  # a NULL key matches nothing
    assert sorted(store.read_table("t")["v"]) == [5.0, 6.0, 9.0]
    store.replace_slice("t", pd.DataFrame({"k": ["z"], "g": [0], "v": [0.0]}))  # whole table: hides everything
    assert store.read_table("t").to_dict("records") == [{"k": "z", "g": 0, "v": 0.0}]
    assert len(list(store.root.rglob("*.parquet"))) == 1  # the whole-table write deleted what it superseded
    assert store.read_table("t", {"k": "z"})["g"].tolist() == [0]


def test_sql_models_create_tables_that_later_stores_read_and_rebuild(tmp_path):
    path = tmp_path / "m.duckdb"
    store = MetadataStore(path, tables=T)
    store.replace_slice("t", pd.DataFrame({"k": ["a", "b", "c"], "g": [1, 1, 2], "v": [1.0, 2.0, 4.0]}))
    model = 'CREATE OR REPLACE TABLE "by_g" AS SELECT g, sum(v) AS total FROM "t" GROUP BY g ORDER BY g'
    store.execute(model)
    fresh = MetadataStore(path, tables=T)
    assert fresh.read_table("by_g").to_dict("records") == [{"g": 1, "total": 3.0}, {"g": 2, "total": 4.0}]
    assert fresh.column_types("by_g") == [("g", "BIGINT"), ("total", "DOUBLE")]
    fresh.replace_slice("t", pd.DataFrame({"k": ["d"], "g": [2], "v": [10.0]}), {"g": 2})
    fresh.execute(model)
    assert fresh.query('SELECT total FROM "by_g" WHERE g = 2')["total"].tolist() == [10.0]
    assert fresh.query('SELECT count(*) AS n FROM "by_g" JOIN "t" USING (g)')["n"].tolist() == [3]


def test_an_older_versions_duckdb_file_is_imported_once(tmp_path):
    path = tmp_path / "metadata.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (k VARCHAR, g INTEGER, old VARCHAR)")  # other columns and types
        con.execute("INSERT INTO t VALUES ('a', 1, 'x')")
        con.execute("CREATE TABLE summary AS SELECT 42 AS answer")  # an SQL model's table
    store = MetadataStore(path, tables=T)
    imported = store.read_table("t")
    assert imported[["k", "g"]].to_dict("records") == [{"k": "a", "g": 1}] and imported["v"].isna().all()
    assert store.column_types("t") == [("k", "VARCHAR"), ("g", "BIGINT"), ("v", "DOUBLE")]
    assert store.read_table("summary")["answer"].tolist() == [42]
    store.replace_slice("t", pd.DataFrame({"k": ["b"], "g": [2], "v": [2.0]}))
    assert MetadataStore(path, tables=T).read_table("t")["k"].tolist() == ["b"]  # not imported again


def test_a_write_that_fails_leaves_no_file_and_the_old_rows(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb", tables=T)
    store.replace_slice("t", pd.DataFrame({"k": ["a"], "g": [1], "v": [1.0]}), {"k": "a"})
    before = sorted(store.root.rglob("*.parquet"))
    with pytest.raises(duckdb.ConversionException) as raised:
        store.replace_slice("t", pd.DataFrame({"k": ["a"], "g": ["one"], "v": [1.0]}), {"k": "a"})
    assert any("table 't'" in note for note in raised.value.__notes__)
    assert sorted(store.root.rglob("*.parquet")) == before
    assert not [p for p in store.root.rglob(".*") if p.is_file()]
    assert store.read_table("t")["g"].tolist() == [1]
