"""``ta-platform materialize --pilot N``: the graph on the first N problems in <storage>/pilot, first.

A pilot that fails stops everything: the command exits non-zero, says why, and the full run is never
started (no run in the main storage's Dagster instance, no metadata.duckdb of its own). Two ways to
fail, each with the real CLI and a real instance: a planted data fault on the first problem by id (a
sentence of its chunks file that is no longer in the trace: the blocking ``every_sentence_aligned``
check stops the pilot's data run), and a pilot restricted to the data stage, whose release gate
cannot pass (the gate needs an evaluation of every gated check). The passing case (the pilot's
gate passes, then the full run) is the whole graph twice, over three minutes on 2 cores: not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import ONE_TINY_MODEL_REGISTRY, project_env, run_cli

pytestmark = pytest.mark.slow

REGISTRY = ONE_TINY_MODEL_REGISTRY
FOLDER = "deepseek-r1-distill-qwen-14b/temperature_0.6_top_p_0.95/correct_base_solution"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The reduced registry and one model cache for every test here (the tiny model is built once)."""
    root = tmp_path_factory.mktemp("pilot_shared")
    (root / "models.toml").write_text(REGISTRY)
    return {"TA_MODEL_REGISTRY": str(root / "models.toml"), "TA_MODEL_CACHE": str(root / "models")}


def _runs(storage: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(storage / "dagster_home")) as instance:
        return list(instance.get_runs())


def _assert_full_run_not_started(storage: Path) -> None:
    assert _runs(storage) == []
    assert not (storage / "metadata.duckdb").exists()
    assert not (storage / "thought_anchors").exists() and not (storage / "activations").exists()


def test_a_pilot_that_fails_on_a_planted_fault_stops_before_the_full_run(tmp_path, shared):
    data = tmp_path / "data"
    generated = run_cli(["ta-platform", "generate-data", str(data)], project_env(tmp_path / "gen"))
    assert generated.returncode == 0, generated.stderr[-3000:]
    problems = sorted(p.name for p in (data / FOLDER).iterdir())
    chunks_file = data / FOLDER / problems[0] / "chunks_labeled.json"
    chunks = json.loads(chunks_file.read_text())
    chunks[3]["chunk"] = "A sentence that was never in the trace."
    chunks_file.write_text(json.dumps(chunks))

    storage = tmp_path / "storage"
    env = project_env(storage, TA_DATA_SOURCE=str(data), **shared)
    result = run_cli(["ta-platform", "materialize", "--pilot", "3", "--seeds", "0...0"], env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-4000:]
    assert f"[pilot] 3 problems in {storage / 'pilot'}" in out
    assert "[pilot] FAILED" in out and "the full run was not started" in out, out[-4000:]
    assert "every_sentence_aligned" in out and "[pilot] release gate passed" not in out
    _assert_full_run_not_started(storage)

    pilot = MetadataStore(storage / "pilot" / "metadata.duckdb")
    wanted = [name.removeprefix("problem_") for name in problems[:3]]  # the first 3 problems by id
    assert sorted(pilot.read_table("problem_index")["problem_id"].astype(str).unique()) == wanted
    faults = pilot.read_table("faults")
    assert [(row.kind, row.path) for row in faults.itertuples()] == [("unaligned", str(chunks_file))], faults
    # the data run failed, nothing after it ran, and the gate still ran to record the red verdict
    assert {run.job_name: run.status for run in _runs(storage / "pilot")} == {
        "data_job": dg.DagsterRunStatus.FAILURE, "gate_job": dg.DagsterRunStatus.SUCCESS}


def test_a_pilot_whose_gate_fails_stops_before_the_full_run(tmp_path, shared):
    storage = tmp_path / "storage"
    (storage / "pilot" / "stale").mkdir(parents=True)  # a previous pilot's leftovers: a pilot starts empty
    env = project_env(storage, TA_DATA_SOURCE="embedded", **shared)
    result = run_cli(["ta-platform", "materialize", "--pilot", "3", "--stage", "data"], env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-4000:]
    assert "[data] run" in out and "succeeded" in out, out[-4000:]  # the pilot's own run
    assert "[pilot] FAILED: the pilot's release gate did not pass" in out, out[-4000:]
    assert "the gate needs every stage's checks" in out and "the full run was not started" in out
    pilot_env = {**env, "TA_STORAGE": str(storage / "pilot"), "DAGSTER_HOME": str(storage / "pilot" / "dagster_home")}
    gate = run_cli(["ta-platform", "gate", "--json"], pilot_env)  # the verdict the pilot read
    verdict = json.loads(gate.stdout.strip().splitlines()[-1])
    assert gate.returncode == 1 and not verdict["passed"] and not verdict["failing"], verdict
    assert any("rows_match_sentences" in item for item in verdict["missing"]), verdict
    _assert_full_run_not_started(storage)
    assert not (storage / "pilot" / "stale").exists()
    assert [run.job_name for run in _runs(storage / "pilot")] == ["data_job"]


def test_a_pilot_needs_three_problems(tmp_path, shared):
    storage = tmp_path / "storage"
    result = run_cli(["ta-platform", "materialize", "--pilot", "2"], project_env(storage, **shared))
    assert result.returncode != 0 and "--pilot needs at least 3 problems" in result.stderr, result.stderr[-2000:]
    _assert_full_run_not_started(storage)
