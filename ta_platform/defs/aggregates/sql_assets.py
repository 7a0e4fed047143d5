"""One asset per ``dbt_like_sql/*.sql`` file, built on the project's DuckDB file.

``{{ ref('m') }}`` becomes a dependency on the asset ``m``; ``{{ source('t') }}`` a dependency on
the Python asset(s) that write table ``t`` (``SOURCE_TABLES``). Adding a model needs no Python.
"""

from pathlib import Path

import dagster as dg

from ta_platform.common.hashing import sha256_bytes
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.defs.summary_metadata import duckdb_table_metadata
from ta_platform.sql_models import SQL_DIR, SqlModel, load_models

GROUP = "aggregates"

# DuckDB tables written by Python assets -> the assets that write them.
SOURCE_TABLES: dict[str, list[str]] = {
    "probe_metrics": ["probes"],
    "tripwire_results": ["probe_tripwires"],
    "faults": ["problem_index", "sentence_spans", "sentence_activations"],
}


def _sql_asset(model: SqlModel, source_tables: dict[str, list[str]] = SOURCE_TABLES,
               group: str = GROUP) -> dg.AssetsDefinition:
    unknown = [s for s in model.sources if s not in source_tables]
    if unknown:
        raise ValueError(f"{model.path}: source table(s) {unknown} are not written by any asset; "
                         f"known: {sorted(source_tables)}")
    deps = [*model.refs, *(asset for source in model.sources for asset in source_tables[source])]

    @dg.asset(name=model.name, group_name=group, deps=sorted(set(deps)), kinds={"duckdb", "sql"},
              description=model.description, code_version=sha256_bytes(model.sql.encode())[:16])
    def _build(context: dg.AssetExecutionContext, metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
        store = metadata_store.store()
        store.execute(model.render())
        preview = store.query(f'SELECT * FROM "{model.name}" LIMIT 30')
        table = duckdb_table_metadata(store, model.name)  # dagster/row_count and dagster/column_schema
        n_rows = table["dagster/row_count"].value
        context.log.info(f"{model.name}: {n_rows} rows")
        return dg.MaterializeResult(metadata={
            "rows": n_rows, **table,
            "sql": dg.MetadataValue.md(f"```sql\n{model.sql.strip()}\n```"),
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "(empty)"),
        })

    return _build


def build_sql_assets(folder: Path = SQL_DIR, source_tables: dict[str, list[str]] = SOURCE_TABLES,
                     group: str = GROUP) -> list[dg.AssetsDefinition]:
    """One asset per model of ``folder``; a study passes its own folder (``dbt_like_sql/<study>/``, not
    globbed by the default), the tables its assets write and its group, so its SQL runs in its stages."""
    return [_sql_asset(model, source_tables, group) for model in load_models(folder).values()]
