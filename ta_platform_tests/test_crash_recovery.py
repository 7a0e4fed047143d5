"""A killed run never blocks the next one: dead runs are failed and their pool slots freed.

Two layers. Fast tests plant the orchestration state a SIGKILLed ``ta-platform materialize`` leaves
in a real Dagster instance (a STARTED run holding the ``gpu`` slot, runner process gone) and check
what ``ta_platform.defs.run_recovery`` frees and what it must leave alone (a live runner, a pid now
used by another process, a run on another host or from the UI). The slow test kills the real main
job with SIGKILL during activations, reruns it and kills it during probes, reruns it to the end, and
compares its outputs with an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ta_platform.common.instance import prepare_dagster_home
from ta_platform.common.process_identity import DEAD, ProcessIdentity
from ta_platform.defs.run_recovery import IN_PROGRESS, PoolWaitWatch, StageGuard, pool_use, recover_dead_runs
from ta_platform_tests.e2e import ONE_TINY_MODEL_REGISTRY, REPO, project_env, run_cli, step_in_progress

pytestmark = pytest.mark.fault

GPU = "gpu"
STEP = "sentence_activations"


@pytest.fixture
def instance(tmp_path):
    """A real instance with the project's dagster.yaml (pools default to one slot)."""
    home = prepare_dagster_home(tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as inst:
        inst.event_log_storage.set_concurrency_slots(GPU, 1)
        yield inst


def _dead_identity() -> ProcessIdentity:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    identity = ProcessIdentity.of(proc.pid)
    proc.kill()
    proc.wait()
    return identity


def _run(instance, tags: dict[str, str], status=dg.DagsterRunStatus.STARTED, claim: bool = True) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="activations_job", run_id=run_id, status=status, tags=tags))
    if claim:
        assert instance.event_log_storage.claim_concurrency_slot(GPU, run_id, STEP, 0).is_claimed
    return run_id


def _holders(instance) -> set[str]:
    return set(pool_use(instance, [GPU]).claimed)


def test_a_dead_runner_is_detected_even_before_it_is_reaped():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    identity = ProcessIdentity.of(proc.pid)
    assert identity.state()[0] == "alive"
    proc.kill()
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        assert identity.state()[0] == DEAD
    finally:
        proc.wait()
    assert identity.state() == (DEAD, f"process {proc.pid} on {socket.gethostname()} is gone")


def test_dead_run_holding_the_gpu_slot_is_marked_failed_and_its_slot_freed(instance):
    dead = _run(instance, _dead_identity().as_tags())
    assert _holders(instance) == {dead}
    recoveries = recover_dead_runs(instance)
    assert [r.run_id for r in recoveries] == [dead]
    assert recoveries[0].marked_failed and recoveries[0].pools == (GPU,)
    assert "is gone" in recoveries[0].describe() and dead in recoveries[0].describe()
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    assert _holders(instance) == set()
    # the slot is usable again, and a second pass finds nothing more to do
    live = _run(instance, ProcessIdentity.current().as_tags())
    assert recover_dead_runs(instance) == [] and _holders(instance) == {live}


def test_a_recycled_pid_does_not_keep_a_dead_run_alive(instance):
    me = ProcessIdentity.current()
    stale = ProcessIdentity(pid=me.pid, host=me.host, started=me.started + "-earlier")
    run_id = _run(instance, stale.as_tags())
    [recovery] = recover_dead_runs(instance)
    assert recovery.run_id == run_id and "newer process" in recovery.reason


def test_live_foreign_and_untagged_runs_are_left_alone(instance):
    live = _run(instance, ProcessIdentity.current().as_tags())
    other_host = _run(instance, ProcessIdentity(pid=1, host="elsewhere.invalid").as_tags(), claim=False)
    from_ui = _run(instance, {}, claim=False)
    assert recover_dead_runs(instance) == []
    for run_id in (live, other_host, from_ui):
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    assert _holders(instance) == {live}


def test_a_run_killed_between_being_granted_a_slot_and_taking_it_is_freed(instance):
    dead = _run(instance, _dead_identity().as_tags(), claim=False)
    instance.event_log_storage.add_pending_step(GPU, dead, STEP, should_assign=True)  # granted, not taken
    other = _run(instance, ProcessIdentity.current().as_tags(), claim=False)  # alive
    assert not instance.event_log_storage.claim_concurrency_slot(GPU, other, STEP, 0).is_claimed  # blocked by it
    [recovery] = recover_dead_runs(instance)
    assert recovery.run_id == dead and recovery.pools == (GPU,)
    assert instance.event_log_storage.claim_concurrency_slot(GPU, other, STEP, 0).is_claimed


