"""Four processes writing to one DuckDB file at once: no lock error, no lost rows."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pandas as pd
import pytest

from ta_platform.store.metadata_store import MetadataStore
from ta_platform.store.tables import TableSchema

T = {"t": TableSchema("t", (("k", "VARCHAR"), ("v", "BIGINT")))}

WRITER = textwrap.dedent(
    """
    import sys, pandas as pd
    from ta_platform.store.metadata_store import MetadataStore
    from ta_platform.store.tables import TableSchema
    path, worker = sys.argv[1], int(sys.argv[2])
    rows = TableSchema("rows", (("worker", "BIGINT"), ("round", "BIGINT"), ("value", "BIGINT")))
    store = MetadataStore(path, tables={"rows": rows})
    for round_ in range(15):
        frame = pd.DataFrame({"worker": worker, "round": round_, "value": range(100)})
        store.replace_slice("rows", frame, {"worker": worker, "round": round_})
        assert len(store.read_table("rows", {"worker": worker})) == 100 * (round_ + 1)
    """
)


def test_parallel_writers_never_hit_a_lock_and_lose_no_rows(tmp_path):
    path = tmp_path / "metadata.duckdb"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)], stderr=subprocess.PIPE, text=True)
             for w in range(4)]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    rows = MetadataStore(path).query("SELECT worker, count(*) AS n FROM rows GROUP BY worker ORDER BY worker")
    assert rows["n"].tolist() == [1500] * 4


def test_replacing_a_slice_is_idempotent_and_leaves_other_slices(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb", tables=T)
    store.replace_slice("t", pd.DataFrame({"k": ["a", "a"], "v": [1, 2]}), {"k": "a"})
    store.replace_slice("t", pd.DataFrame({"k": ["b"], "v": [3]}), {"k": "b"})
    store.replace_slice("t", pd.DataFrame({"k": ["a"], "v": [9]}), {"k": "a"})
    assert sorted(store.read_table("t").itertuples(index=False, name=None)) == [("a", 9), ("b", 3)]


def test_a_failed_write_rolls_back_and_keeps_the_previous_rows(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb", tables=T)
    store.replace_slice("t", pd.DataFrame({"k": ["a"], "v": [1]}), {"k": "a"})
    bad = pd.DataFrame({"k": ["a"], "v": ["not a number"]})
    with pytest.raises(duckdb.Error):
        store.replace_slice("t", bad, {"k": "a"})
    assert store.read_table("t")["v"].tolist() == [1]


def test_a_whole_table_write_replaces_an_old_schema_with_the_declared_one(tmp_path):
    path = tmp_path / "m.duckdb"
    with duckdb.connect(str(path)) as con:  # as an older version left it: other columns, inferred types
        con.execute("CREATE TABLE t (k VARCHAR, family VARCHAR)")
        con.execute("INSERT INTO t VALUES ('a', 'any')")
    store = MetadataStore(path, tables=T)
    store.replace_slice("t", pd.DataFrame({"k": ["b"], "v": [2]}))
    assert store.read_table("t").to_dict("records") == [{"k": "b", "v": 2}]
    assert store.column_types("t") == [("k", "VARCHAR"), ("v", "BIGINT")]
