"""label_verification: the dataset's importances recomputed from one trace's rollouts, and its check.

Thin: the choice of trace, the recomputation and the verdict are in
``ta_platform.studies.label_verification`` (science in ``ta_platform.anchors.importance``); this
module records the per-chunk table (DuckDB ``label_verification``, Parquet), a report and the verdict,
and turns the verdict into a blocking check that feeds the release gate.
"""

import json

import dagster as dg
import pandas as pd

from ta_platform.common.atomic import atomic_write_text
from ta_platform.common.hashing import stable_json_hash
from ta_platform.common.parquet_io import write_parquet
from ta_platform.common.paths import storage_path
from ta_platform.defs.resources import MetadataStoreResource, RolloutsResource
from ta_platform.store import artifacts

GROUP = "thought_anchors"
VERDICT_FILE = "label_verification.json"
TABLE_FILE = "label_verification.parquet"
TABLE_COLUMNS = ["trace_key", "chunk_idx", "n_rollouts", "n_failed", "n_dissimilar", "n_removed_mismatch",
                 "min_similarity", "accuracy_recomputed", "accuracy_labelled", "accuracy_abs_diff",
                 "counterfactual_recomputed", "counterfactual_labelled", "counterfactual_abs_diff",
                 "resampling_recomputed", "resampling_labelled", "resampling_abs_diff"]


class LabelVerificationSettings(dg.ConfigurableResource):
    """Which trace to verify and how closely. Empty problem/model/split: the default trace (lowest
    problem id of deepseek-r1-distill-qwen-14b's correct split, the one the embedded data ships
    rollouts for). ``verify_tolerance``: the largest mean |difference| per importance;
    ``verify_chunk_tolerance``: the largest |difference| of any one chunk. ``require_rollouts``:
    a source without rollouts fails the gate (else it is a visible, non-blocking WARN)."""

    verify_problem: str = ""
    verify_model: str = ""
    verify_split: str = ""
    verify_tolerance: float = 0.01
    verify_chunk_tolerance: float = 0.1
    require_rollouts: bool = False

    def config(self):
        from ta_platform.studies.label_verification import VerifyConfig

        return VerifyConfig(problem=self.verify_problem, model=self.verify_model, split=self.verify_split,
                            tolerance=self.verify_tolerance, chunk_tolerance=self.verify_chunk_tolerance)


def _verdict_path():
    return artifacts.thought_anchor_file(VERDICT_FILE)


def _report(result, summary: dict) -> str:
    lines = [f"# Label verification: {result.status}", "", f"- trace: `{result.trace_key}`",
             f"- reason: {result.reason}", f"- seconds: {result.seconds:.1f}"]
    for name, value in summary.get("mean_abs_diff", {}).items():
        lines.append(f"- mean |{name} difference|: {value:.3g} (max {summary['max_abs_diff'][name]:.3g})")
    if len(result.table):
        shown = result.table.sort_values("counterfactual_abs_diff", ascending=False, na_position="first")
        lines += ["", "Chunks, largest counterfactual difference first:", "",
                  shown[TABLE_COLUMNS[1:]].head(40).to_markdown(index=False, floatfmt=".4g")]
    return "\n".join(lines) + "\n"


@dg.asset(group_name=GROUP, kinds={"duckdb", "parquet"})
def label_verification(
    context: dg.AssetExecutionContext, rollouts: RolloutsResource, metadata_store: MetadataStoreResource,
    verification: LabelVerificationSettings,
) -> dg.MaterializeResult:
    """Counterfactual and resampling importance of one trace recomputed from its
    ``chunk_<i>/solutions.json`` rollouts (MiniLM similarity < 0.8 = dissimilar) against
    ``chunks_labeled.json``: one row per chunk. Rollouts absent from the source: "not_verifiable"."""
    from ta_platform.extraction.sentence_encoder import MiniLMEncoder
    from ta_platform.rollouts.sources import source_from_spec
    from ta_platform.studies.label_verification import verify_trace

    source = source_from_spec(rollouts.source_spec())
    result = verify_trace(source, verification.config(), MiniLMEncoder.load)
    context.log.info(f"label verification of {result.trace_key}: {result.status} in {result.seconds:.1f}s; "
                     f"{result.reason}")
    table = result.table.assign(trace_key=result.trace_key)[TABLE_COLUMNS] if len(result.table) else \
        pd.DataFrame({c: pd.Series(dtype=float if c not in ("trace_key",) else str) for c in TABLE_COLUMNS})
    verdict = result.verdict
    summary = {
        "status": result.status, "reason": result.reason, "trace_key": result.trace_key,
        "seconds": round(result.seconds, 2), "require_rollouts": verification.require_rollouts,
        "mean_abs_diff": verdict.mean_abs_diff if verdict else {},
        "max_abs_diff": verdict.max_abs_diff if verdict else {},
        "chunks_over_tolerance": verdict.chunks_over_tolerance if verdict else {},
        "not_recomputable": verdict.not_recomputable if verdict else [],
        "n_rollouts": int(table["n_rollouts"].sum()) if len(table) else 0,
        "provenance": result.provenance,
    }
    write_parquet(table, artifacts.thought_anchor_file(TABLE_FILE), result.provenance)
    store = metadata_store.store()
    store.replace_slice("label_verification", table)
    metadata_store.record_faults("verify", result.faults)
    report = _report(result, summary)
    atomic_write_text(storage_path("reports", "label_verification.md"), report)
    atomic_write_text(_verdict_path(), json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(stable_json_hash(summary | {"seconds": None})),
        metadata={
            "status": result.status, "reason": result.reason, "trace": result.trace_key,
            "seconds": round(result.seconds, 2), "n_chunks": len(table), "n_rollouts": summary["n_rollouts"],
            **{f"mean_abs_diff_{k}": v for k, v in summary["mean_abs_diff"].items()},
            **{f"max_abs_diff_{k}": v for k, v in summary["max_abs_diff"].items()},
            "report": dg.MetadataValue.md(report),
            "provenance": result.provenance,
        },
    )


@dg.asset_check(asset=label_verification, blocking=True,
                description="The dataset's importances are what its rollouts give (mean and per-chunk "
                            "|difference| within tolerance); rollouts absent: WARN unless required.")
def labels_reproduced_from_rollouts(verification: LabelVerificationSettings) -> dg.AssetCheckResult:
    summary = json.loads(_verdict_path().read_text())
    status = summary["status"]
    severity = dg.AssetCheckSeverity.ERROR
    if status == "not_verifiable" and not verification.require_rollouts:
        severity = dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=status == "verified", severity=severity,
        description=f"{status}: {summary['reason']}",
        metadata={"status": status, "reason": summary["reason"], "trace": summary["trace_key"],
                  "tolerance": verification.verify_tolerance, "chunk_tolerance": verification.verify_chunk_tolerance,
                  **{f"mean_abs_diff_{k}": v for k, v in summary["mean_abs_diff"].items()},
                  "chunks_over_tolerance": summary["chunks_over_tolerance"],
                  "not_recomputable": summary["not_recomputable"]},
    )