def test_slots_of_ended_or_deleted_runs_are_freed_without_touching_their_status(instance):
    ended = _run(instance, {}, status=dg.DagsterRunStatus.CANCELED)
    recoveries = recover_dead_runs(instance)
    assert [(r.run_id, r.marked_failed) for r in recoveries] == [(ended, False)]
    assert instance.get_run_by_id(ended).status == dg.DagsterRunStatus.CANCELED
    orphan = str(uuid.uuid4())  # a slot whose run record was deleted
    assert instance.event_log_storage.claim_concurrency_slot(GPU, orphan, STEP, 0).is_claimed
    assert [r.status for r in recover_dead_runs(instance)] == ["DELETED"]
    assert _holders(instance) == set()


def test_a_pool_wait_is_reported_each_minute_with_the_holder_then_unblocked_when_it_dies(instance):
    holder = _run(instance, ProcessIdentity.current().as_tags())  # alive: this test process
    waiter = _run(instance, {}, claim=False)
    assert not instance.event_log_storage.claim_concurrency_slot(GPU, waiter, STEP, 0).is_claimed
    lines: list[str] = []
    watch = PoolWaitWatch(instance, waiter, [GPU], lines.append, label="[activations] ")
    assert watch.check(now=0.0) is None and watch.check(now=59.0) is None
    line = watch.check(now=61.0)
    assert line and holder in line and "alive" in line and "waited 61s" in line and lines == [line]
    assert watch.check(now=90.0) is None  # once a minute, not every poll
    assert watch.check(now=121.0)
    events = instance.all_logs(waiter, of_type=dg.DagsterEventType.ENGINE_EVENT)
    assert [e.message for e in events][-1].startswith("[activations] run")  # also in the run's event log
    # the holder's runner dies while we wait: the next poll frees it and our queued step gets the slot
    instance.add_run_tags(holder, _dead_identity().as_tags())
    assert watch.check(now=130.0) is None
    assert any(holder in entry and "freed" in entry for entry in lines)
    assert pool_use(instance, [GPU]).waiting == {}  # our queued step was assigned the freed slot...
    assert instance.event_log_storage.claim_concurrency_slot(GPU, waiter, STEP, 0).is_claimed  # ...and takes it
    assert _holders(instance) == {waiter}


def test_the_stage_guard_names_a_busy_pool_before_the_stage_starts(instance):
    from ta_platform.definitions import defs

    holder = _run(instance, ProcessIdentity.current().as_tags())
    dead = _run(instance, _dead_identity().as_tags(), claim=False)
    lines: list[str] = []
    StageGuard(instance, lines.append).before("[activations] ", defs.resolve_job_def("activations_job"))
    assert any(dead in line and "marked FAILED" in line for line in lines)
    assert any("pool gpu is busy" in line and holder in line for line in lines)


# --- the real main job, killed with SIGKILL and rerun ------------------------------------------------

# One tiny model, one layer: the smallest registry that exercises the gpu pool (CI has 2 cores).
REGISTRY = ONE_TINY_MODEL_REGISTRY
MAIN = ["ta-platform", "materialize", "--study", "anchors", "--seeds", "0...1"]  # the study with every stage kind
WAIT_S = 900  # a guard against a hang, never a timing assertion


