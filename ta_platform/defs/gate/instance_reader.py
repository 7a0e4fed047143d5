"""Collect the latest evaluation of each asset check from a Dagster instance."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ta_platform.common.release_gate import CheckEvaluation

_STATUS = {
    AssetCheckExecutionRecordStatus.SUCCEEDED: "passed",
    AssetCheckExecutionRecordStatus.FAILED: "failed",
    AssetCheckExecutionRecordStatus.PLANNED: "planned",
}


def latest_evaluations(instance: dg.DagsterInstance, check_keys) -> list[CheckEvaluation]:
    evaluations = []
    for key in sorted(check_keys, key=lambda k: k.to_user_string()):
        record = instance.get_latest_asset_check_evaluation_record(key)
        name = key.to_user_string()
        if record is None:
            evaluations.append(CheckEvaluation(name, "missing"))
            continue
        status = _STATUS.get(record.status, str(record.status))
        severity, reason = "ERROR", ""
        evaluation = record.evaluation
        # a planned-but-never-run check (its step failed or was skipped) has no severity or result
        if evaluation is not None and hasattr(evaluation, "severity"):
            severity = evaluation.severity.value
            meta = evaluation.metadata or {}
            for field_name in ("reason_code", "summary"):
                if field_name in meta:
                    reason = str(meta[field_name].value)
                    break
            if status == "passed" and not evaluation.passed:
                status = "failed"
        evaluations.append(CheckEvaluation(name, status, severity, record.run_id, reason))
    return evaluations
