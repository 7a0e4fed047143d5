"""What a ``ta-platform materialize --study NAME`` left behind, read from the project (not its printout):
the runs recorded in its Dagster instance and the gate verdict ``ta-platform gate --json`` reports."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from ta_platform_tests.e2e import run_cli


def job_statuses(storage: Path) -> dict[str, str]:
    """Job name -> status of its latest run in the project's instance."""
    with dg.DagsterInstance.from_config(str(storage / "dagster_home")) as instance:
        runs = sorted(instance.get_runs(), key=lambda run: instance.get_run_record_by_id(run.run_id).create_timestamp)
        return {run.job_name: run.status.value for run in runs}


def study_gate(env: dict[str, str], study: str) -> dict:
    """``ta-platform gate --study NAME --json``: passed, failing, missing, warnings."""
    result = run_cli(["ta-platform", "gate", "--study", study, "--json"], env)
    return json.loads(result.stdout.strip().splitlines()[-1])
