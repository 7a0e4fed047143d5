"""Each needle tripwire passes on a sound slice and fails on the fault it names, planted."""

import json

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from ta_platform.needle import tripwires
from ta_platform.needle.evaluate import evaluate_slice
from ta_platform.needle.probe import NeedleProbeConfig
from ta_platform_tests.needle_synthetic import synthetic_slice

CONFIG = NeedleProbeConfig(bootstrap_resamples=100)


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def sound():
    return synthetic_slice(0, dims=64)


def test_val_auroc_above_chance_fails_when_not_learning(sound):
    frame, X = sound
    good = evaluate_slice(frame, X, 0, CONFIG).metadata["val_metrics"]
    assert tripwires.val_auroc_above_chance(good, "sound").passed
    noise = np.random.default_rng(1).normal(size=X.shape).astype(np.float32)  # activations carry nothing
    bad = evaluate_slice(frame, noise, 0, CONFIG).metadata["val_metrics"]
    result = tripwires.val_auroc_above_chance(bad, "noise")
    assert not result.passed and result.reason_code == "not_learning" and "noise" in result.detail


def test_metadata_complete_fails_on_missing_keys_and_tampered_weights(tmp_path):
    weights = tmp_path / "probe_layer_3_seed_0.npz"
    weights.write_bytes(b"weights")
    from ta_platform.common.hashing import sha256_file

    meta = {"selected_l2": 1.0, "l2_grid": {"1": 0.9}, "train_stats": {}, "val_stats": {}, "config": {},
            "val_metrics": {"auroc": 0.9, "pr_auc": 0.8, "f1": 0.7}, "provenance": {},
            "weights_file": weights.name, "weights_sha256": sha256_file(weights)}
    path = tmp_path / "probe_layer_3_seed_0.json"
    path.write_text(json.dumps(meta))
    assert tripwires.metadata_complete(path).passed
    path.write_text(json.dumps({k: v for k, v in meta.items() if k != "selected_l2"}))
    result = tripwires.metadata_complete(path)
    assert result.reason_code == "missing_keys" and "selected_l2" in result.detail
    path.write_text(json.dumps({**meta, "val_metrics": {"auroc": 0.9}}))
    assert "val_metrics.pr_auc" in tripwires.metadata_complete(path).detail
    path.write_text(json.dumps(meta))
    weights.write_bytes(b"tampered")
    assert tripwires.metadata_complete(path).reason_code == "weights_hash_mismatch"
    weights.unlink()
    assert tripwires.metadata_complete(path).reason_code == "missing_weights"


def test_no_document_in_two_splits_fails_on_a_leaked_document(sound):
    frame, _ = sound
    assert tripwires.no_document_in_two_splits([("labels", frame)]).passed
    leaked = frame.copy()
    rows = np.flatnonzero(leaked["doc_id"] == "doc0")  # a train document
    leaked.loc[rows[:3], "split"] = "test"
    result = tripwires.no_document_in_two_splits([("dataset", frame), ("labels", leaked)])
    assert not result.passed and result.reason_code == "split_leak" and "labels: doc_id 'doc0'" in result.detail


def test_permutation_null_fails_when_train_documents_reappear_in_validation():
    frame, X = synthetic_slice(0, n_docs=90, tokens=30, dims=256)
    sound = tripwires.permutation_null(frame, X, 0, CONFIG)
    assert sound.passed, sound.detail
    # plant the leak: validation documents are copies of training documents (same ids, tokens, activations)
    train_docs = frame[frame["split"] == "train"]
    copies = train_docs[train_docs["doc_id"].isin(sorted(train_docs["doc_id"].unique())[:30])].copy()
    copies["split"] = "val"
    leaked = pd.concat([frame[frame["split"] != "val"], copies], ignore_index=True)
    leaked_X = np.concatenate([X[(frame["split"] != "val").to_numpy()], X[copies.index.to_numpy()]])
    result = tripwires.permutation_null(leaked, leaked_X, 0, CONFIG)
    assert not result.passed and result.reason_code == "null_learnable", result.metrics


def test_planted_signal_fails_when_the_training_labels_are_lost(sound):
    frame, X = sound
    noise = np.random.default_rng(2).normal(size=X.shape).astype(np.float32)
    assert tripwires.planted_signal(frame, noise, 0, CONFIG).passed  # recovered even from pure-noise activations
    lost = frame.copy()
    lost.loc[lost["split"] == "train", "is_needle"] = False  # labels that never reach training
    result = tripwires.planted_signal(lost, noise, 0, CONFIG)
    assert not result.passed and result.reason_code == "cannot_train"
