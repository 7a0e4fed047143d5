"""Every DuckDB table is created from its declared schema, never inferred from a frame.

The regression (issue 8): ``faults`` was first created from an empty list of faults, so its columns
were typed NULL and the first real fault failed with ``ConversionException: Unimplemented type for
cast (VARCHAR -> "NULL")``. These tests write through the real store into real DuckDB files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ta_platform.common.faults import FaultRecord
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.sql_models import load_models
from ta_platform.store.metadata_store import MetadataStore
from ta_platform.store.tables import (
    BIGINT,
    BOOLEAN,
    DOUBLE,
    TABLES,
    VARCHAR,
    TableSchemaError,
    UndeclaredTableError,
)

PACKAGE = Path(__file__).resolve().parents[1] / "ta_platform"
SAMPLE = {VARCHAR: "x", BIGINT: 3, DOUBLE: 0.5, BOOLEAN: True}
FAULT = FaultRecord(stage="extract:m", item="model/correct_base_solution/problem_1", path="/data/problem_1",
                    kind="too_long", problem="4100 tokens exceed the model's 2048-token context")


def _declared_types(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                       "ORDER BY ordinal_position", [table]).fetchall()


def test_an_empty_fault_list_then_a_real_fault_is_recorded(tmp_path):
    resource = MetadataStoreResource(db_path=str(tmp_path / "metadata.duckdb"))
    resource.record_faults("extract:m", [])  # first write: no faults, the frame has no types
    resource.record_faults("extract:m", [FAULT])  # failed with VARCHAR -> "NULL" when types were inferred
    rows = resource.store().read_table("faults")
    assert rows.to_dict("records") == [FAULT.as_row()]
    assert resource.store().column_types("faults") == [(c, VARCHAR) for c in ("stage", "item", "path", "kind", "problem")]


def test_a_faults_table_left_with_null_types_by_an_older_version_is_rebuilt(tmp_path):
    path = tmp_path / "metadata.duckdb"
    columns = ", ".join(f"NULL AS {c}" for c in ("stage", "item", "path", "kind", "problem"))
    with duckdb.connect(str(path)) as con:  # what the old store's first (empty, object-typed) write left
        con.execute(f'CREATE TABLE "faults" AS SELECT {columns} LIMIT 0')
        assert {dtype for _, dtype in _declared_types(con, "faults")} == {'"NULL"'}  # the planted fault
        with pytest.raises(duckdb.ConversionException, match="NULL"):
            con.register("real", pd.DataFrame([FAULT.as_row()]))
            con.execute('INSERT INTO "faults" BY NAME SELECT * FROM real')
    MetadataStoreResource(db_path=str(path)).record_faults("extract:m", [FAULT])
    store = MetadataStore(path)
    assert store.read_table("faults").to_dict("records") == [FAULT.as_row()]
    assert {dtype for _, dtype in store.column_types("faults")} == {VARCHAR}


def _written_tables() -> tuple[set[str], list[str]]:
    """Table names passed to ``replace_slice`` (and ``faults`` for ``record_faults``) anywhere in the package."""
    names, not_literal = set(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        # an override of replace_slice passing its own ``table`` on (a store subclass) writes no table itself
        pass_through = {id(call) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name == "replace_slice"
                        for call in ast.walk(fn) if isinstance(call, ast.Call)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)) or id(node) in pass_through:
                continue
            if node.func.attr == "record_faults":
                names.add("faults")
            elif node.func.attr == "replace_slice" and path.name != "metadata_store.py":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.add(first.value)
                else:
                    not_literal.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return names, not_literal


def test_every_table_the_platform_writes_has_a_declared_schema_and_no_declaration_is_stale():
    written, not_literal = _written_tables()
    assert not not_literal, f"replace_slice must name its table with a string literal: {not_literal}"
    assert {"faults", "problem_index", "sentence_labels", "probe_metrics", "task_pool"} <= written  # the scan works
    assert sorted(written - set(TABLES)) == [], "written but not declared in ta_platform/store/tables.py"
    assert sorted(set(TABLES) - written) == [], "declared but written nowhere: a stale declaration"


def test_sql_models_read_only_declared_tables_and_never_shadow_one():
    models = load_models()
    sources = {source for model in models.values() for source in model.sources}
    assert sources <= set(TABLES), sorted(sources - set(TABLES))
    assert not set(models) & set(TABLES)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_stored_types_are_the_declared_ones_even_from_an_empty_frame(tmp_path, name):
    schema = TABLES[name]
    store = MetadataStore(tmp_path / "m.duckdb")
    empty = pd.DataFrame({column: pd.Series(dtype=object) for column in schema.column_names})
    key = schema.column_names[0]
    store.replace_slice(name, empty, {key: SAMPLE[schema.columns[0][1]]})  # a slice write creates the table
    assert store.column_types(name) == list(schema.columns)
    one_row = pd.DataFrame([{column: SAMPLE[dtype] for column, dtype in schema.columns}])
    store.replace_slice(name, one_row, {key: SAMPLE[schema.columns[0][1]]})
    store.replace_slice(name, one_row)  # a whole-table write recreates it from the declaration
    assert store.column_types(name) == list(schema.columns)
    assert len(store.read_table(name)) == 1


def test_a_frame_with_a_missing_or_undeclared_column_fails_naming_the_table_and_writes_nothing(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb")
    good = pd.DataFrame([FAULT.as_row()])
    store.replace_slice("faults", good, {"stage": FAULT.stage})
    with pytest.raises(TableSchemaError, match=r"table 'faults'.*missing column\(s\) \['problem'\]"):
        store.replace_slice("faults", good.drop(columns=["problem"]), {"stage": FAULT.stage})
    with pytest.raises(TableSchemaError, match=r"table 'faults'.*undeclared column\(s\) \['severity'\]"):
        store.replace_slice("faults", good.assign(severity="high"))
    with pytest.raises(TableSchemaError, match=r"table 'faults'.*slice key column\(s\) \['run'\]"):
        store.replace_slice("faults", good, {"run": "r1"})
    with pytest.raises(UndeclaredTableError, match=r"table 'fault' has no declared schema"):
        store.replace_slice("fault", good)
    assert store.read_table("faults").to_dict("records") == [FAULT.as_row()]
    assert not store.table_exists("fault")


def test_a_value_of_the_wrong_type_fails_naming_the_table(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb")
    row = {column: SAMPLE[dtype] for column, dtype in TABLES["sentence_spans"].columns}
    with pytest.raises(duckdb.ConversionException) as raised:
        store.replace_slice("sentence_spans", pd.DataFrame([{**row, "char_start": "not a number"}]))
    assert any("table 'sentence_spans'" in note for note in raised.value.__notes__)


def test_the_preference_summary_is_stored_long_whatever_the_feature_sets(tmp_path):
    from ta_platform.preferences.summary import long_summary, summarise_probes

    report = pd.DataFrame([
        dict(features=features, target="mu", scope=scope, held_out_topic=topic, alpha=1.0, metric="pearson_r",
             value=value, n=40)
        for features, value in [("activations:m/L0.5", 0.6), ("content:minilm", 0.4), ("activations:n/L0.25", 0.5)]
        for scope, topic in [("in_distribution", ""), ("held_out_topic", "math"), ("held_out_topic", "code")]
    ])
    wide = summarise_probes(report)  # one column per feature set: registry-dependent, so never a table schema
    store = MetadataStore(tmp_path / "m.duckdb")
    store.replace_slice("preference_summary", long_summary(wide))
    stored = store.read_table("preference_summary")
    assert len(stored) == len(wide) * 3
    assert set(stored["features"]) == {"activations:m/L0.5", "content:minilm", "activations:n/L0.25"}
    held_out = stored[(stored["scope"] == "held_out_topic") & (stored["features"] == "content:minilm")]
    assert held_out["n_folds"].tolist() == [2] and held_out["value"].tolist() == [pytest.approx(0.4)]
