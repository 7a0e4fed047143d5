"""A SIGKILL in any stage of the main job, then a rerun: it completes, the gate passes, and every output
equals an uninterrupted run's.

Every stage of the main job is a parameter (data, activations, prompts, probes, tripwires, summary,
each plugged-in study's stages, the gate). The kill lands while that stage's run has a step in
progress (its STEP_START is in the instance), as an OOM killer or a closed laptop would: the whole
process group, no clean-up. What is compared: every declared metadata table (all rows, exactly;
``fit_seconds`` is a timing), every activation partition's rows and index, and the probes' predictions.

CI budget: one stage per CI run, rotating with the date (so the whole set is covered over a few
days); ``TA_KILL_STAGES=all`` (or a comma list) runs them all, e.g. before a release.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ta_platform_tests.e2e import REPO, project_env, run_cli

WAIT_S = 1800
VOLATILE_COLUMNS = {"fit_seconds"}
MAIN = ["ta-platform", "materialize"]
ENV = {"TA_DATA_SOURCE": "embedded", "TA_MODEL_PROFILE": "tiny"}


def _main_stages() -> list[tuple[str, str]]:
    from ta_platform.definitions import MAIN_STAGES

    return [(stage.name, stage.job_name) for stage in MAIN_STAGES]


STAGES = _main_stages()


def _selected(stages: list[tuple[str, str]], wanted: str, today: int) -> list[tuple[str, str]]:
    """``wanted``: "all", a comma list of stage names, or "" for the stage of the day ``today``."""
    if wanted == "all":
        return stages
    if wanted:
        names = set(wanted.split(","))
        return [stage for stage in stages if stage[0] in names]
    return [stages[today % len(stages)]]


SELECTED = _selected(STAGES, os.environ.get("TA_KILL_STAGES", ""), datetime.date.today().toordinal())


def _outputs(storage: Path) -> dict[str, object]:
    """Every declared metadata table (sorted, timings dropped), partitions' rows and index, predictions."""
    from ta_platform.extraction.store import load_partition
    from ta_platform.store.metadata_store import MetadataStore
    from ta_platform.store.tables import TABLES

    found: dict[str, object] = {}
    store = MetadataStore(storage / "metadata.duckdb")
    existing = set(store.query("SELECT table_name FROM information_schema.tables")["table_name"])
    for name in sorted(set(TABLES) & existing):
        frame = store.read_table(name)
        frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE_COLUMNS])
        keys = [c for c in frame.columns if frame[c].dtype == object or frame[c].dtype.kind in "iub"]
        found[f"table:{name}"] = frame.sort_values(keys or list(frame.columns)).reset_index(drop=True)
    for manifest in sorted((storage / "activations").glob("*/*/manifest.json")):
        partition = load_partition(manifest.parent)
        found[f"partition:{manifest.parent.relative_to(storage)}"] = np.asarray(partition.embeddings)
        found[f"index:{manifest.parent.relative_to(storage)}"] = partition.index
    for path in sorted((storage / "probes").glob("seed_*/predictions.parquet")):
        found[str(path.relative_to(storage))] = pd.read_parquet(path)
    return found


def _outputs_of(storage: Path) -> dict[str, object]:
    """Read ``storage``'s outputs through the platform's own readers, in a process pointed at it."""
    saved = {k: os.environ.get(k) for k in ("TA_STORAGE",)}
    os.environ["TA_STORAGE"] = str(storage)
    try:
        return _outputs(storage)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, object]:
    storage = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli(MAIN, project_env(storage, **ENV), timeout=WAIT_S)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return _outputs_of(storage)


def _step_in_progress(instance: dg.DagsterInstance, job_name: str) -> str | None:
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name,
                                                             statuses=[dg.DagsterRunStatus.STARTED]))
    for record in records:
        if instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START):
            return record.dagster_run.run_id
    return None


def _kill_during(env: dict[str, str], storage: Path, job_name: str) -> str:
    """Start the main job, SIGKILL its process group while ``job_name`` has a step in progress."""
    proc = subprocess.Popen(MAIN, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    instance = dg.DagsterInstance.from_config(str(storage / "dagster_home"))
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            run_id = _step_in_progress(instance, job_name)
            if run_id:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return run_id
            assert proc.poll() is None, f"the main job ended before {job_name} ran:\n{''.join(lines)[-6000:]}"
            time.sleep(0.1)
        raise AssertionError(f"{job_name} never started within {WAIT_S}s")
    finally:
        instance.dispose()


def _assert_same(actual: object, expected: object, name: str) -> None:
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(actual, expected, check_exact=True, obj=name)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("stage,job_name", SELECTED, ids=[s[0] for s in SELECTED])
def test_kill_mid_stage_then_rerun_completes_with_identical_outputs(stage, job_name, tmp_path, uninterrupted):
    storage = tmp_path / "killed"
    env = project_env(storage, **ENV)
    assert run_cli(["dagster", "instance", "info"], env).returncode == 0  # initialise the instance once
    killed_run = _kill_during(env, storage, job_name)

    rerun = run_cli(MAIN, env, timeout=WAIT_S)
    assert rerun.returncode == 0, rerun.stdout[-6000:] + rerun.stderr[-4000:]
    instance = dg.DagsterInstance.from_config(str(storage / "dagster_home"))
    try:
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE, \
            f"the killed {job_name} run was not marked failed"
    finally:
        instance.dispose()
    gate = run_cli(["ta-platform", "gate"], env)
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]

    actual = _outputs_of(storage)
    assert actual.keys() == uninterrupted.keys(), sorted(set(actual) ^ set(uninterrupted))
    for name, expected in uninterrupted.items():
        _assert_same(actual[name], expected, f"{name} after a kill in stage {stage}")


def test_the_parametrised_set_covers_every_main_stage():
    """The rotation is over the whole main job: no stage can drop out of the set unseen."""
    names = [name for name, _ in STAGES]
    for required in ("data", "activations", "prompts", "probes", "tripwires", "summary", "gate"):
        assert required in names
    assert len(names) == len(set(names))
    rotation = {_selected(STAGES, "", day)[0] for day in range(len(STAGES))}
    assert rotation == set(STAGES), "some stage is never chosen by the daily rotation"
    assert _selected(STAGES, "all", 0) == STAGES
    assert _selected(STAGES, "probes,gate", 0) == [s for s in STAGES if s[0] in ("probes", "gate")]
