"""The README's main job end to end on the embedded default, then the planted-fault gate failures.

Runs the real ``ta-platform materialize`` in a fresh project storage (its own Dagster instance and
DuckDB file), with two seeds to keep CI fast, and checks the science claims of the issue:
activation probes beat the position baseline with an interval excluding 0, the planted signal is
recovered, the gate passes; then plants faults and checks the gate fails for the right reason.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ta_platform.common.parquet_io import read_provenance, write_parquet
from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import project_env, run_cli

pytestmark = pytest.mark.slow
ACTIVATION_PROBES = ("linear_probe", "mlp_probe", "activations_plus_position")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    # The two random-weight controls only: the real model's run of the main job is test_e2e_realdata.py.
    env = project_env(storage, TA_DATA_SOURCE="embedded", TA_MODEL_PROFILE="tiny")
    result = run_cli(["ta-platform", "materialize", "--seeds", "0...1"], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return storage, env, result.stdout


def _models(env) -> list[dict]:
    """The registry in force, as ``ta-platform models --json`` prints it."""
    listed = run_cli(["ta-platform", "models", "--json"], env)
    return [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]


def _store(storage) -> MetadataStore:
    return MetadataStore(storage / "metadata.duckdb")


def test_main_job_records_every_stage_as_a_run_in_the_project_instance(project):
    storage, _, stdout = project
    for stage in ("data", "activations", "probes", "summary", "gate"):
        assert f"[{stage}] run" in stdout and "succeeded" in stdout
    runs = list((storage / "dagster_home").glob("history/runs.db")) + list((storage / "dagster_home").glob("storage/*"))
    assert runs, "run history lives under storage/dagster_home"


def test_activation_probes_beat_position_with_an_interval_excluding_zero(project):
    storage, env, _ = project
    margins = _store(storage).read_table("probe_margin_summary")
    activation = margins[margins["probe"].isin(ACTIVATION_PROBES)]
    best = activation.sort_values("margin").groupby(["model_key", "setting"]).tail(1)
    assert len(best) == 2 * len(_models(env))  # every model x correct/incorrect
    assert (best["ci_low"] > 0).all(), best.to_string()


def test_planted_signal_is_recovered_and_every_tripwire_passes(project):
    storage, env, _ = project
    tripwires = _store(storage).read_table("tripwire_results")
    assert set(tripwires["tripwire"]) >= {"memorisation", "permutation_null", "signal_beats_null", "planted_signal",
                                          "labels_consistent", "split_leakage"}
    assert tripwires["passed"].all(), tripwires[~tripwires["passed"]].to_string()
    planted = tripwires[tripwires["tripwire"] == "planted_signal"]
    assert len(planted) == 2 * sum(len(m["layer_keys"]) for m in _models(env))  # every model-layer x setting slice


def test_gate_passes_and_summary_report_and_provenance_are_written(project):
    storage, env, _ = project
    gate = run_cli(["ta-platform", "gate", "--json"], env)
    verdict = json.loads(gate.stdout.strip().splitlines()[-1])
    assert gate.returncode == 0 and verdict["passed"], verdict
    report = (storage / "reports" / "scaling_summary.md").read_text()
    assert all(m["key"] in report for m in _models(env)) and "margin" in report
    assert (storage / "reports" / "scaling_summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    provenance = json.loads((storage / "probes" / "seed_0" / "provenance.json").read_text())
    assert provenance["seed"] == 0 and provenance["code_version"] and provenance["activation_fingerprints"]
    summary = _store(storage).read_table("scaling_summary")
    cells = 2 * len(_models(env))
    assert sorted(summary["family"].value_counts().items()) == [("activations", cells), ("any", cells)]
    activation = summary[summary["family"] == "activations"]
    assert activation["probe"].isin(ACTIVATION_PROBES).all() and (activation["ci_low"] > 0).all()
    assert "## Best activation probe" in report


def test_bare_dagster_cli_rematerialises_the_summary_in_the_same_instance(project):
    storage, env, _ = project
    result = run_cli(["dagster", "asset", "materialize", "--select", "scaling_summary"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RUN_SUCCESS" in result.stdout + result.stderr
    assert not list(storage.parent.glob(".tmp_dagster_home_*")), "used the project instance, not a temporary one"


def _rerun_tripwires_and_gate(env) -> dict:
    select = "probe_tripwires"
    result = run_cli(["dagster", "asset", "materialize", "--select", select], env)
    assert "RUN_" in result.stdout + result.stderr
    gate = run_cli(["ta-platform", "gate", "--json"], env)
    assert gate.returncode == 1
    return json.loads(gate.stdout.strip().splitlines()[-1])


def _gate_with_planted_labels(storage, env, corrupt) -> dict:
    """Rewrite the labels file with ``corrupt`` applied (provenance kept), re-run the tripwires and
    return the gate verdict; the original file is restored afterwards."""
    path = storage / "thought_anchors" / "sentence_labels.parquet"
    original = path.read_bytes()
    try:
        labels = pd.read_parquet(path)
        corrupt(labels)
        write_parquet(labels, path, read_provenance(path))
        return _rerun_tripwires_and_gate(env)
    finally:
        path.write_bytes(original)


def test_shuffled_labels_make_the_gate_fail_with_labels_inconsistent(project):
    storage, env, _ = project
    rng = np.random.default_rng(0)

    def shuffle(labels):
        labels["anchor"] = labels.groupby("trace_key")["anchor"].transform(lambda s: rng.permutation(s.to_numpy()))

    verdict = _gate_with_planted_labels(storage, env, shuffle)
    assert any("labels_consistent" in item and "labels_inconsistent" in item for item in verdict["failing"]), verdict
    # the probes see it too: no signal beyond the permutation null (a warning: a finding, not a bug)
    assert any("signal_beats_null" in item and "no_signal_vs_null" in item for item in verdict["warnings"]), verdict


def test_a_problem_leaking_into_two_splits_makes_the_gate_fail_with_problem_leak(project):
    storage, env, _ = project

    def leak(labels):
        rows = (labels["problem_id"] == labels["problem_id"].iloc[0]) & (labels["setting"] == "incorrect")
        other = {"train": "test", "val": "train", "test": "train"}[labels.loc[rows, "data_split"].iloc[0]]
        labels.loc[rows, "data_split"] = other

    verdict = _gate_with_planted_labels(storage, env, leak)
    assert any("split_leakage" in item and "problem_leak" in item for item in verdict["failing"]), verdict


def _rewrite_partition(storage, transform):
    from ta_platform.extraction.store import load_partition, write_partition

    folder = storage / "activations" / "tiny-qwen2" / "L4"
    backup = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    embeddings, index, manifest = load_partition(folder)
    write_partition(folder, transform(embeddings, index), index, {k: v for k, v in manifest.items() if k != "files"})
    return folder, backup


def _restore(folder, backup):
    for name, data in backup.items():
        (folder / name).write_bytes(data)


def test_constant_activations_make_the_gate_fail_with_constant_activations(project):
    storage, env, _ = project
    folder, backup = _rewrite_partition(storage, lambda e, i: np.ones_like(e))
    try:
        verdict = _rerun_tripwires_and_gate(env)
        assert any("constant_activations" in item for item in verdict["failing"]), verdict
    finally:
        _restore(folder, backup)


def test_sentences_misaligned_with_their_activations_make_the_gate_fail(project):
    storage, env, _ = project

    def roll_within_traces(embeddings, index):
        rolled = embeddings.copy()
        for _, rows in index.groupby("trace_key").indices.items():
            rolled[rows] = embeddings[np.roll(rows, 1)]
        return rolled

    folder, backup = _rewrite_partition(storage, roll_within_traces)
    try:
        # the manifest fingerprint still matches, so nothing is recomputed; the checks run on the stored rows
        run_cli(["dagster", "asset", "materialize", "--select", "sentence_activations", "--partition", "tiny-qwen2/L4"],
                env)
        gate = run_cli(["ta-platform", "gate", "--json"], env)
        verdict = json.loads(gate.stdout.strip().splitlines()[-1])
        assert gate.returncode == 1
        assert any("rows_match_recomputed_sample" in item and "misaligned" in item for item in verdict["failing"]), verdict
    finally:
        _restore(folder, backup)
