"""The needle study end to end with the real pretrained model on the embedded default:
``ta-platform materialize --study needle`` builds every artifact, the gate passes, and the token
probe beats the token-identity and position baselines on test documents at every layer and seed."""

import json
import re

import pytest

from ta_platform.extraction.loading import load_tokenizer
from ta_platform.needle.dataset import NeedleDatasetConfig, generate_documents
from ta_platform.needle.labels import TokenLabelConfig, document_token_labels
from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import project_env, run_cli
from ta_platform_tests.needle_synthetic import check_labels
from ta_platform_tests.real_model import real_model_registry, real_model_spec, shared_model_cache
from ta_platform_tests.realdata import MATH_ROLLOUTS, requires_realdata

# The embedded registry's real model alone (its layers L7 and L15): the tiny random-weight controls run in
# the main-job e2e tests; this test is about what a real model's activations hold.
REAL_ONLY_REGISTRY = real_model_registry()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("needle_study")
    registry = root / "models.toml"
    registry.write_text(REAL_ONLY_REGISTRY)
    storage = root / "storage"
    env = project_env(storage, TA_MODEL_REGISTRY=str(registry), TA_MODEL_CACHE=str(shared_model_cache()),
                      OMP_NUM_THREADS="2")
    result = run_cli(["ta-platform", "materialize", "--study", "needle", "--seeds", "0...1"], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return storage, result.stdout


def test_study_runs_its_stages_and_the_gate(study):
    storage, out = study
    for stage in ("needle_data", "needle_activations", "needle_probes", "needle_summary"):
        finished = re.search(rf"^\[{stage}\] run \S+ (succeeded|FAILED) in \S+; failed checks: ([^;\n]*)", out, re.M)
        assert finished and finished.group(1) == "succeeded" and finished.group(2).strip() == "none", out
    assert re.search(r"^\[gate\] .*gate passes", out, re.M), out
    assert (storage / "reports" / "needle_summary.png").stat().st_size > 1000
    report = (storage / "reports" / "needle_summary.md").read_text()
    assert "test problem groups resampled with replacement" in report and "linear_probe-token_identity" in report


def test_artifacts_per_layer_and_seed(study):
    storage, _ = study
    folder = storage / "needle" / "probes" / "needle_rollouts_v1" / "smollm2-135m"
    for layer in (7, 15):
        for seed in (0, 1):
            meta = json.loads((folder / f"probe_layer_{layer}_seed_{seed}.json").read_text())
            assert meta["selected_l2"] in (100.0, 10.0, 1.0, 0.1)
            assert meta["l2_grid"][f"{meta['selected_l2']:g}"] == max(meta["l2_grid"].values())
            assert {"auroc", "pr_auc", "f1", "auroc_ci_low"} <= set(meta["val_metrics"])
            assert meta["train_stats"]["n_positive"] > 0 and meta["provenance"]["activations_fingerprint"]
            assert (folder / meta["weights_file"]).is_file()
    record = json.loads((storage / "needle" / "run_records" / "needle_rollouts_v1_probe_run_record.json").read_text())
    assert record["seeds"] == [0, 1] and record["inputs"]["dataset_sha256"] and record["code_version"]


def test_token_probe_beats_token_identity_and_position(study):
    storage, _ = study
    metrics = MetadataStore(storage / "metadata.duckdb").read_table("needle_probe_metrics")
    test_auc = metrics[(metrics["split"] == "test") & (metrics["metric"] == "auroc")]
    table = test_auc.pivot_table(index=["layer", "seed"], columns="probe", values="value")
    assert len(table) == 4  # two layers x two seeds
    assert (table["linear_probe"] > table["token_identity"]).all(), table
    assert (table["linear_probe"] > table["position"]).all(), table
    assert (table["doc_monitor_max"] > 0.8).all(), table  # the document monitor separates needle documents
    lows = metrics[(metrics["probe"] == "linear_probe") & (metrics["split"] == "test")
                   & (metrics["metric"] == "auroc_ci_low")]["value"]
    assert (lows > table["token_identity"].max()).all()  # by more than the document interval


@pytest.fixture(scope="module")
def real_tokenizer(tmp_path_factory):
    import os

    previous = os.environ.get("TA_MODEL_CACHE")
    os.environ["TA_MODEL_CACHE"] = str(shared_model_cache())
    try:
        yield load_tokenizer(real_model_spec())
    finally:
        if previous is None:
            os.environ.pop("TA_MODEL_CACHE", None)
        else:
            os.environ["TA_MODEL_CACHE"] = previous


@requires_realdata
def test_offsets_to_tokens_on_real_traces(real_tokenizer):
    from ta_platform.rollouts.source_base import LocalRolloutSource
    from ta_platform.rollouts.sources import load_traces

    traces, faults = load_traces(LocalRolloutSource(MATH_ROLLOUTS))
    assert traces and not faults
    docs = [d for d in generate_documents(traces, NeedleDatasetConfig(max_traces=8)) if d.has_needle]
    assert len(docs) >= 3
    for doc in docs:
        check_labels(doc, real_tokenizer, document_token_labels(doc, real_tokenizer, TokenLabelConfig()))


def test_gate_checks_fail_on_faults_planted_in_the_study_outputs(study, monkeypatch):
    """The Dagster checks themselves (invoked directly) on the study's real files, each with its fault planted."""
    import shutil

    import pandas as pd

    from ta_platform.common.parquet_io import read_provenance, write_parquet
    from ta_platform.defs.compute import ComputeResource
    from ta_platform.defs.needle import checks
    from ta_platform.defs.needle.settings import NeedleSettings

    storage, _ = study
    monkeypatch.setenv("TA_STORAGE", str(storage))
    monkeypatch.setenv("TA_MODEL_REGISTRY", str(storage.parent / "models.toml"))
    monkeypatch.setenv("TA_MODEL_CACHE", str(shared_model_cache()))
    resources = {"needle_settings": NeedleSettings(), "compute": ComputeResource()}
    meta_path = storage / "needle" / "probes" / "needle_rollouts_v1" / "smollm2-135m" / "probe_layer_15_seed_0.json"
    labels_path = storage / "needle" / "labels" / "needle_rollouts_v1" / "smollm2-135m.parquet"
    backup = storage.parent / "backup"
    backup.mkdir()
    shutil.copy2(meta_path, backup / meta_path.name)
    shutil.copy2(labels_path, backup / labels_path.name)
    sound = {name: getattr(checks, name)(**{k: v for k, v in resources.items()
                                            if k in getattr(checks, name).required_resource_keys})
             for name in ("metadata_complete", "val_auroc_above_chance", "no_document_in_two_splits",
                          "planted_signal")}
    assert all(result.passed for result in sound.values()), {k: r.metadata for k, r in sound.items()}
    try:
        meta = json.loads(meta_path.read_text())
        meta["val_metrics"]["auroc_ci_low"] = 0.45  # a probe whose interval reaches chance
        del meta["selected_l2"]
        meta_path.write_text(json.dumps(meta))
        assert not checks.metadata_complete(**resources).passed
        assert not checks.val_auroc_above_chance(needle_settings=resources["needle_settings"]).passed
        labels = pd.read_parquet(labels_path)
        provenance = read_provenance(labels_path)
        leaked = labels.copy()
        doc = leaked.loc[leaked["split"] == "train", "doc_id"].iloc[0]
        leaked.loc[(leaked["doc_id"] == doc) & (leaked["position"] > 10), "split"] = "val"
        write_parquet(leaked, labels_path, provenance)
        result = checks.no_document_in_two_splits(**resources)
        assert not result.passed and doc in str(result.metadata["detail"].value)
        lost = labels.copy()
        lost.loc[lost["split"] == "train", "is_needle"] = False  # needle labels that never reach training
        write_parquet(lost, labels_path, provenance)
        result = checks.planted_signal(**resources)  # the seed's rows changed: the slice cannot be built
        assert not result.passed and "re-materialise needle_token_activations" in str(result.metadata["failed"].value)
    finally:
        shutil.copy2(backup / meta_path.name, meta_path)
        shutil.copy2(backup / labels_path.name, labels_path)
