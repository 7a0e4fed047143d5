"""The needle probe: L2 chosen on validation AUROC, both class-balance modes, caps, the document monitor."""

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from ta_platform.needle.evaluate import align, evaluate_slice, seed_slice, split_rows
from ta_platform.needle.labels import TokenLabelConfig
from ta_platform.needle.monitor import document_scores
from ta_platform.needle.probe import NeedleProbeConfig, balance_rows, fit_probe
from ta_platform.probing.features import ProbeInputs
from ta_platform.probing.metrics import auroc
from ta_platform_tests.needle_synthetic import synthetic_slice


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _split(frame, X, name):
    rows = np.flatnonzero(frame["split"].to_numpy() == name)
    return ProbeInputs(frame.iloc[rows].reset_index(drop=True), X[rows]), frame["is_needle"].to_numpy(bool)[rows]


def test_l2_is_chosen_by_validation_auroc():
    # few rows, many noise dimensions: strong L2 must win; the grid scores are the val AUROC of each L2
    frame, X = synthetic_slice(0, n_docs=40, tokens=12, dims=300, signal=0.9)
    (train, y_train), (val, y_val) = _split(frame, X, "train"), _split(frame, X, "val")
    config = NeedleProbeConfig(l2_grid=(1000.0, 1.0, 1e-4))
    probe = fit_probe("linear_probe", train, y_train, val, y_val, 0, config)
    assert set(probe.l2_scores) == {1000.0, 1.0, 1e-4}
    assert probe.selected_l2 == max(probe.l2_scores, key=probe.l2_scores.get)
    assert probe.l2_scores[1000.0] > probe.l2_scores[1e-4]
    for l2, score in probe.l2_scores.items():  # each grid score is that L2's probe's val AUROC, recomputed
        alone = fit_probe("linear_probe", train, y_train, val, y_val, 0, NeedleProbeConfig(l2_grid=(l2,)))
        assert auroc(y_val, alone.score(val)) == pytest.approx(score)
    # with plenty of clean signal the weakest L2 is as good or better than the strongest
    frame, X = synthetic_slice(1, dims=4, signal=3.0)
    (train, y_train), (val, y_val) = _split(frame, X, "train"), _split(frame, X, "val")
    clean = fit_probe("linear_probe", train, y_train, val, y_val, 0, config)
    assert clean.l2_scores[1e-4] >= clean.l2_scores[1000.0]


@pytest.mark.parametrize("mode", ["weighted", "downsample"])
def test_both_class_balance_modes_learn(mode):
    frame, X = synthetic_slice(2, signal=3.0)  # one dimension shifted by 3 sd: AUROC ~0.98 is reachable
    result = evaluate_slice(frame, X, 0, NeedleProbeConfig(class_balance=mode, bootstrap_resamples=50))
    stats = result.metadata["train_stats"]
    if mode == "downsample":
        assert stats["n_positive"] == stats["n_negative"]
    else:
        assert stats["n_negative"] > 3 * stats["n_positive"]  # every row kept
    test = result.metrics.query("split == 'test' and metric == 'auroc'").set_index("probe")["value"]
    assert test["linear_probe"] > 0.9 and test["linear_probe"] > test["token_identity"] + 0.2
    assert result.metadata["val_metrics"]["auroc_ci_low"] > 0.5
    assert test["doc_monitor_max"] > 0.9


def test_downsample_keeps_the_smaller_class_whole():
    labels = np.array([1] * 5 + [0] * 50, dtype=bool)
    rows = balance_rows(labels, np.arange(55), "downsample", 3)
    assert labels[rows].sum() == 5 and (~labels[rows]).sum() == 5
    assert np.array_equal(rows, balance_rows(labels, np.arange(55), "downsample", 3))  # seeded
    with pytest.raises(ValueError, match="class_balance"):
        NeedleProbeConfig(class_balance="smote")


def test_caps_limit_documents_and_tokens():
    frame, X = synthetic_slice(3)
    capped = split_rows(frame, 0, NeedleProbeConfig(max_train_docs=10, max_val_docs=4, max_val_tokens=100))
    assert frame.iloc[capped["train"]]["doc_id"].nunique() == 10
    assert len(capped["val"]) == 100 and frame.iloc[capped["val"]]["doc_id"].nunique() <= 4
    assert len(capped["test"]) == (frame["split"] == "test").sum()  # test is never capped
    other_seed = split_rows(frame, 1, NeedleProbeConfig(max_train_docs=10))
    assert set(frame.iloc[other_seed["train"]]["doc_id"]) != set(frame.iloc[capped["train"]]["doc_id"])


def test_monitor_points_at_the_needle():
    frame, _ = synthetic_slice(4, n_docs=4)
    scores = frame["is_needle"].to_numpy(float) + 0.01 * frame["position"].to_numpy()
    docs = document_scores(frame, scores, top_k=3).set_index("doc_id")
    assert docs.loc["doc0", "top_token_in_needle"] and docs.loc["doc0", "doc_monitor_max"] > docs.loc["doc1",
                                                                                                     "doc_monitor_max"]


