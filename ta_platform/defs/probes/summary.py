"""scaling_summary: the model x setting matrix as a DuckDB table, markdown, PNG and a report file;
and the release gate, an asset check on it that reads every other check's latest evaluation."""

import time
from collections.abc import Iterable, Sequence

import dagster as dg
import pandas as pd

from ta_platform.common.atomic import atomic_write_bytes, atomic_write_text
from ta_platform.common.paths import storage_path
from ta_platform.common.release_gate import evaluate_gate
from ta_platform.defs.gate.instance_reader import latest_evaluations
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.probing.report import best_probe_cells, markdown_matrix, matrix_png

GATE_CHECK_NAME = "release_gate"
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


def build_release_gate(gated_keys: Sequence[dg.AssetCheckKey]) -> dg.AssetChecksDefinition:
    """The release-gate check over ``gated_keys``: every other check of the code location.

    Why a factory: the gate must know every check, and only ``definitions.py`` sees them all; it
    passes their keys in, so this module never imports ``ta_platform.definitions`` (which imports it).
    """
    keys = tuple(sorted((key for key in gated_keys if key.name != GATE_CHECK_NAME), key=lambda k: k.to_user_string()))

    @dg.asset_check(asset=scaling_summary, name=GATE_CHECK_NAME,
                    description="Release gate: the latest evaluation of every other check passed (none missing).")
    def release_gate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        verdict, n_checks = current_gate_verdict(context.instance, keys)
        context.log.info(verdict.summary())
        return dg.AssetCheckResult(passed=verdict.passed, metadata={
            "summary": verdict.summary(), "failing": verdict.failing, "missing": verdict.missing,
            "warnings": verdict.warnings, "n_checks": n_checks,
        })

    return release_gate


def gated_check_keys(definitions: Iterable[object]) -> list[dg.AssetCheckKey]:
    """The keys of every check declared by these asset and check definitions, except the gate itself."""
    keys = {key for definition in definitions for key in getattr(definition, "check_keys", ())}
    return sorted((key for key in keys if key.name != GATE_CHECK_NAME), key=lambda k: k.to_user_string())


def current_gate_verdict(instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey]):
    """The gate over ``check_keys`` (the gate itself excluded): (verdict, number of checks)."""
    keys = [key for key in check_keys if key.name != GATE_CHECK_NAME]
    return evaluate_gate(latest_evaluations(instance, keys)), len(keys)
