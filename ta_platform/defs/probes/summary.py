"""scaling_summary: the model x setting matrix as a DuckDB table, markdown, PNG and a report file.

The release gate, an asset check on this asset, lives in ``ta_platform/defs/gate/checks.py``."""

import time

import dagster as dg
import pandas as pd

from ta_platform.common.atomic import atomic_write_bytes, atomic_write_text
from ta_platform.common.paths import storage_path
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.probing.report import best_probe_cells, markdown_matrix, matrix_png

ACTIVATION_PROBES = ["linear_probe", "mlp_probe", "activations_plus_position"]


@dg.asset(group_name="probes", deps=["scaling_report_rows"], kinds={"duckdb", "markdown"})
def scaling_summary(context: dg.AssetExecutionContext, metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Best probe per model x setting, its PR-AUC margin over position with the bootstrap interval,
    and the tripwire status; written to DuckDB, storage/reports/ and the asset's metadata."""
    store = metadata_store.store()
    rows = store.read_table("scaling_report_rows")
    if rows.empty:
        raise ValueError("scaling_report_rows is empty: materialise probes and the SQL aggregates first")
    # The question is "do activations predict beyond position and text?": report the best probe of
    # any kind and, separately, the best activation probe (the text baseline can win the first).
    activation_rows = rows[rows["probe"].isin([*ACTIVATION_PROBES, "position_baseline"])]
    cells = pd.concat([best_probe_cells(rows).assign(family="any"),
                       best_probe_cells(activation_rows).assign(family="activations")], ignore_index=True)
    store.replace_slice("scaling_summary", cells)
    table = markdown_matrix(rows)
    activation_table = markdown_matrix(activation_rows)
    png = matrix_png(activation_rows)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report = (f"# Scaling summary\n\nGenerated {stamp} by run {context.run_id}.\n\n## Best probe of any kind\n\n"
              f"{table}\n\n## Best activation probe\n\n{activation_table}\n")
    atomic_write_text(storage_path("reports", "scaling_summary.md"), report)
    atomic_write_bytes(storage_path("reports", "scaling_summary.png"), png)
    context.log.info("\n" + table + "\n\n" + activation_table)
    return dg.MaterializeResult(metadata={
        "table": dg.MetadataValue.md(table),
        "activation_table": dg.MetadataValue.md(activation_table),
        "plot": dg.MetadataValue.md(_png_markdown(png)),
        "report_path": dg.MetadataValue.path(str(storage_path("reports", "scaling_summary.md"))),
        "n_cells": len(cells),
    })


def _png_markdown(png: bytes) -> str:
    import base64

    return f"![scaling summary](data:image/png;base64,{base64.b64encode(png).decode()})"