class _Command:
    """The main job as a process group whose stdout lines are collected as they come."""

    def __init__(self, env: dict[str, str]):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(MAIN, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_until(self, condition, what: str) -> object:
        """Poll ``condition()`` until it returns something truthy; fail if the command ends first."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            found = condition()
            if found:
                return found
            assert self.proc.poll() is None, f"the command ended before {what}:\n{self.output[-6000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no {what} within {WAIT_S}s:\n{self.output[-6000:]}")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the whole process group, as an OOM killer would
        self.proc.wait()
        self._reader.join(timeout=30)


def _open_instance(storage: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(storage / "dagster_home"))


def _mid_extraction(instance: dg.DagsterInstance, storage: Path) -> str | None:
    """The run whose ``sentence_activations`` step holds the gpu slot and has written part of its
    output (killed mid-step, not at its start)."""
    for run_id, by_pool in pool_use(instance, [GPU]).claimed.items():
        if "sentence_activations" in by_pool.get(GPU, []) and any(
                p.is_file() for p in (storage / "activations").rglob("*")):
            return run_id
    return None


def _outputs(storage: Path) -> dict[str, object]:
    """What an interrupted run must reproduce: activation arrays and their row index, probe
    predictions and weights, and the probe metric table, all exactly."""
    from ta_platform.store.metadata_store import MetadataStore

    found: dict[str, object] = {}
    from ta_platform.extraction.store import load_partition

    for manifest in sorted((storage / "activations").glob("*/*/manifest.json")):  # the stage that was killed
        partition = load_partition(manifest.parent)
        found[f"rows:{manifest.parent.relative_to(storage)}"] = np.asarray(partition.embeddings)
        found[f"index:{manifest.parent.relative_to(storage)}"] = partition.index
    for path in sorted((storage / "probes").glob("seed_*/predictions.parquet")):
        found[str(path.relative_to(storage))] = pd.read_parquet(path)
    for path in sorted((storage / "probes").glob("seed_*/weights.npz")):
        with np.load(path) as weights:
            found[str(path.relative_to(storage))] = {k: weights[k] for k in weights.files}
    metrics = MetadataStore(storage / "metadata.duckdb").read_table("probe_metrics")
    found["probe_metrics"] = metrics.sort_values(list(metrics.columns.drop("value"))).reset_index(drop=True)
    return found


def _assert_same(actual, expected, name: str) -> None:
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(actual, expected, check_exact=True, obj=name)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), name
        for key in expected:
            np.testing.assert_array_equal(actual[key], expected[key], err_msg=f"{name}[{key}]")
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=name)


@pytest.mark.slow
@pytest.mark.outputs_compared
def test_main_job_killed_during_activations_then_probes_recovers_with_identical_outputs(tmp_path):
    registry = tmp_path / "models.toml"
    registry.write_text(REGISTRY)
    extra = {"TA_DATA_SOURCE": "embedded", "TA_MODEL_REGISTRY": str(registry)}

    baseline = tmp_path / "uninterrupted"
    reference = run_cli([*MAIN, "--stage", "data", "--stage", "activations", "--stage", "probes"],
                        project_env(baseline, **extra), timeout=WAIT_S)
    assert reference.returncode == 0, reference.stdout[-4000:] + reference.stderr[-4000:]

    storage = tmp_path / "crashed"
    env = project_env(storage, **extra)
    assert run_cli(["dagster", "instance", "info"], env).returncode == 0  # initialise the instance once
    instance = _open_instance(storage)

    # 1. SIGKILL while the activations step holds the gpu slot: the dead run keeps it (the bug's state)
    first = _Command(env)
    first.wait_until(lambda: "[activations] running" in first.output, "the activations stage")
    activations_run = first.wait_until(lambda: _mid_extraction(instance, storage),
                                       "sentence_activations holding the gpu slot with part of its output written")
    first.kill()
    assert set(pool_use(instance, [GPU]).claimed) == {activations_run}
    assert instance.get_run_by_id(activations_run).status == dg.DagsterRunStatus.STARTED

    # 2. rerun: the dead run is failed and freed, activations complete; SIGKILL during probes
    second = _Command(env)
    second.wait_until(lambda: "[probes] running" in second.output, "the probes stage")
    probes_run = second.wait_until(lambda: step_in_progress(instance, "probes_job"), "the probes step")
    second.kill()
    assert f"marked FAILED and freed run {activations_run} (activations_job, was STARTED) its slots in pool(s) gpu" \
        in second.output, second.output[-6000:]
    assert "[activations] run" in second.output and "succeeded" in second.output

    # 3. rerun to the end: the gate passes and the outputs equal the uninterrupted run's
    third = run_cli(MAIN, env, timeout=WAIT_S)
    assert third.returncode == 0, third.stdout[-6000:] + third.stderr[-4000:]
    assert f"marked FAILED and freed run {probes_run} (probes_job, was STARTED)" in third.stdout
    assert "[gate] study 'anchors': gate passes" in third.stdout, third.stdout[-3000:]
    gate = run_cli(["ta-platform", "gate", "--study", "anchors", "--json"], env)
    assert gate.returncode == 0 and json.loads(gate.stdout.strip().splitlines()[-1])["passed"], gate.stdout

    for run_id in (activations_run, probes_run):
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    in_progress = instance.get_run_records(filters=dg.RunsFilter(statuses=list(IN_PROGRESS)))
    assert in_progress == [], [r.dagster_run.run_id for r in in_progress]
    use = pool_use(instance)  # what `dagster instance concurrency get --all` reads
    assert use.claimed == {} and use.assigned == {} and use.waiting == {}, use

    expected, actual = _outputs(baseline), _outputs(storage)
    assert actual.keys() == expected.keys() and any(k.startswith("rows:activations/") for k in expected), actual.keys()
    for name in expected:
        _assert_same(actual[name], expected[name], name)
    instance.dispose()
