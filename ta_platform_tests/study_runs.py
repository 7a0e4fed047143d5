"""``ta-platform materialize --study NAME`` from an empty storage, and what it left behind, read from the
project (not its printout): the runs recorded in its Dagster instance and the gate ``ta-platform gate
--json`` reports.

``study_alone`` runs each study at most once per test process: the standalone test, the function-tag
study's test and the report's browser test need the same runs, and each costs minutes.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ta_platform_tests.e2e import ONE_TINY_MODEL_REGISTRY, project_env, run_cli

# Seeds kept to one where a study has a seed stage: what is tested is the wiring, not the statistics.
STUDY_ARGUMENTS = {"anchors": ["--seeds", "0...0"], "backtracking": ["--seeds", "0...0"],
                   "needle": ["--seeds", "0...0"]}


@dataclass(frozen=True)
class StudyRun:
    storage: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess


_RUNS: dict[str, StudyRun] = {}


def study_alone(tmp_path_factory, study: str) -> StudyRun:
    """``ta-platform materialize --study NAME`` in a fresh storage with one random-weight model at one layer."""
    if study not in _RUNS:
        root = tmp_path_factory.mktemp(f"study_{study}")
        (root / "models.toml").write_text(ONE_TINY_MODEL_REGISTRY)
        storage = root / "storage"
        env = project_env(storage, TA_DATA_SOURCE="embedded", TA_MODEL_REGISTRY=str(root / "models.toml"))
        result = run_cli(["ta-platform", "materialize", "--study", study, *STUDY_ARGUMENTS.get(study, [])], env,
                         timeout=1500)
        _RUNS[study] = StudyRun(storage, env, result)
    return _RUNS[study]


def job_statuses(storage: Path) -> dict[str, str]:
    """Job name -> status of its latest run in the project's instance."""
    with dg.DagsterInstance.from_config(str(storage / "dagster_home")) as instance:
        runs = sorted(instance.get_runs(), key=lambda run: instance.get_run_record_by_id(run.run_id).create_timestamp)
        return {run.job_name: run.status.value for run in runs}


def study_gate(env: dict[str, str], study: str) -> dict:
    """``ta-platform gate --study NAME --json``: passed, failing, missing, warnings."""
    result = run_cli(["ta-platform", "gate", "--study", study, "--json"], env)
    return json.loads(result.stdout.strip().splitlines()[-1])
