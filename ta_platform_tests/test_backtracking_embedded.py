"""The embedded default: the probe recovers the planted lead-up signal ahead of the onset, and the
study runs through Dagster (``ta-platform materialize --study backtracking``) on a chains file with
bad records, recording them as faults and processing the rest."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ta_platform.chains.lag_probes import LagConfig, run_lag_slice
from ta_platform.chains.records import build_chain_table
from ta_platform.chains.splits import dataset_split
from ta_platform.chains.synthetic import generate_chains
from ta_platform.extraction.extractor import extract_sentence_embeddings
from ta_platform.extraction.loading import load_model
from ta_platform.extraction.registry import DEFAULT_REGISTRY, get_model_spec
from ta_platform.store.metadata_store import MetadataStore
from ta_platform.studies.backtracking import chain_trace_inputs, label_tokens, tokens_of_model
from ta_platform_tests.e2e import ONE_TINY_MODEL_REGISTRY, project_env, run_cli

LAGS = LagConfig(lags=(0, 4, 8), bootstrap_resamples=0, c_grid=(0.1,))


@pytest.fixture(scope="module")
def onset_scores(tmp_path_factory):
    """Probe metrics on the embedded chains with the lead-up planted, and on the control without it."""
    import os

    os.environ.setdefault("TA_MODEL_CACHE", str(tmp_path_factory.mktemp("models")))
    spec = get_model_spec("tiny-qwen2", profile="tiny", path=DEFAULT_REGISTRY)
    loaded = load_model(spec, device="cpu")
    layer = spec.layer_indices()[-1]
    out = {}
    for planted in (True, False):
        chains = build_chain_table(generate_chains(lead_up=planted)).chains
        tokens = tokens_of_model(label_tokens(chains, {spec.key: loaded.tokenizer}), spec.key)
        result = extract_sentence_embeddings(loaded.model, loaded.tokenizer, chain_trace_inputs(chains, tokens), [layer])
        split = dataset_split(chains, 0, LAGS.fractions)
        metrics = run_lag_slice(tokens, result.embeddings[layer], split, LAGS).metrics
        out[planted] = metrics.set_index(["lag", "probe", "metric"])["value"]
    return out


def test_probe_sees_the_planted_lead_up_before_the_onset(onset_scores):
    planted, control = onset_scores[True], onset_scores[False]
    for lag in (4, 8):
        assert planted[(lag, "linear_probe", "onset_auroc")] >= 0.85, lag
        # the control has the same lead-up sentences at random places: nothing to see ahead
        assert control[(lag, "linear_probe", "onset_auroc")] <= planted[(lag, "linear_probe", "onset_auroc")] - 0.2
        # persistence (the label at t) cannot see an onset coming
        assert planted[(lag, "persistence", "onset_auroc")] < 0.6


def _records_with_faults() -> list:
    """45 good chains and 5 bad records: 90% aligned, the alignment check's floor (with fewer good
    chains the blocking check stops the run, as it should)."""
    records = generate_chains(45, sections=(4, 6))
    good = records[0]
    return [*records,
            {k: v for k, v in good.items() if k != "problem"} | {"task_id": "bad_missing_key"},
            {**good, "task_id": "bad_label", "annotated_chain": '["musing"] x ["end-section"]'},
            {**good, "task_id": "bad_tags", "annotated_chain": good["annotated_chain"].replace('["end-section"]', "", 1)},
            {**good, "task_id": "bad_empty", "reasoning_chain": ""},
            {**good, "task_id": "bad_align", "reasoning_chain": "Completely different words here."}]


def test_study_runs_through_dagster_and_records_bad_records(tmp_path):
    chains_file = tmp_path / "all_annotated_chains.json"
    chains_file.write_text(json.dumps(_records_with_faults()))
    registry = tmp_path / "registry.toml"
    registry.write_text(ONE_TINY_MODEL_REGISTRY)
    storage = tmp_path / "storage"
    env = project_env(storage, TA_MODEL_REGISTRY=str(registry), TA_CHAINS_SOURCE=str(chains_file))
    done = run_cli(["ta-platform", "materialize", "--study", "backtracking", "--seeds", "0...0"], env, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for stage in ("backtracking-data", "backtracking-activations", "backtracking-probes", "backtracking-summary"):
        assert f"[{stage}]" in done.stdout
    assert "failed checks: none" in done.stdout
    store = MetadataStore(storage / "metadata.duckdb")
    faults = store.query("SELECT item, kind FROM faults WHERE stage = 'backtracking:chains'")
    metrics = store.query("SELECT * FROM backtracking_probe_metrics")
    summary = store.query("SELECT * FROM backtracking_metric_summary")
    margins = store.query("SELECT * FROM backtracking_margin_summary")
    splits = store.query("SELECT * FROM backtracking_splits")
    tripwires = store.query("SELECT tripwire, passed FROM backtracking_tripwire_results")
    assert dict(zip(faults["item"], faults["kind"], strict=True)) == {
        "bad_missing_key": "missing_key", "bad_label": "unknown_label", "bad_tags": "unbalanced_tags",
        "bad_empty": "empty", "bad_align": "unalignable"}
    assert set(metrics["lag"]) == {-8, -4, 0, 4, 8, 16, 32} and set(metrics["seed"]) == {0}
    assert {"linear_probe", "token_identity", "persistence", "position", "lag0_probe"} <= set(metrics["probe"])
    assert {"auroc", "pr_auc", "f1", "onset_auroc"} <= set(metrics["metric"])
    assert (summary["n_seeds"] == 1).all() and len(summary)
    # one recorded split of the 45 aligned chains, by problem; margin intervals resample those problems
    assert len(splits) == 45 and set(splits["seed"]) == {0} and set(splits["split"]) == {"train", "val", "test"}
    assert len(margins) and set(margins["unit"]) == {"chain problem"} and (margins["n_seeds"] == 1).all()
    assert (margins["n_units"] == splits[splits["split"] == "test"]["unit_id"].nunique()).all()
    assert tripwires["passed"].all(), tripwires
    png = storage / "reports" / "backtracking_tiny-qwen2.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "tiny-qwen2" in (storage / "reports" / "backtracking_summary.md").read_text()
    chains = pd.read_parquet(storage / "backtracking" / "chains.parquet")
    assert len(chains) == 45
