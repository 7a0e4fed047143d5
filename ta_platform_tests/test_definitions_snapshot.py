"""The whole asset graph under review: a committed snapshot of the code location's definitions.

Asset keys, groups, partitions, dependencies, checks (and whether they block), jobs with the assets they
select, and the stages of the main job and of each ``--study``: any change to the graph shows as a diff
in review (as dagster-open-platform does). The snapshot is built in a fresh interpreter with no ``TA_*``
or ``DAGSTER_*`` variables, so the partitions come from the packaged default registry, not the caller's.

Regenerate after an intended change (one command)::

    TA_UPDATE_SNAPSHOTS=1 python -m pytest -q ta_platform_tests/test_definitions_snapshot.py
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
UPDATE_ENV = "TA_UPDATE_SNAPSHOTS"


def graph_snapshot() -> dict:
    """The definitions as plain, sorted JSON-able data."""
    import dagster as dg

    from ta_platform import definitions as d

    graph = d.defs.resolve_asset_graph()

    def partitions(key: dg.AssetKey) -> dict | None:
        definition = graph.get(key).partitions_def
        if definition is None:
            return None
        return {"type": type(definition).__name__, "keys": list(definition.get_partition_keys())}

    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "partitions": partitions(key),
            "checks": sorted(check.name for check in node.check_keys),
        }
    checks = {}
    for check in d.all_checks:
        for spec in check.check_specs:
            checks[spec.key.to_user_string()] = {"blocking": spec.blocking}
    jobs = {}
    for job in d.defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue  # Dagster's implicit asset job
        jobs[job.name] = {
            "assets": sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys),
            "checks": sorted(key.to_user_string() for key in job.asset_layer.asset_graph.asset_check_keys),
        }
    stages = {name: [f"{stage.name}:{stage.job_name}" for stage in study]
              for name, study in {"main": d.MAIN_STAGES, **d.STUDY_STAGES}.items()}
    return {"assets": assets, "checks": dict(sorted(checks.items())), "jobs": dict(sorted(jobs.items())),
            "stages": dict(sorted(stages.items())),
            "study_checks": {name: [key.to_user_string() for key in keys]
                             for name, keys in sorted(d.STUDY_CHECK_KEYS.items())}}


def _render() -> str:
    """The snapshot text, built in a clean interpreter (no TA_/DAGSTER_ variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TA_", "DAGSTER_"))}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([sys.executable, "-m", "ta_platform_tests.test_definitions_snapshot"], env=env,
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def current() -> str:
    return _render()


def test_definitions_match_the_committed_snapshot(current):
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}: run with {UPDATE_ENV}=1 to write it"
    diff = "".join(difflib.unified_diff(SNAPSHOT.read_text().splitlines(True), current.splitlines(True),
                                        "snapshots/definitions.json (committed)", "definitions (now)"))
    assert not diff, ("the asset graph changed; review the diff, then regenerate with "
                      f"{UPDATE_ENV}=1 python -m pytest -q ta_platform_tests/test_definitions_snapshot.py\n{diff}")


def test_every_study_builds_what_it_reads(current):
    """Each ``--study`` runs, before its own stages, the stages of the assets its assets depend on: the
    OOD study reads the preference study's outputs, so its stages come after the preference stages."""
    data = json.loads(current)
    assert {"task_pool", "pairwise_preferences", "thurstonian_utilities"} <= set(data["assets"]["ood_prompt_set"]["deps"])
    for study, stages in data["stages"].items():
        built: set[str] = set()
        for stage in stages:
            job = data["jobs"][stage.split(":")[1]]
            for asset in job["assets"]:
                missing = [dep for dep in data["assets"][asset]["deps"]
                           if dep not in built and dep not in job["assets"]]
                assert not missing, f"--study {study}: stage {stage} builds {asset}, which reads {missing} " \
                                    "that no earlier stage of the study builds"
            built.update(job["assets"])


if __name__ == "__main__":
    print(json.dumps(graph_snapshot(), indent=1, sort_keys=True))
