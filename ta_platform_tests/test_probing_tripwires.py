"""Tripwires pass on sound data across 20 seeds and fail on each planted fault with the right reason."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from ta_platform.probing import tripwires
from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.suite import ProbeSuiteResult
from ta_platform.probing.synthetic import make_synthetic_probe_data
from ta_platform.probing.tripwires import (
    data_integrity_tripwires,
    duplicate_embeddings,
    memorisation,
    planted_signal,
    random_label_null,
    run_tripwires,
    split_leakage,
)

pytestmark = pytest.mark.usefixtures("single_blas_thread")

FAST = ProbeConfig(null_permutations=3)  # small K keeps the 20-seed loop fast; the band widens with 1/sqrt(K)
ALL_TRIPWIRES = {
    "finite_activations",
    "constant_activations",
    "duplicate_embeddings",
    "split_leakage",
    "misaligned_rows",
    "memorisation",
    "permutation_null",
    "signal_beats_null",
    "planted_signal",
}


@pytest.fixture
def single_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _slice(seed, setting="correct", dims=128):
    frame, X = make_synthetic_probe_data(seed, dims=dims)
    keep = (frame["setting"] == setting).to_numpy()
    return frame[keep].reset_index(drop=True), X[keep]


def _index(frame):
    return frame[["trace_key", "chunk_idx"]].copy()


def _by_name(results):
    assert len({r.name for r in results}) == len(results)
    return {r.name: r for r in results}


@pytest.fixture(scope="module")
def sound():
    return _slice(0)


@pytest.mark.parametrize("seed", range(20))
def test_no_false_failure_on_sound_data(seed):
    frame, X = _slice(seed, setting=("correct", "incorrect")[seed % 2], dims=(64, 128, 256)[seed % 3])
    results = _by_name(run_tripwires(frame, X, seed, FAST, index=_index(frame)))
    assert set(results) == ALL_TRIPWIRES
    failures = {name: (r.reason_code, r.detail) for name, r in results.items() if not r.passed}
    assert failures == {}
    assert all(r.reason_code == "ok" for r in results.values())


def test_both_settings_together_pass_including_duplicate_check():
    frame, X = make_synthetic_probe_data(7, dims=64)
    results = _by_name(run_tripwires(frame, X, 7, FAST, index=_index(frame)))
    assert [name for name, r in results.items() if not r.passed] == []


@pytest.mark.parametrize("seed", range(3))
def test_shuffled_labels_fail_signal_beats_null(seed):
    frame, X = _slice(seed)
    rng = np.random.default_rng(seed)
    labelled = frame["in_label_set"].to_numpy()
    anchors = frame["anchor"].to_numpy().copy()
    anchors[labelled] = rng.permutation(anchors[labelled])
    shuffled = frame.assign(anchor=anchors)
    results = _by_name(random_label_null(shuffled, X, seed, FAST))
    assert results["signal_beats_null"].reason_code == "no_signal_vs_null"
    assert results["permutation_null"].passed  # the null itself is still sound


def test_constant_activations_fail(sound):
    frame, X = sound
    constant = np.full_like(X, 0.25)
    results = _by_name(run_tripwires(frame, constant, 0, FAST, index=_index(frame)))
    assert results["constant_activations"].reason_code == "constant_activations"
    assert results["memorisation"].reason_code == "constant_features"
    assert results["signal_beats_null"].reason_code == "no_signal_vs_null"
    assert results["planted_signal"].passed  # the pipeline still recovers a planted feature


def test_misaligned_rows_fail(sound):
    frame, X = sound
    index = _index(frame)
    rolled = frame.iloc[np.roll(np.arange(len(frame)), 7)].reset_index(drop=True)
    results = _by_name(run_tripwires(rolled, X, 0, FAST, index=index))
    assert results["misaligned_rows"].reason_code == "misaligned"
    assert "row 0" in results["misaligned_rows"].detail
    # and the content signal is gone, as it should be when sentences meet the wrong activations
    assert results["signal_beats_null"].reason_code == "no_signal_vs_null"


def test_index_of_other_length_is_misaligned(sound):
    frame, X = sound
    (result,) = [
        r for r in data_integrity_tripwires(frame, X, _index(frame).iloc[:-1]) if r.name == "misaligned_rows"
    ]
    assert result.reason_code == "misaligned"


def test_problem_leaking_from_train_into_test_fails():
    frame, X = make_synthetic_probe_data(0, dims=64)
    leaked = sorted(frame.loc[frame["data_split"] == "train", "problem_id"].unique())[0]
    rows = (frame["problem_id"] == leaked) & (frame["setting"] == "incorrect")
    frame.loc[rows, "data_split"] = "test"
    result = split_leakage(frame)
    assert result.reason_code == "problem_leak"
    assert leaked in result.detail and result.metrics["n_leaking_problems"] == 1
    assert split_leakage(frame.drop(columns="data_split")).reason_code == "no_split_column"


def test_duplicate_embeddings_of_different_sentences_fail(sound):
    frame, X = sound
    X = X.copy()
    X[10] = X[3]
    result = duplicate_embeddings(frame, X)
    assert result.reason_code == "duplicate_embeddings"
    assert f"{frame['trace_key'][3]}#3" in result.detail
    # the same text (a shared prefix of correct/incorrect traces) may share an embedding
    same_text = frame.copy()
    same_text.loc[10, "text"] = same_text.loc[3, "text"]
    assert duplicate_embeddings(same_text, X).passed


def test_memorisation_names_duplicate_rows(sound):
    frame, X = sound
    chosen = memorisation(frame, X, 0, FAST)
    assert chosen.passed and chosen.metrics["pr_auc"] == 1.0 and chosen.metrics["auroc"] == 1.0
    rows = np.flatnonzero((frame["trace_key"] == chosen.metrics["trace_key"]).to_numpy())
    X = X.copy()
    X[rows[5]] = X[rows[2]]
    result = memorisation(frame, X, 0, FAST)
    assert result.reason_code == "rank_deficient"
    assert f"{chosen.metrics['trace_key']}#2" in result.detail and "#5" in result.detail


def test_memorisation_is_deterministic_and_handles_traces_longer_than_dims():
    frame, X = _slice(2, dims=16)  # every trace has > 17 sentences: rows are cut to dims + 1
    first = memorisation(frame, X, 0, FAST)
    assert first.passed and first.metrics["n_rows"] == 17 and first.metrics["n_positive"] >= 1
    assert memorisation(frame, X, 0, FAST) == first


def test_memorisation_fault_reasons(sound):
    frame, X = sound
    bad = X.copy()
    bad[4, 2] = np.nan
    assert memorisation(frame, bad, 0, FAST).reason_code == "non_finite"
    assert memorisation(frame.assign(anchor=0), X, 0, FAST).reason_code == "single_class"


def test_non_finite_activations_fail_everywhere_without_crashing(sound):
    frame, X = sound
    bad = X.copy()
    bad[4, 2] = np.inf
    results = _by_name(run_tripwires(frame, bad, 0, FAST, index=_index(frame)))
    for name in (
        "finite_activations",
        "memorisation",
        "permutation_null",
        "signal_beats_null",
        "planted_signal",
    ):
        assert results[name].reason_code == "non_finite", name
    assert results["split_leakage"].passed


def test_planted_signal_failure_path(sound):
    frame, X = sound
    drowned = dataclasses.replace(FAST, planted_noise_sd=20.0)
    assert planted_signal(frame, X, 0, drowned).reason_code == "planted_signal_not_recovered"


def test_permutation_null_fails_when_random_labels_look_learnable(sound, monkeypatch):
    frame, X = sound

    def leaky_suite(frame, X, seed, config):  # a pipeline whose scores ARE the (permuted) labels
        labelled = frame[frame["in_label_set"]].reset_index(drop=True)
        predictions = labelled[["trace_key", "chunk_idx"]].assign(
            probe="linear_probe", score=labelled["anchor"].astype(float), split="test"
        )
        metrics = pd.DataFrame(
            [(seed, "linear_probe", "pr_auc", 1.0), (seed, "linear_probe", "selected_C", 0.1)],
            columns=["seed", "probe", "metric", "value"],
        )
        return ProbeSuiteResult(metrics, predictions, {}, pd.DataFrame(), {})

    monkeypatch.setattr(tripwires, "run_probe_suite", leaky_suite)
    results = _by_name(random_label_null(frame, X, 0, FAST))
    assert results["permutation_null"].reason_code == "null_learnable"


def test_one_crashing_check_hides_nothing(sound):
    frame, X = sound
    broken = frame.drop(columns=["text"])  # duplicate_embeddings and the suite need text
    results = _by_name(run_tripwires(broken, X, 0, FAST, index=_index(frame)))
    assert set(results) == ALL_TRIPWIRES
    assert results["duplicate_embeddings"].reason_code == "error"
    assert results["split_leakage"].passed and results["misaligned_rows"].passed
    row = results["duplicate_embeddings"].as_row("m/l/correct")
    assert set(row) == {"tripwire", "scope", "passed", "reason_code", "detail"} and row["passed"] is False
