"""A SIGKILL in any stage of the main job, then a rerun: it completes, the gate passes, and every output
equals an uninterrupted run's.

Every stage of the main job is a parameter (data, activations, prompts, probes, tripwires, summary,
each plugged-in study's stages, the gate). The kill lands while that stage's run has a step in
progress (its STEP_START is in the instance), as an OOM killer or a closed laptop would: the whole
process group, no clean-up. What is compared: every declared metadata table (all rows, exactly;
``fit_seconds`` is a timing), every activation partition's rows and index, and the probes' predictions.

Tiers: the kill cases are in the release battery (``TA_RELEASE_TESTS=1``; two study runs, minutes, per
case): by default one stage per run, rotating with the date; ``TA_KILL_STAGES=all`` (or a comma list)
runs them all, as before a release. CI keeps test_crash_recovery.py (a kill during activations and
during probes) and this file's coverage check.
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
import pytest

from ta_platform_tests.e2e import (
    REPO,
    assert_same_outputs,
    project_env,
    run_cli,
    step_in_progress,
    storage_outputs,
)

WAIT_S = 1800
MAIN = ["ta-platform", "materialize"]
ENV = {"TA_DATA_SOURCE": "embedded", "TA_MODEL_PROFILE": "tiny"}


def _main_stages() -> list[tuple[str, str, list[str]]]:
    """(stage, its job, the command that runs it): the smallest ``--study`` whose stages include it (what
    it needs upstream comes with it), so one CI case costs one study twice, not the whole main job; the
    gate stage runs only in the main job."""
    from ta_platform.definitions import MAIN_STAGES, STUDY_STAGES

    stages = []
    for stage in MAIN_STAGES:
        studies = sorted((len(own), name) for name, own in STUDY_STAGES.items()
                         if stage.name in [s.name for s in own])
        command = [*MAIN, "--study", studies[0][1]] if studies else list(MAIN)
        stages.append((stage.name, stage.job_name, command))
    return stages


STAGES = _main_stages()


def _selected(stages: list, wanted: str, today: int) -> list:
    """``wanted``: "all", a comma list of stage names, or "" for the stage of the day ``today``."""
    if wanted == "all":
        return stages
    if wanted:
        names = set(wanted.split(","))
        return [stage for stage in stages if stage[0] in names]
    return [stages[today % len(stages)]]


SELECTED = _selected(STAGES, os.environ.get("TA_KILL_STAGES", ""), datetime.date.today().toordinal())
_REFERENCES: dict[tuple[str, ...], dict[str, object]] = {}


def uninterrupted(command: list[str], tmp_path_factory) -> dict[str, object]:
    """The outputs of ``command`` run once, uninterrupted, from an empty storage (cached per command)."""
    key = tuple(command)
    if key not in _REFERENCES:
        storage = tmp_path_factory.mktemp("uninterrupted")
        result = run_cli(command, project_env(storage, **ENV), timeout=WAIT_S)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        _REFERENCES[key] = storage_outputs(storage)
    return _REFERENCES[key]


def _kill_during(command: list[str], env: dict[str, str], storage: Path, job_name: str) -> str:
    """Start ``command``, SIGKILL its process group while ``job_name`` has a step in progress."""
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    instance = dg.DagsterInstance.from_config(str(storage / "dagster_home"))
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            run_id = step_in_progress(instance, job_name)
            if run_id:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return run_id
            assert proc.poll() is None, f"the main job ended before {job_name} ran:\n{''.join(lines)[-6000:]}"
            time.sleep(0.1)
        raise AssertionError(f"{job_name} never started within {WAIT_S}s")
    finally:
        instance.dispose()


@pytest.mark.slow
@pytest.mark.release
@pytest.mark.fault
@pytest.mark.outputs_compared
@pytest.mark.parametrize("stage,job_name,command", SELECTED, ids=[s[0] for s in SELECTED])
def test_kill_mid_stage_then_rerun_completes_with_identical_outputs(stage, job_name, command, tmp_path,
                                                                    tmp_path_factory):
    expected = uninterrupted(command, tmp_path_factory)
    storage = tmp_path / "killed"
    env = project_env(storage, **ENV)
    assert run_cli(["dagster", "instance", "info"], env).returncode == 0  # initialise the instance once
    killed_run = _kill_during(command, env, storage, job_name)

    rerun = run_cli(command, env, timeout=WAIT_S)
    assert rerun.returncode == 0, rerun.stdout[-6000:] + rerun.stderr[-4000:]
    instance = dg.DagsterInstance.from_config(str(storage / "dagster_home"))
    try:
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE, \
            f"the killed {job_name} run was not marked failed"
    finally:
        instance.dispose()
    study = command[command.index("--study") + 1] if "--study" in command else None
    gate = run_cli(["ta-platform", "gate", *(["--study", study] if study else [])], env)
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]

    actual = storage_outputs(storage)
    assert_same_outputs(actual, expected, f"after a kill in stage {stage}")


def test_the_parametrised_set_covers_every_main_stage():
    """The rotation is over the whole main job: no stage can drop out of the set unseen; every stage but the
    gate runs under a --study that contains it."""
    names = [name for name, _, _ in STAGES]
    for required in ("data", "activations", "prompts", "probes", "tripwires", "summary", "gate"):
        assert required in names
    assert len(names) == len(set(names))
    rotation = {_selected(STAGES, "", day)[0][0] for day in range(len(STAGES))}
    assert rotation == set(names), "some stage is never chosen by the daily rotation"
    assert _selected(STAGES, "all", 0) == STAGES
    assert all("--study" in command for name, _, command in STAGES if name != "gate")
    assert [s[0] for s in _selected(STAGES, "probes,gate", 0)] == ["probes", "gate"]
