"""The main job on the 24 real math-rollouts traces, from an empty storage and Dagster home, with the
real pretrained SmolLM2-135M-Instruct among the reader models.

This is what broke for the first real user: the first trace too long for a model could not be
recorded (the ``faults`` table had been created from an empty frame), so the activations run
crashed. Here every stage must succeed, every trace over a model's context must be a recorded fault
naming its token count, the gate must pass, and the scaling summary must have real-model cells.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import project_env, run_cli
from ta_platform_tests.real_model import real_model_registry, shared_model_cache
from ta_platform_tests.realdata import MATH_ROLLOUTS, requires_realdata

pytestmark = [pytest.mark.slow, pytest.mark.realdata, requires_realdata]
REAL_MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def real_project(tmp_path_factory):
    storage = tmp_path_factory.mktemp("real_storage")
    assert not any(storage.iterdir())
    registry = tmp_path_factory.mktemp("registry") / "models.toml"
    registry.write_text(real_model_registry())  # the real model alone: CI cost
    env = project_env(storage, TA_DATA_SOURCE=str(MATH_ROLLOUTS), TA_MODEL_REGISTRY=str(registry),
                      TA_MODEL_CACHE=str(shared_model_cache()))
    # the thought-anchor study: TA_DATA_SOURCE is its switch (the other studies have their own real-data tests)
    result = run_cli(["ta-platform", "materialize", "--study", "anchors", "--seeds", "0...0"], env, timeout=1500)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    return storage, env, result.stdout


def test_every_stage_succeeds_and_the_gate_passes(real_project):
    storage, env, stdout = real_project
    for stage in ("data", "activations", "probes", "tripwires", "summary"):
        assert f"[{stage}] run" in stdout
    assert "FAILED" not in stdout and "[gate] study 'anchors': gate passes" in stdout
    gate = run_cli(["ta-platform", "gate", "--study", "anchors", "--json"], env)
    verdict = json.loads(gate.stdout.strip().splitlines()[-1])
    assert gate.returncode == 0 and verdict["passed"], verdict


def test_traces_over_a_models_context_are_recorded_faults_and_the_rest_are_extracted(real_project):
    storage, env, _ = real_project
    store = MetadataStore(storage / "metadata.duckdb")
    faults = store.read_table("faults")
    index = store.read_table("problem_index")
    models = [json.loads(line) for line in run_cli(["ta-platform", "models", "--json"], env).stdout.splitlines()]
    assert REAL_MODEL in {m["key"] for m in models}
    for model in models:
        folder = storage / "activations" / model["key"]
        extracted = set(pd.read_parquet(folder / model["layer_keys"][0].split("/")[1] / "index.parquet")["trace_key"])
        readable = set(index[index["model"].isin(model["trace_models"])]["trace_key"])
        skipped = faults[faults["stage"] == f"extract:{model['key']}"]
        assert set(skipped["kind"]) <= {"too_long"}, skipped.to_string()
        assert all("token" in problem for problem in skipped["problem"]), skipped["problem"].tolist()
        # nothing silently dropped: every readable trace is either extracted or a recorded fault
        assert extracted | set(skipped["item"]) == readable
        assert not extracted & set(skipped["item"])


def test_the_scaling_summary_has_cells_for_the_real_model(real_project):
    storage, _, _ = real_project
    summary = MetadataStore(storage / "metadata.duckdb").read_table("scaling_summary")
    real = summary[summary["model_key"] == REAL_MODEL]
    assert set(real["setting"]) == {"correct", "incorrect"}, summary.to_string()
    # 6 real problems: leave-problems-out, every problem a test problem once; one seed, so no spread
    assert (real["scheme"] == "leave-problems-out (5 folds)").all() and (real["n_test_problems"] == 6).all()
    assert real["probe_std"].isna().all() and real[["margin_position", "ci_low_position", "ci_high_position",
                                                    "margin_text", "ci_low_text", "ci_high_text"]].notna().all().all()
    report = (storage / "reports" / "scaling_summary.md").read_text()
    assert REAL_MODEL in report and "**Release gate: PASS" in report


@pytest.mark.release  # CI budget: 20 seeds of the real model take ~3 min; CI keeps the synthetic 20-seed runs
def test_no_blocking_tripwire_fails_in_20_seeds_on_the_real_model(real_project):
    """The stored real-model activations of the real traces, every blocking slice tripwire, 20 seeds."""
    from ta_platform.probing.config import ProbeConfig
    from ta_platform.studies.activation_slices import iter_probe_slices
    from ta_platform.studies.anchor_probes import expected_text_sha1, run_slice_tripwires

    storage, env, _ = real_project
    models = {m["key"]: m for m in (json.loads(line) for line in run_cli(["ta-platform", "models", "--json"],
                                                                          env).stdout.splitlines())}
    labels = pd.read_parquet(storage / "thought_anchors" / "sentence_labels.parquet")
    expected = expected_text_sha1(pd.read_parquet(storage / "thought_anchors" / "traces.parquet"),
                                  pd.read_parquet(storage / "thought_anchors" / "sentence_spans.parquet"))
    slices = [s for s in iter_probe_slices(labels, storage / "activations",
                                           {REAL_MODEL: tuple(models[REAL_MODEL]["trace_models"])})]
    assert len(slices) == 2 * len(models[REAL_MODEL]["layer_keys"])
    config = ProbeConfig(null_permutations=5)  # the production scheme (auto: leave-problems-out here)
    failures = []
    for seed in range(20):
        probe_slice = slices[seed % len(slices)]
        results = run_slice_tripwires([probe_slice], config, seed, log=lambda line: None, expected_sha1=expected)
        blocking = results[results["tripwire"] != "signal_beats_null"]
        assert len(blocking) == 4  # misaligned_rows, trace_rows_independent, permutation_null, planted_signal
        failures += [f"seed {seed} {r.layer_key}/{r.setting}: {r.tripwire} {r.reason_code} {r.detail[:160]}"
                     for r in blocking.itertuples() if not r.passed]
    assert failures == []