def test_seed_without_stored_negatives_and_stale_activations_are_clear_errors():
    frame, X = synthetic_slice(5, n_docs=10)
    index = frame.rename(columns={"doc_id": "trace_key", "position": "chunk_idx"})[["trace_key", "chunk_idx"]]
    with pytest.raises(ValueError, match="seed 7: its negatives were not sampled"):
        seed_slice(frame, X, index, 7, TokenLabelConfig(negatives_per_doc=4, seeds=(0, 1)))
    keep = np.ones(len(frame), bool)
    with pytest.raises(ValueError, match="no stored activation.*re-materialise needle_token_activations"):
        align(frame, keep, X[:-3], index.iloc[:-3])


def _with_test_copies(frame, X, copies: int):
    """Every test document repeated ``copies`` more times under new doc ids in its OWN problem group: documents of
    one problem that share their text add rows, not independent evidence."""
    test = frame[frame["split"] == "test"]
    extra = [test.assign(doc_id=test["doc_id"] + f"-copy{k}") for k in range(copies)]
    bigger = pd.concat([frame, *extra], ignore_index=True)
    return bigger, np.concatenate([X] + [X[test.index.to_numpy()]] * copies)


def test_intervals_resample_problem_groups_not_documents():
    frame, X = synthetic_slice(6, n_docs=60, signal=1.0)
    config = NeedleProbeConfig(bootstrap_resamples=200)
    once = evaluate_slice(frame, X, 0, config).metrics.set_index(["probe", "split", "metric"])["value"]
    copied = evaluate_slice(*_with_test_copies(frame, X, 7), 0, config).metrics.set_index(["probe", "split", "metric"])
    copied = copied["value"]
    for probe in ("linear_probe", "token_identity", "doc_monitor_max", "doc_monitor_max_token_identity"):
        assert copied[(probe, "test", "auroc")] == pytest.approx(once[(probe, "test", "auroc")])
        width = once[(probe, "test", "auroc_ci_high")] - once[(probe, "test", "auroc_ci_low")]
        assert width > 0.01, probe
        # resampling documents would shrink the interval about sqrt(8)-fold; resampling groups leaves it alone
        for end in ("auroc_ci_low", "auroc_ci_high"):
            assert copied[(probe, "test", end)] == pytest.approx(once[(probe, "test", end)]), (probe, end)


def test_document_monitor_has_a_token_identity_baseline():
    frame, X = synthetic_slice(7, signal=3.0)
    result = evaluate_slice(frame, X, 0, NeedleProbeConfig(bootstrap_resamples=50))
    test = result.metrics.query("split == 'test' and metric == 'auroc'").set_index("probe")["value"]
    assert {"doc_monitor_max_token_identity", "doc_monitor_topk_token_identity"} <= set(test.index)
    assert test["doc_monitor_max"] > test["doc_monitor_max_token_identity"] + 0.2  # random token ids carry nothing
    assert set(result.documents.columns) >= {"group", "doc_monitor_max", "doc_monitor_max_token_identity"}
    assert set(result.predictions.columns) >= {"group", "token_position", "is_needle", "linear_probe", "token_identity",
                                              "position"}
    assert len(result.predictions) == (frame["split"] == "test").sum()


def test_permuting_test_labels_changes_no_fit_choice_or_validation_score():
    """Invariance: selection never sees test. Permuting the test rows' labels leaves every probe's coefficients,
    its chosen L2, the validation AUROC of every L2 and the F1 threshold unchanged; the test metrics move."""
    frame, X = synthetic_slice(8, n_docs=60, signal=1.0)
    permuted = frame.copy()
    test = np.flatnonzero(permuted["split"].to_numpy() == "test")
    rng = np.random.default_rng(0)
    permuted.loc[test, "is_needle"] = permuted["is_needle"].to_numpy()[rng.permutation(test)]
    doc_label = permuted.loc[test].groupby("doc_id")["has_needle"].first()
    permuted.loc[test, "has_needle"] = permuted.loc[test, "doc_id"].map(
        dict(zip(doc_label.index, rng.permutation(doc_label.to_numpy()), strict=True)))
    config = NeedleProbeConfig(bootstrap_resamples=50)
    a, b = evaluate_slice(frame, X, 0, config), evaluate_slice(permuted, X, 0, config)
    assert a.fitted.keys() == b.fitted.keys()
    for name in a.fitted:
        fa, fb = a.fitted[name], b.fitted[name]
        assert fa.selected_l2 == fb.selected_l2 and fa.l2_scores == fb.l2_scores and fa.threshold == fb.threshold
        for key, value in fa.selection.probe.weights().items():
            np.testing.assert_array_equal(value, fb.selection.probe.weights()[key])
    assert a.metadata["val_metrics"] == b.metadata["val_metrics"]
    val = lambda r: r.metrics[r.metrics["split"] == "val"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(val(a), val(b))
    test_auc = lambda r: r.metrics.query("split == 'test' and metric == 'auroc'")["value"].to_numpy()  # noqa: E731
    assert not np.allclose(test_auc(a), test_auc(b))
