"""The README's main job end to end on the embedded default, then planted faults that stop it.

Runs the real ``ta-platform materialize`` in a fresh project storage (its own Dagster instance and
DuckDB file) with one random-weight control at two depths (the real model's run is
test_e2e_realdata.py) and two seeds. Then each fault a gated check names is planted through the
platform's own files, the stages that read them are re-run with ``ta-platform materialize``, and
the command must exit non-zero naming that check, with the report marked NOT RELEASED.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ta_platform.common.parquet_io import read_provenance, write_parquet
from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import project_env, run_cli

pytestmark = pytest.mark.slow
MODEL = "tiny-qwen2"


# One random-weight control at two depths, reading both trace folders: every stage kind, at CI cost.
REGISTRY = """
[models.tiny-qwen2]
source = "tiny"
arch = "qwen2"
revision = "tiny-v1"
num_layers = 8
layers = [0.25, 0.5]
dtype = "auto"
trace_models = ["deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-llama-8b"]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    registry = tmp_path_factory.mktemp("registry") / "models.toml"
    registry.write_text(REGISTRY)
    env = project_env(storage, TA_DATA_SOURCE="embedded", TA_MODEL_REGISTRY=str(registry))
    result = run_cli(["ta-platform", "materialize", "--study", "anchors", "--seeds", "0...1"], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return storage, env, result.stdout


def _models(env) -> list[dict]:
    listed = run_cli(["ta-platform", "models", "--json"], env)
    return [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]


def _store(storage) -> MetadataStore:
    return MetadataStore(storage / "metadata.duckdb")


def _materialize_fails_naming(env, stages, check: str) -> str:
    """Re-run ``stages`` and the gate; the command must exit 1 and name ``check`` as failing."""
    result = run_cli(["ta-platform", "materialize", "--study", "anchors", *(f"--stage={s}" for s in stages),
                      "--stage=gate"], env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    failing = [line for line in output.splitlines() if line.strip().startswith("FAILING:")]
    assert any(check in line for line in failing), output[-3000:]
    return output


def test_main_job_records_every_stage_as_a_run_and_reports_the_gate(project):
    storage, _, stdout = project
    for stage in ("data", "activations", "probes", "tripwires", "summary"):
        assert f"[{stage}] run" in stdout
    assert "[gate] study 'anchors': gate passes" in stdout
    assert list((storage / "dagster_home").glob("history/runs.db")) + list((storage / "dagster_home").glob("storage/*"))


def test_summary_chooses_on_validation_and_reports_margins_over_position_and_text(project):
    storage, env, _ = project
    summary = _store(storage).read_table("scaling_summary")
    assert len(summary) == 2 * len(_models(env))  # every model x correct/incorrect
    # 24 problems: a 15% test split would hold 4, so every cell is leave-problems-out over all 24
    assert (summary["scheme"] == "leave-problems-out (5 folds)").all() and (summary["n_test_problems"] == 24).all()
    assert summary["selected_on"].eq("inner validation split of each fold").all()
    assert (summary["n_seeds"] == 2).all() and summary["seeds"].eq("0,1").all() and summary["probe_std"].notna().all()
    # the embedded default plants a content signal: the chosen probe beats position, interval above 0
    assert (summary["ci_low_position"] > 0).all(), summary.to_string()
    assert (summary["ci_low_position"] <= summary["margin_position"]).all()
    assert (summary["margin_position"] <= summary["ci_high_position"]).all()
    assert summary[["margin_text", "ci_low_text", "ci_high_text"]].notna().all().all()
    report = (storage / "reports" / "scaling_summary.md").read_text()
    assert "**Release gate: PASS" in report and "leave-problems-out (5 folds)" in report
    assert "inner validation split of each fold" in report and "margin over text" in report
    assert "seeds 0, 1 of probe config" in report and "nothing excluded" in report
    assert (storage / "reports" / "scaling_summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    provenance = json.loads((storage / "probes" / "seed_0" / "provenance.json").read_text())
    assert provenance["config_hash"] == summary["config_hash"].iloc[0] and provenance["activation_fingerprints"]
    split = json.loads((storage / "probes" / "seed_0" / "split.json").read_text())
    assert sorted(set(split.values())) == [f"fold{k}" for k in range(5)] and len(split) == 24


def test_every_tripwire_and_probe_check_passed(project):
    storage, _, _ = project
    tripwires = _store(storage).read_table("tripwire_results")
    assert set(tripwires["tripwire"]) == {"misaligned_rows", "trace_rows_independent", "permutation_null",
                                          "signal_beats_null", "planted_signal", "labels_consistent"}
    blocking = tripwires[tripwires["tripwire"] != "signal_beats_null"]  # that one is a finding (WARN)
    assert blocking["passed"].all(), blocking[~blocking["passed"]].to_string()
    gate = run_cli(["ta-platform", "gate", "--json"], project[1])  # every study's checks: others are missing
    verdict = json.loads(gate.stdout.strip().splitlines()[-1])
    assert verdict["failing"] == []
    assert not any(item.startswith(("probes:", "probe_tripwires:")) for item in verdict["missing"]), verdict


def test_bare_dagster_cli_rematerialises_the_summary_in_the_same_instance(project):
    storage, env, _ = project
    result = run_cli(["dagster", "asset", "materialize", "--select", "scaling_summary"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RUN_SUCCESS" in result.stdout + result.stderr
    assert not list(storage.parent.glob(".tmp_dagster_home_*")), "used the project instance, not a temporary one"


def _rewrite_labels(storage, corrupt):
    path = storage / "thought_anchors" / "sentence_labels.parquet"
    original = path.read_bytes()
    labels = pd.read_parquet(path)
    corrupt(labels)
    write_parquet(labels, path, read_provenance(path))
    return path, original


def test_labels_that_differ_from_the_raw_data_stop_the_main_command(project):
    storage, env, _ = project

    def flip_first_anchors(labels):
        rows = labels.index[labels["in_label_set"]][:5]
        labels.loc[rows, "anchor"] = 1 - labels.loc[rows, "anchor"]

    path, original = _rewrite_labels(storage, flip_first_anchors)
    try:
        _materialize_fails_naming(env, ["tripwires", "summary"], "probe_tripwires:labels_consistent")
        report = (storage / "reports" / "scaling_summary.md").read_text()
        assert "**Release gate: FAIL, NOT RELEASED" in report and "labels_consistent" in report
    finally:
        path.write_bytes(original)


def _rewrite_partition(storage, layer, transform):
    """Rewrite one activation partition through the platform's own writer (hashes valid, manifest kept)."""
    from ta_platform.extraction.store import load_partition, write_partition

    folder = storage / "activations" / MODEL / layer
    backup = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    embeddings, index, manifest = load_partition(folder)
    new_embeddings, new_index = transform(embeddings.copy(), index.copy())
    write_partition(folder, new_embeddings.astype(np.float32), new_index,
                    {k: v for k, v in manifest.items() if k != "files"})
    return folder, backup


def _restore(folder, backup):
    for name, data in backup.items():
        (folder / name).write_bytes(data)


def _first_trace_rows(index):
    return index.groupby("trace_key").indices[sorted(index["trace_key"])[0]]


def _swap_two_keys(embeddings, index):  # the index names two sentences' rows the other way round
    rows = _first_trace_rows(index)
    index.loc[rows[[2, 3]], "chunk_idx"] = index.loc[rows[[3, 2]], "chunk_idx"].to_numpy()
    return embeddings, index


def _collapse_rank(embeddings, index):  # a layer that carries 4 directions (a wrong tensor hooked)
    rng = np.random.default_rng(0)
    return embeddings @ rng.normal(size=(embeddings.shape[1], 4)) @ rng.normal(size=(4, embeddings.shape[1])), index


def _constant(embeddings, index):
    return np.ones_like(embeddings), index


def _one_vector_for_two_sentences(embeddings, index):  # a pooling bug
    rows = _first_trace_rows(index)
    embeddings[rows[3]] = embeddings[rows[2]]
    return embeddings, index


@pytest.mark.parametrize("faults, stage", [
    ({"L2": (_swap_two_keys, "probe_tripwires:misaligned_rows"),
      "L4": (_collapse_rank, "probe_tripwires:trace_rows_independent")}, "tripwires"),
    ({"L2": (_constant, "sentence_activations:no_constant_column"),
      "L4": (_one_vector_for_two_sentences, "sentence_activations:distinct_texts_distinct_vectors")}, "activations"),
], ids=["tripwires", "activation-checks"])
def test_planted_activation_faults_stop_the_main_command(project, faults, stage):
    """Two faults at once, one per layer: each named by its own check (one never hides the other)."""
    storage, env, _ = project
    planted = [_rewrite_partition(storage, layer, transform) for layer, (transform, _) in faults.items()]
    try:
        output = _materialize_fails_naming(env, [stage], faults["L2"][1])
        failing = [line for line in output.splitlines() if line.strip().startswith("FAILING:")]
        assert any(faults["L4"][1] in line for line in failing), output[-3000:]
        assert any(f"{MODEL}/L4" in line for line in failing if faults["L4"][1] in line), output[-3000:]
    finally:
        for folder, backup in planted:
            _restore(folder, backup)


def test_a_problem_filed_under_two_ids_stops_the_main_command(project, tmp_path):
    """The same problem under a second id (a duplicate in the dataset) lands in another fold: leakage.

    Last in the module: it points the project at a copy of the data with the duplicate.
    """
    from ta_platform.probing.config import ProbeConfig
    from ta_platform.probing.suite import dataset_assignment

    storage, env, _ = project
    data = tmp_path / "rollouts"
    shutil.copytree(storage / "data" / "embedded", data)
    folders = sorted(p for p in data.glob("*/*/correct_base_solution/problem_*"))
    original = folders[0]
    ids = sorted({p.name.removeprefix("problem_") for p in data.glob("*/*/*/problem_*")})
    duplicated = original.name.removeprefix("problem_")

    def folds_apart(candidate: str) -> bool:  # the assignment exactly as the probes compute it for seed 0
        assignment = dataset_assignment([*ids, candidate], 0, ProbeConfig())
        return assignment[candidate] != assignment[duplicated]

    new_id = next(str(i) for i in range(99999, 99000, -1) if folds_apart(str(i)))
    for setting in ("correct_base_solution", "incorrect_base_solution"):
        for model_dir in data.glob("*/*"):
            source = model_dir / setting / original.name
            if source.is_dir():
                shutil.copytree(source, model_dir / setting / f"problem_{new_id}")
    leaky = {**env, "TA_DATA_SOURCE": str(data)}
    result = run_cli(["ta-platform", "materialize", "--study", "anchors", "--seeds", "0...0", "--stage=data",
                      "--stage=activations", "--stage=probes", "--stage=gate"], leaky)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "probes:split_leakage" in output and f"problem {new_id} in fold" in output, output[-3000:]
    assert f"problem {duplicated} in fold" in output
