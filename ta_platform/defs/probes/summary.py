"""scaling_summary: the model x setting matrix as a DuckDB table, markdown, PNG and report files.

Built by a factory because it reads the gate's checks so far (for the report's PENDING line), which
needs every gated check key (only ``definitions.py`` knows them all). The release gate, an asset
check on this asset (``defs/gate/checks.py``), re-stamps the report with the final verdict.

One truth about the gate: this asset's metadata carries no verdict (a verdict recorded here would
outlive the gate's run that replaces it); it points at the ``release_gate`` check instead. Its
headline numbers are FLOAT metadata with stable keys (``<model>/<setting>/margin_position`` ...), so
the UI's Plots tab follows them across materialisations.
"""

import base64
import json
from collections.abc import Sequence

import dagster as dg
import pandas as pd

from ta_platform.common.hashing import stable_json_hash
from ta_platform.common.paths import storage_path
from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.probes.assets import ALL_PROBES, probes_dir
from ta_platform.defs.probes.settings import ProbeSettings
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.defs.shared import GATED_ASSET, activations_root, current_gate_verdict
from ta_platform.defs.summary_metadata import (
    GATE_POINTER_TEXT,
    cell_floats,
    duckdb_table_metadata,
    gate_pointer,
    stronger_baseline_headline,
)
from ta_platform.store import artifacts


def build_scaling_summary(gated_keys: Sequence[dg.AssetCheckKey]) -> dg.AssetsDefinition:
    upstream_keys = [key for key in gated_keys if key.asset_key != dg.AssetKey(GATED_ASSET)]

    @dg.asset(name=GATED_ASSET, group_name="probes", deps=[ALL_PROBES, "probe_tripwires", "cell_tripwire_status"],
              kinds={"duckdb", "markdown"})
    def scaling_summary(context: dg.AssetExecutionContext, metadata_store: MetadataStoreResource,
                        probe_settings: ProbeSettings, compute: ComputeResource) -> dg.MaterializeResult:
        """Per model x setting: the layer and probe chosen on validation, its test PR-AUC beside the
        position and text baselines, the seed-averaged margins with intervals over test problems, the
        scheme and number of test problems and tripwires; the verdict is the release_gate check's."""
        from ta_platform.studies.activation_slices import activation_partitions
        from ta_platform.studies.anchor_probes import config_hash
        from ta_platform.studies.anchor_summary import (
            averaged_text,
            gate_line,
            load_current_seeds,
            summary_cells,
            write_reports,
        )

        current_hash = config_hash(probe_settings.probe_config())
        registry = compute.registry()
        fingerprints = {f"{model}/{layer}": json.loads((folder / "manifest.json").read_text()).get("fingerprint", "")
                        for model, layer, folder in activation_partitions(activations_root()) if model in registry}
        labels = pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS))
        results = load_current_seeds(probes_dir(), current_hash, fingerprints, labels)
        if not results.seeds:
            raise ValueError(f"no probe seeds under the current config {current_hash} on the current activations "
                             f"({'; '.join(results.excluded) or 'none materialised'}): materialise probes")
        store = metadata_store.store()
        cells = summary_cells(results, store.read_table("cell_tripwire_status"),
                              n_resamples=probe_settings.bootstrap_resamples, config_hash=current_hash)
        verdict, n_checks = current_gate_verdict(context.instance, upstream_keys)
        gate = gate_line(verdict, n_checks, pending=True)
        table = cells.assign(gate=GATE_POINTER_TEXT)  # the verdict lives on the release_gate check
        store.replace_slice("scaling_summary", table)
        averaged = averaged_text(results, current_hash)
        report, png = write_reports(cells, gate, averaged, context.run_id)  # files: PENDING until the gate re-stamps
        context.log.info(report)
        # the UI's copies point at the check instead: a PENDING kept in this materialisation would
        # contradict the verdict the gate records beside it
        from ta_platform.probing.report import matrix_png

        pointer = f"{GATE_POINTER_TEXT} (Checks tab)"
        report, png = report.replace(f"**Release gate: {gate}**", f"**Release gate: {pointer}**"), matrix_png(cells, pointer)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(stable_json_hash(cells.round(10).to_dict("records"))),
            metadata={
                **gate_pointer(GATED_ASSET), "averaged": averaged, "n_cells": len(cells),
                **cell_floats(cells, ("model_key", "setting"), ("margin_position", "margin_text", "probe_pr_auc")),
                **stronger_baseline_headline(cells, ("model_key", "setting"),
                                             "test PR-AUC margin over the stronger baseline"), **duckdb_table_metadata(store, "scaling_summary"),
                "report": dg.MetadataValue.md(report),
                "plot": dg.MetadataValue.md(f"![scaling summary](data:image/png;base64,{base64.b64encode(png).decode()})"),
                "report_path": dg.MetadataValue.path(str(storage_path("reports", "scaling_summary.md"))),
                "html_report": dg.MetadataValue.path(str(storage_path("reports", "index.html"))),
            })

    return scaling_summary
