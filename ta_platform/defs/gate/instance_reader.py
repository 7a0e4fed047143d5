"""Collect, for each asset check, the evaluation that belongs to its asset's latest materialisation.

Why "belongs to": a check's latest evaluation can describe data that is gone. Materialise
``probe_tripwires`` (checks pass), then materialise it again in a run whose check step never ran:
the latest evaluation still says "passed" about the old tables. An evaluation counts only when its
target materialisation (the one the check looked at) is the asset's latest; otherwise the check
is reported ``stale``, which the gate treats like ``missing``.

Only public Dagster surface: ``DagsterInstance`` methods and the record's plain attributes; the
status enum is compared by value, never imported from ``dagster._core``.
"""

from __future__ import annotations

import dagster as dg

from ta_platform.common.release_gate import CheckEvaluation

_STATUS = {"SUCCEEDED": "passed", "FAILED": "failed", "PLANNED": "planned"}
REASON_FIELDS = ("reason_code", "summary")
DETAIL_FIELDS = ("detail", "failed_slices", "failing_partitions", "details", "missing", "differing", "offenders")


def latest_evaluations(instance: dg.DagsterInstance, check_keys) -> list[CheckEvaluation]:
    """One ``CheckEvaluation`` per key: passed / failed / planned / stale / missing, with its reason."""
    evaluations = []
    latest_run: dict[dg.AssetKey, str | None] = {}
    for key in sorted(check_keys, key=lambda k: k.to_user_string()):
        name = key.to_user_string()
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record is None:
            evaluations.append(CheckEvaluation(name, "missing"))
            continue
        if key.asset_key not in latest_run:
            event = instance.get_latest_materialization_event(key.asset_key)
            latest_run[key.asset_key] = event.run_id if event is not None else None
        status = _STATUS.get(getattr(record.status, "value", str(record.status)), str(record.status))
        evaluation = record.evaluation
        severity, reason, target_run = "ERROR", "", record.run_id
        # a planned-but-never-run check (its step failed or was skipped) has no severity or result
        if evaluation is not None and hasattr(evaluation, "severity"):
            severity = evaluation.severity.value
            meta = evaluation.metadata or {}
            reason = next((str(meta[f].value) for f in REASON_FIELDS if f in meta), "")
            if status == "passed" and not evaluation.passed:
                status = "failed"
            detail = next((meta[f].value for f in DETAIL_FIELDS if f in meta and meta[f].value), None)
            if detail is not None and status != "passed":  # the why, as the check wrote it
                reason = f"{reason}: {str(detail)[:400]}"
            if evaluation.target_materialization_data is not None:
                target_run = evaluation.target_materialization_data.run_id
        if latest_run[key.asset_key] is None:
            status, reason = "missing", "asset never materialised"
        elif status in ("passed", "failed") and target_run != latest_run[key.asset_key]:
            reason = (f"evaluated on run {target_run[:8]}, but the asset's latest materialisation is run "
                      f"{latest_run[key.asset_key][:8]}")
            status = "stale"
        evaluations.append(CheckEvaluation(name, status, severity, record.run_id, reason))
    return evaluations


IN_FLIGHT = ("NOT_STARTED", "QUEUED", "STARTING", "STARTED", "CANCELING")


def in_flight_evaluations(instance: dg.DagsterInstance, check_keys, own_run_id: str | None = None) -> dict[str, list[str]]:
    """run id -> the gated checks that run has planned and not yet evaluated (runs still in progress only)."""
    waiting: dict[str, list[str]] = {}
    for key in check_keys:
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record is None or getattr(record.status, "value", str(record.status)) != "PLANNED":
            continue
        if record.run_id == own_run_id:
            continue
        run = instance.get_run_by_id(record.run_id)
        if run is not None and run.status.value in IN_FLIGHT:
            waiting.setdefault(record.run_id, []).append(key.to_user_string())
    return waiting


def wait_for_in_flight_evaluations(instance: dg.DagsterInstance, check_keys, *, own_run_id: str | None = None,
                                   log=print, timeout_s: float = 3600.0, poll_s: float = 2.0) -> None:
    """Wait while another run (the UI's, a second command's) is re-evaluating gated checks.

    Why: reading the gate while another run has re-materialised an asset and not yet run its checks
    reads those checks as "planned" = missing, a false red (two `--study needle` commands two seconds
    apart did exactly that). The gate waits for such runs, naming them, up to ``timeout_s``; a run
    killed meanwhile is failed by the next command's recovery (``run_recovery``), and after the timeout
    its checks count as missing, as before.
    """
    import time

    deadline = time.monotonic() + timeout_s
    announced: set[str] = set()
    while time.monotonic() < deadline:
        waiting = in_flight_evaluations(instance, check_keys, own_run_id)
        if not waiting:
            return
        for run_id, checks in waiting.items():
            if run_id not in announced:
                run = instance.get_run_by_id(run_id)
                job = run.job_name if run is not None else "?"
                log(f"[gate] waiting for run {run_id[:8]} ({job}) to evaluate {len(checks)} gated check(s): "
                    f"{', '.join(checks[:3])}{' ...' if len(checks) > 3 else ''}")
                announced.add(run_id)
        time.sleep(poll_s)
