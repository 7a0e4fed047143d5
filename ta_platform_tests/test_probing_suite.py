"""The probe suite on synthetic data with a planted content signal and a position confound."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.features import ProbeInputs
from ta_platform.probing.models import make_mlp_probe
from ta_platform.probing.suite import dataset_assignment, evaluation_scheme, run_probe_suite
from ta_platform.probing.synthetic import make_synthetic_probe_data

# Small-problem BLAS is fastest single-threaded, and the test machine's cores are shared.
pytestmark = pytest.mark.usefixtures("single_blas_thread")

FAST = ProbeConfig(cv_mode="holdout", mlp_epochs=30, bootstrap_resamples=300)
ACTIVATION_PROBES = ("linear_probe", "mlp_probe", "activations_plus_position")


@pytest.fixture
def single_blas_thread():
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def correct_slice():
    frame, X = make_synthetic_probe_data(seed=0)
    keep = (frame["setting"] == "correct").to_numpy()
    return frame[keep].reset_index(drop=True), X[keep]


@pytest.fixture(scope="module")
def holdout_result(correct_slice):
    with threadpool_limits(limits=1):
        return run_probe_suite(*correct_slice, seed=1, config=FAST)


def test_activation_probes_beat_position_with_interval_excluding_zero(holdout_result):
    margins = holdout_result.margins.set_index(["probe", "metric"])
    for probe in ACTIVATION_PROBES:
        for metric in ("pr_auc", "auroc"):
            row = margins.loc[(probe, metric)]
            assert row["ci_low"] > 0, (probe, metric, row.to_dict())
    # the position baseline itself is above chance: the confound is real and the baseline sees it
    assert holdout_result.metric("position_baseline", "auroc") > 0.55


def test_result_formats(holdout_result, correct_slice):
    frame, X = correct_slice
    n_labelled = int(frame["in_label_set"].sum())
    assert list(holdout_result.metrics.columns) == ["seed", "probe", "metric", "value"]
    assert set(holdout_result.metrics["probe"]) == set(FAST.probes)
    assert {"pr_auc", "auroc", "spearman", "top5_recall", "top10_precision", "prevalence"} <= set(
        holdout_result.metrics["metric"]
    )
    predictions = holdout_result.predictions
    assert list(predictions.columns) == ["trace_key", "chunk_idx", "problem_id", "probe", "score", "split", "fold"]
    assert len(predictions) == n_labelled * len(FAST.probes)
    assert set(predictions["split"]) == {"train", "val", "test"} and set(predictions["fold"]) == {"holdout"}
    # every row's recorded split is its problem's split: the split the probes used is on record
    assert (predictions["split"] == predictions["problem_id"].map(holdout_result.split)).all()
    selection = holdout_result.selection
    assert set(selection["probe"]) == set(FAST.probes) and set(selection["fold"]) == {"holdout"}
    assert selection["val_pr_auc"].between(0, 1).all()
    assert list(holdout_result.margins.columns)[:6] == [
        "seed",
        "probe",
        "metric",
        "margin",
        "ci_low",
        "ci_high",
    ]
    assert set(holdout_result.margins["probe"]) == set(FAST.probes) - {"position_baseline"}
    assert holdout_result.config == FAST.as_dict()


def test_test_rows_are_held_out_problems(holdout_result, correct_slice):
    frame, _ = correct_slice
    split_values = set(holdout_result.split.values())
    assert split_values == {"train", "val", "test"}
    test_problems = {pid for pid, name in holdout_result.split.items() if name == "test"}
    n_test_rows = frame[frame["problem_id"].isin(test_problems) & frame["in_label_set"]].shape[0]
    assert holdout_result.metric("linear_probe", "n_rows") == n_test_rows


def test_linear_weights_reproduce_scores(holdout_result, correct_slice):
    frame, X = correct_slice
    weights = holdout_result.weights["linear_probe"]
    assert weights["coef"].shape == (X.shape[1],)
    labelled = frame["in_label_set"].to_numpy()
    decision = ((X[labelled] - weights["scaler_mean"]) / weights["scaler_scale"]) @ weights["coef"]
    decision += weights["intercept"][0]
    scores = holdout_result.predictions.query("probe == 'linear_probe'")["score"].to_numpy()
    np.testing.assert_allclose(decision, scores, rtol=1e-6, atol=1e-6)
    assert "mlp_probe" not in holdout_result.weights
    assert list(holdout_result.weights["position_baseline"]["feature_names"])[0] == "rel_position"


def test_seed_selects_split_and_is_reproducible(correct_slice):
    config = dataclasses.replace(FAST, probes=("position_baseline", "linear_probe"), bootstrap_resamples=50)
    first = run_probe_suite(*correct_slice, seed=2, config=config)
    again = run_probe_suite(*correct_slice, seed=2, config=config)
    other = run_probe_suite(*correct_slice, seed=3, config=config)
    pd.testing.assert_frame_equal(first.metrics, again.metrics)
    pd.testing.assert_frame_equal(first.margins, again.margins)
    assert first.split != other.split


def test_stored_split_is_used_when_asked(correct_slice):
    frame, X = correct_slice
    config = ProbeConfig(split_source="stored", probes=("position_baseline",), bootstrap_resamples=0)
    result = run_probe_suite(frame, X, seed=9, config=config)
    stored = dict(zip(frame["problem_id"], frame["data_split"], strict=False))
    assert result.split == stored


def test_leave_problems_out_scores_every_problem_once(correct_slice):
    frame, X = correct_slice
    config = dataclasses.replace(
        FAST, cv_mode="leave_problems_out", n_folds=4, probes=("position_baseline", "linear_probe")
    )
    result = run_probe_suite(frame, X, seed=0, config=config)
    predictions = result.predictions
    assert set(predictions["split"]) == {"test"} and predictions["score"].notna().all()
    assert result.metric("linear_probe", "n_problems") == frame["problem_id"].nunique()
    assert sorted(set(result.split.values())) == ["fold0", "fold1", "fold2", "fold3"]
    assert set(result.weights) == {f"{p}@fold{k}" for p in config.probes for k in range(4)}
    margin = result.margins.set_index(["probe", "metric"]).loc[("linear_probe", "pr_auc")]
    assert margin["ci_low"] > 0
    # every fold chose its hyperparameters on its own inner validation problems, and says so
    assert sorted(set(result.selection["fold"])) == ["fold0", "fold1", "fold2", "fold3"]
    assert (predictions["fold"] == predictions["problem_id"].map(result.split)).all()


def test_auto_scheme_leaves_problems_out_below_ten_test_problems(correct_slice):
    frame, _ = correct_slice  # 24 problems: a 15% test split would hold 4
    assert evaluation_scheme(frame, ProbeConfig()) == "leave_problems_out"
    many = pd.DataFrame({"problem_id": [str(i) for i in range(80)]})  # 12 test problems
    assert evaluation_scheme(many, ProbeConfig()) == "holdout"
    assert evaluation_scheme(frame, ProbeConfig(cv_mode="holdout")) == "holdout"
    folds = dataset_assignment(frame["problem_id"], 0, ProbeConfig(n_folds=5))
    assert sorted(set(folds.values())) == [f"fold{k}" for k in range(5)] and len(folds) == 24
    # a slice holding a subset of the problems keeps the dataset's assignment (one split per seed)
    subset = frame[frame["problem_id"].isin(sorted(folds)[:15])].reset_index(drop=True)
    X = np.random.default_rng(0).normal(size=(len(subset), 8)).astype(np.float32)
    result = run_probe_suite(subset, X, 0, ProbeConfig(probes=("position_baseline",), bootstrap_resamples=0),
                             assignment=folds)
    assert result.split == {pid: folds[pid] for pid in subset["problem_id"].astype(str).unique()}


def test_mlp_trains_fixed_epochs_without_early_stopping(correct_slice):
    frame, X = correct_slice
    inputs = ProbeInputs(frame, X)
    probe = make_mlp_probe(1.0, seed=0, config=FAST).fit(inputs, frame["anchor"].to_numpy())
    model = probe.pipeline[-1]
    assert model.early_stopping is False
    assert model.n_iter_ == FAST.mlp_epochs  # every epoch ran on every training row
    again = make_mlp_probe(1.0, seed=0, config=FAST).fit(inputs, frame["anchor"].to_numpy())
    np.testing.assert_array_equal(probe.predict_score(inputs), again.predict_score(inputs))


def test_rejects_misaligned_shapes(correct_slice):
    frame, X = correct_slice
    with pytest.raises(ValueError):
        run_probe_suite(frame, X[:-1], seed=0, config=FAST)
    with pytest.raises(ValueError):
        ProbeConfig(probes=("nonexistent",))


def _permute_labels(frame, rows, seed=0):
    """``frame`` with the anchor labels of the labelled rows among ``rows`` shuffled among themselves."""
    rows = np.flatnonzero(rows & frame["in_label_set"].to_numpy())
    anchors = frame["anchor"].to_numpy().copy()
    anchors[rows] = anchors[np.random.default_rng(seed).permutation(rows)]
    assert (anchors != frame["anchor"].to_numpy()).any()
    return frame.assign(anchor=anchors)


def _assert_same_models(first, second, folds):
    """Equal fitted arrays, chosen hyperparameters, validation scores and scores of every probe in ``folds``."""
    chosen = first.selection[first.selection["fold"].isin(folds)].reset_index(drop=True)
    again = second.selection[second.selection["fold"].isin(folds)].reset_index(drop=True)
    assert len(chosen) and chosen.equals(again), (chosen, again)
    names = [name for name in first.weights  # holdout keys are probe names, fold keys ``probe@fold<k>``
             if name.partition("@")[2] in folds or ("@" not in name and "holdout" in folds)]
    assert names
    for name in names:
        for array, values in first.weights[name].items():
            np.testing.assert_array_equal(values, second.weights[name][array], err_msg=f"{name} {array}")
    rows = first.predictions["fold"].isin(folds)
    np.testing.assert_array_equal(first.predictions.loc[rows, "score"], second.predictions.loc[rows, "score"])


def test_permuting_test_labels_changes_no_fitted_model_choice_or_validation_score(correct_slice):
    """Selection never sees test: shuffle the TEST rows' labels and every coefficient, chosen C / alpha,
    validation PR-AUC and score (MLP included) is identical; only the test metrics may move."""
    frame, X = correct_slice
    config = dataclasses.replace(FAST, bootstrap_resamples=0)
    first = run_probe_suite(frame, X, seed=2, config=config)
    test_rows = frame["problem_id"].astype(str).map(first.split).eq("test").to_numpy()
    second = run_probe_suite(_permute_labels(frame, test_rows), X, seed=2, config=config)
    _assert_same_models(first, second, ["holdout"])
    assert set(second.weights) == set(first.weights) and set(config.probes) == set(first.selection["probe"])
    assert first.metric("linear_probe", "pr_auc") != second.metric("linear_probe", "pr_auc")


def test_permuting_a_held_out_folds_labels_changes_nothing_of_that_folds_models(correct_slice):
    """Leave-problems-out: fold k's models never see fold k's problems, in training or in selection."""
    frame, X = correct_slice
    config = dataclasses.replace(FAST, cv_mode="leave_problems_out", n_folds=4, bootstrap_resamples=0,
                                 probes=("position_baseline", "linear_probe", "mlp_probe"))
    first = run_probe_suite(frame, X, seed=2, config=config)
    held_out = frame["problem_id"].astype(str).map(first.split).eq("fold1").to_numpy()
    second = run_probe_suite(_permute_labels(frame, held_out), X, seed=2, config=config)
    _assert_same_models(first, second, ["fold1"])
