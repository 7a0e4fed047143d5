"""Metadata every summary and table asset records the same way: numbers Dagster can plot, one gate.

Why shared: the UI's Plots tab follows a FLOAT metadata key across materialisations, so a study's
headline must land under the same key every time (``<model>/<setting>/<statistic>``, ``headline_value``);
``ta-platform materialize`` prints its closing table from the same ``headline_*`` keys; and a table
asset's ``dagster/row_count`` and ``dagster/column_schema`` let the UI show its size and columns.

The gate: no asset here states a verdict (it would outlive the gate run that replaces it); the
verdict lives on the ``release_gate`` check, and ``gate_pointer`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import dagster as dg
import pandas as pd

from ta_platform.store.metadata_store import MetadataStore

GATE_POINTER_TEXT = "see the release_gate check"
HEADLINE_KEYS = ("headline", "headline_cell", "headline_value", "headline_low", "headline_high")


def gate_pointer(gated_asset: str) -> dict[str, dg.MetadataValue]:
    """``gate``: where the verdict is (the release_gate check on ``gated_asset``), with a UI link."""
    return {"gate": dg.MetadataValue.text(f"{GATE_POINTER_TEXT} on {gated_asset} (Checks tab; `ta-platform gate`)"),
            "gate_check": dg.MetadataValue.url(f"/assets/{gated_asset}?view=checks")}


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def floats(values: dict[str, object]) -> dict[str, dg.MetadataValue]:
    """FLOAT metadata for each finite value (NaN and missing are left out, never recorded as 0)."""
    return {key: dg.MetadataValue.float(number) for key, value in values.items()
            if (number := _finite(value)) is not None}


def cell_floats(frame: pd.DataFrame, id_columns: Sequence[str], value_columns: Sequence[str]) -> dict[str, dg.MetadataValue]:
    """``<id>/<id>/<column>`` -> FLOAT for every row of ``frame`` and each value column."""
    values = {}
    for row in frame.to_dict("records"):
        cell = "/".join(str(row[c]) for c in id_columns)
        values.update({f"{cell}/{column}": row.get(column) for column in value_columns})
    return floats(values)


def headline(cell: str, what: str, value, low=None, high=None) -> dict[str, dg.MetadataValue]:
    """A study's one headline number: which cell, what it measures, the value and its interval."""
    return {"headline": dg.MetadataValue.text(what), "headline_cell": dg.MetadataValue.text(cell),
            **floats({"headline_value": value, "headline_low": low, "headline_high": high})}


def stronger_baseline_headline(cells: pd.DataFrame, id_columns: Sequence[str], what: str) -> dict[str, dg.MetadataValue]:
    """The cell whose margin over its stronger baseline (the smaller of its ``margin_position`` and
    ``margin_text``) is largest, with that margin's own interval (``ci_low_<baseline>``, ``ci_high_<baseline>``).
    Shared by every sentence-level study that reports a probe beside the position and text baselines."""
    margins = cells[["margin_position", "margin_text"]].astype(float).dropna(how="all")
    if margins.empty:
        return {}
    best = margins.min(axis=1).idxmax()
    baseline = str(margins.loc[best].idxmin()).removeprefix("margin_")
    row = cells.loc[best]
    return headline("/".join(str(row[c]) for c in id_columns), f"{what} ({baseline})",
                    row[f"margin_{baseline}"], row[f"ci_low_{baseline}"], row[f"ci_high_{baseline}"])


def column_schema(columns: Sequence[tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=str(name), type=str(kind)) for name, kind in columns])


def table_metadata(frame: pd.DataFrame, n_rows: int | None = None) -> dict[str, object]:
    """``dagster/row_count`` and ``dagster/column_schema`` of a table written from ``frame``."""
    return _table(len(frame) if n_rows is None else int(n_rows), [(c, str(t)) for c, t in frame.dtypes.items()])


def duckdb_table_metadata(store, table: str) -> dict[str, object]:
    """The same, read back from the DuckDB table itself (its whole row count and declared types)."""
    n_rows = int(store.query(f'SELECT count(*) AS n FROM "{table}"')["n"].iloc[0])
    return _table(n_rows, store.column_types(table))


def _table(n_rows: int, columns: Sequence[tuple[str, str]]) -> dict[str, dg.MetadataValue]:
    """Dagster's documented table keys (what the UI's asset page reads)."""
    return {"dagster/row_count": dg.MetadataValue.int(int(n_rows)),
            "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(columns))}


SIDE_TABLES = frozenset({"faults"})  # written by many assets as a side log: never an asset's own table


def record_table_write(store, table: str) -> None:
    """After ``store`` wrote ``table`` inside an asset step: that asset's ``dagster/row_count`` and
    ``dagster/column_schema``, read back from DuckDB.

    Which asset: the one named like the table; else, in a single-asset step, the asset itself (the
    last table it writes wins, until one named like it is written). Outside an asset step, nothing.
    """
    if table in SIDE_TABLES:
        return
    try:
        context = dg.AssetExecutionContext.get()
        keys = set(context.selected_asset_keys)
        run_id = context.run_id
    except Exception:  # not inside an asset step (a script, a check, a test): nothing to record
        return
    named = dg.AssetKey(table)
    if named in keys:
        key, exact = named, True
    elif len(keys) == 1 and (run_id, next(iter(keys))) not in _EXACT:
        key, exact = next(iter(keys)), False
    else:
        return
    context.add_asset_metadata(duckdb_table_metadata(store, table), asset_key=key)
    if exact:
        _EXACT.add((run_id, key))


_EXACT: set = set()  # (run id, asset key) whose own-named table has been recorded


class RecordingMetadataStore(MetadataStore):
    """The project's store, as assets get it from ``MetadataStoreResource``: each table it writes is
    also recorded on the writing asset's materialisation (``record_table_write``)."""

    def replace_slice(self, table: str, frame: pd.DataFrame, where=None) -> int:
        written = super().replace_slice(table, frame, where)
        record_table_write(self, table)
        return written
