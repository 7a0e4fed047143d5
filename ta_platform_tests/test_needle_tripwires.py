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


def with_content(frame: pd.DataFrame) -> pd.DataFrame:
    """The label table's ``content_id`` (a hash of the document text): here each synthetic document's own text."""
    return frame.assign(content_id="text-of-" + frame["doc_id"].astype(str))


@pytest.fixture(scope="module")
def sound():
    frame, X = synthetic_slice(0, dims=64)
    return with_content(frame), X


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


def _renamed_copies_in_validation(frame: pd.DataFrame, X: np.ndarray, n_docs: int = 30):
    """Plant the leak: ``n_docs`` training documents copied into validation (replacing it) under NEW doc ids and
    NEW groups -- the same text (content_id), tokens and activations."""
    train_docs = sorted(frame.loc[frame["split"] == "train", "doc_id"].unique())[:n_docs]
    copies = frame[frame["doc_id"].isin(train_docs)].copy()
    copies["split"] = "val"
    copies["doc_id"] = "copy-" + copies["doc_id"].astype(str)
    copies["group"] = "copy-" + copies["group"].astype(str)
    keep = (frame["split"] != "val").to_numpy()
    leaked = pd.concat([frame[keep], copies], ignore_index=True)
    return leaked, np.concatenate([X[keep], X[copies.index.to_numpy()]])


def test_a_renamed_copy_is_caught_by_its_content(sound):
    frame, X = sound
    leaked, _ = _renamed_copies_in_validation(frame, X, n_docs=2)
    result = tripwires.no_document_in_two_splits([("labels", leaked)])
    assert not result.passed and "content_id 'text-of-doc0'" in result.detail, result.detail
    # ids and groups alone see nothing: the copy's id and group are new
    assert tripwires.no_document_in_two_splits([("labels", leaked.drop(columns="content_id"))]).passed


def test_permutation_null_fails_when_train_documents_reappear_in_validation_under_new_ids():
    frame, X = synthetic_slice(0, n_docs=90, tokens=30, dims=256)
    frame = with_content(frame)
    sound = tripwires.permutation_null(frame, X, 0, CONFIG)
    assert sound.passed, sound.detail
    leaked, leaked_X = _renamed_copies_in_validation(frame, X)
    result = tripwires.permutation_null(leaked, leaked_X, 0, CONFIG)
    assert not result.passed and result.reason_code == "null_learnable", result.metrics
    with pytest.raises(ValueError, match="re-materialise needle_token_labels"):  # labels from before content ids
        tripwires.permutation_null(frame.drop(columns="content_id"), X, 0, CONFIG)


@pytest.mark.parametrize("dims", [2560, 4096])
def test_planted_signal_passes_on_clean_wide_activations(dims):
    """Few training rows, thousands of noise dimensions (a real model's width): one planted column lost to the
    noise there (test AUROC 0.69-0.85: a false red on sound data); ceil(sqrt(dims)) columns are recovered."""
    for seed in range(3):
        frame, X = synthetic_slice(seed, n_docs=40, tokens=20, dims=dims, signal=0.0)
        result = tripwires.planted_signal(frame, X, seed, CONFIG)
        assert result.passed, (seed, result.metrics)
        assert result.metrics["n_planted_columns"] == int(np.ceil(np.sqrt(dims)))


def test_planted_signal_fails_when_rows_and_labels_drift_apart(sound, monkeypatch):
    frame, X = sound
    noise = np.random.default_rng(2).normal(size=X.shape).astype(np.float32)
    assert tripwires.planted_signal(frame, noise, 0, CONFIG).passed  # recovered even from pure-noise activations
    from ta_platform.needle import evaluate

    real_inputs = evaluate._inputs

    def drifted(frame_, X_, rows):  # plant the bug: activation rows shuffled against their label rows
        inputs, y = real_inputs(frame_, X_, rows)
        order = np.random.default_rng(len(rows)).permutation(len(rows))
        return type(inputs)(inputs.frame, inputs.X[order]), y

    monkeypatch.setattr(evaluate, "_inputs", drifted)
    result = tripwires.planted_signal(frame, noise, 0, CONFIG)
    assert not result.passed and result.reason_code == "planted_signal_not_recovered", result.metrics
    monkeypatch.undo()
    lost = frame.copy()
    lost.loc[lost["split"] == "train", "is_needle"] = False  # labels that never reach training
    result = tripwires.planted_signal(lost, noise, 0, CONFIG)
    assert not result.passed and result.reason_code == "cannot_train"
