"""A metadata Parquet slice truncated or bit-flipped after its commit: detected, named, never read.

The fault is planted in the real store's files (a real DuckDB reading real Parquet): a truncation
(a copy cut short, a full disk at sync time) and one flipped bit inside a value, which Parquet itself
reads back as another value. The store must refuse the file with an error naming it, its table and
slice and how to recover, keep serving the other tables, and read again once the slice is rewritten.
"""

from __future__ import annotations

import os

import duckdb
import pandas as pd
import pytest

from ta_platform.store import table_log
from ta_platform.store.metadata_store import MetadataStore
from ta_platform.store.table_log import CorruptSliceError
from ta_platform.store.tables import TableSchema

pytestmark = pytest.mark.fault

TABLES = {
    "runs": TableSchema("runs", (("stage", "VARCHAR"), ("note", "VARCHAR"), ("value", "DOUBLE"))),
    "other": TableSchema("other", (("k", "BIGINT"),)),
}
MARK = "needle-value-4821"


@pytest.fixture
def store(tmp_path):
    store = MetadataStore(tmp_path / "metadata.duckdb", tables=TABLES)
    store.replace_slice("runs", pd.DataFrame({"stage": ["load"] * 3, "note": [MARK, "b", "c"], "value": [1.0, 2.0, 3.0]}),
                        {"stage": "load"})
    store.replace_slice("runs", pd.DataFrame({"stage": ["probe"], "note": ["d"], "value": [4.0]}), {"stage": "probe"})
    store.replace_slice("other", pd.DataFrame({"k": [1, 2]}))
    return store


def slice_file(store, table: str, stage: str):
    return next(f for f in table_log.current_files(store.root, table) if f.where == {"stage": stage}).path


def test_each_committed_file_carries_its_sha256(store):
    from ta_platform.common.hashing import sha256_file

    for table in TABLES:
        for file in table_log.current_files(store.root, table):
            assert file.path.name.split(".")[-2] == sha256_file(file.path)


def test_a_truncated_slice_is_named_with_how_to_recover(store):
    path = slice_file(store, "runs", "load")
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(CorruptSliceError) as caught:
        store.read_table("runs")
    message = str(caught.value)
    assert str(path) in message and "'runs'" in message and '{"stage": "load"}' in message
    assert "re-run the step" in message
    assert store.read_table("other")["k"].tolist() == [1, 2]  # the other tables still read


def test_a_flipped_bit_is_detected_not_read_as_another_value(store):
    path = slice_file(store, "runs", "load")
    data = bytearray(path.read_bytes())
    at = data.index(MARK.encode()) + len(MARK) - 1
    data[at] ^= 0x01  # "...4821" -> "...4820": still a valid Parquet file
    path.write_bytes(bytes(data))
    flipped = duckdb.sql(f"SELECT note FROM read_parquet('{path}')").fetchall()
    assert (MARK[:-1] + "0",) in flipped, "Parquet alone reads the flipped value without complaint"
    with pytest.raises(CorruptSliceError, match=str(path)):
        store.query("SELECT note FROM runs")


def test_rewriting_the_slice_recovers(store):
    path = slice_file(store, "runs", "load")
    os.truncate(path, 10)
    with pytest.raises(CorruptSliceError):
        store.read_table("runs")
    store.replace_slice("runs", pd.DataFrame({"stage": ["load"], "note": ["again"], "value": [9.0]}), {"stage": "load"})
    frame = store.read_table("runs").sort_values("stage")
    assert frame["note"].tolist() == ["again", "d"]


def test_a_file_from_before_hashed_names_is_still_checked_for_truncation(store):
    path = slice_file(store, "runs", "probe")
    legacy = path.with_name(path.name.split(".")[0] + ".parquet")
    os.replace(path, legacy)
    assert store.read_table("runs")["note"].tolist().count("d") == 1  # an intact unhashed file reads
    os.truncate(legacy, legacy.stat().st_size - 3)
    with pytest.raises(CorruptSliceError, match="Parquet marker"):
        store.read_table("runs")
