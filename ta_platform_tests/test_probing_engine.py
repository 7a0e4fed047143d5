"""The probe engine against sklearn, the reference, for every study's probe shape.

Agreement means: on the same training rows and the same standardisation, the engine's test AUROC
is within 0.005 of ``LogisticRegression(C, class_weight="balanced")`` (Pearson r within 0.005 of
``Ridge(alpha)`` for the preference probe) and its coefficients correlate >= 0.99 with sklearn's.
The streaming (block-by-block) path computes the same full-data gradient as the full-batch path
(float32 sums in another order), so both stop within the optimisation tolerance of the same optimum:
coefficients within 1e-3 of the largest coefficient (the weakest-regularised head, C = 1, is the
loosest; the others agree to ~1e-6) and test AUROC within 1e-4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ta_platform.extraction.store import load_partition, write_partition
from ta_platform.needle.probe import NeedleProbeConfig, balance_rows, fit_probe
from ta_platform.preferences.utility_probes import ALPHAS, fit_ridge_probe
from ta_platform.probing import models
from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.engine import (
    accumulate_gram,
    fit_logistic_heads,
    fit_ridge_path,
    fit_standardisation,
    plan_bytes,
    ridge_path,
)
from ta_platform.probing.features import ProbeInputs
from ta_platform.probing.metrics import auroc
from ta_platform.probing.models import (
    EngineProbe,
    ProbeSpec,
    make_activations_plus_position,
    make_linear_probe,
    make_sklearn_activations_plus_position,
    make_sklearn_linear_probe,
    select_and_fit,
)
from ta_platform.probing.synthetic import make_synthetic_probe_data

AUROC_TOL = 0.005
MIN_COEF_CORR = 0.99
STREAM_TOL = 1e-3


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def sklearn_head(z_train: np.ndarray, y_train: np.ndarray, c_value: float) -> LogisticRegression:
    return LogisticRegression(C=c_value, class_weight="balanced", max_iter=5000, tol=1e-6).fit(z_train, y_train)


def assert_agrees(engine_coef, engine_test_scores, reference: LogisticRegression, z_test, y_test, what):
    reference_auroc = auroc(y_test, reference.decision_function(z_test))
    engine_auroc = auroc(y_test, engine_test_scores)
    corr = np.corrcoef(engine_coef, reference.coef_.ravel())[0, 1]
    assert abs(engine_auroc - reference_auroc) <= AUROC_TOL, (what, engine_auroc, reference_auroc)
    assert corr >= MIN_COEF_CORR, (what, corr)


# --------------------------------------------------------------------------- anchors: sentence rows, C grid


@pytest.fixture(scope="module")
def anchors_slice():
    frame, X = make_synthetic_probe_data(seed=3)
    keep = (frame["setting"] == "correct").to_numpy() & frame["in_label_set"].to_numpy(dtype=bool)
    frame = frame[keep].reset_index(drop=True)
    split = frame["data_split"].to_numpy()
    return ProbeInputs(frame, X[keep]), frame["anchor"].to_numpy(dtype=int), split


@pytest.mark.parametrize("engine_build, sklearn_build", [
    (make_linear_probe, make_sklearn_linear_probe),
    (make_activations_plus_position, make_sklearn_activations_plus_position),
])
def test_anchors_probe_agrees_with_sklearn_on_every_c(anchors_slice, engine_build, sklearn_build):
    inputs, y, split = anchors_slice
    train, test = inputs.take(split == "train"), inputs.take(split == "test")
    config = ProbeConfig()
    candidates = engine_build(config.l2_c_grid[0], 0, config).fit_grid(config.l2_c_grid, train, y[split == "train"])
    for c_value in config.l2_c_grid:
        engine = candidates[c_value]
        reference = sklearn_build(c_value, 0, config).fit(train, y[split == "train"])
        reference_auroc = auroc(y[split == "test"], reference.predict_score(test))
        engine_auroc = auroc(y[split == "test"], engine.predict_score(test))
        assert abs(engine_auroc - reference_auroc) <= AUROC_TOL, (c_value, engine_auroc, reference_auroc)
        engine_weights, reference_weights = engine.weights(), reference.weights()
        assert set(engine_weights) == {"coef", "intercept", "scaler_mean", "scaler_scale"}
        np.testing.assert_allclose(engine_weights["scaler_mean"], reference_weights["scaler_mean"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(engine_weights["scaler_scale"], reference_weights["scaler_scale"], rtol=1e-6)
        assert np.corrcoef(engine_weights["coef"], reference_weights["coef"])[0, 1] >= MIN_COEF_CORR, c_value
        # the stored arrays reproduce the score (the weights contract of ``Probe.weights``)
        features = engine.columns(test).astype(np.float64)
        rebuilt = ((features - engine_weights["scaler_mean"]) / engine_weights["scaler_scale"]) @ engine_weights["coef"]
        np.testing.assert_allclose(rebuilt + engine_weights["intercept"][0], engine.predict_score(test), atol=1e-9)


def test_select_and_fit_fits_the_whole_grid_in_one_engine_call(anchors_slice, monkeypatch):
    inputs, y, split = anchors_slice
    calls = []
    real = models.fit_logistic_heads

    def counting(*args, **kwargs):
        calls.append(len(kwargs["c_grid"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "fit_logistic_heads", counting)
    config = ProbeConfig(refit_on_train_val=False)
    spec = models.probe_specs(config)["linear_probe"]
    rows = {name: split == name for name in ("train", "val")}
    chosen = select_and_fit(spec, inputs.take(rows["train"]), y[rows["train"]], inputs.take(rows["val"]),
                            y[rows["val"]], 0, config)
    assert calls == [len(config.l2_c_grid)]  # one call, every C
    assert isinstance(chosen.probe, EngineProbe) and set(chosen.val_scores) == set(config.l2_c_grid)
    reference_spec = ProbeSpec("linear_probe", make_sklearn_linear_probe, "C", config.l2_c_grid)
    reference = select_and_fit(reference_spec, inputs.take(rows["train"]), y[rows["train"]],
                               inputs.take(rows["val"]), y[rows["val"]], 0, config)
    for value, score in reference.val_scores.items():
        assert abs(chosen.val_scores[value] - score) <= AUROC_TOL, value


# --------------------------------------------------------------------------- backtracking: lag heads with masks


def lag_data(n_chains=36, seed=0):
    """Token rows of chains with backtracking spans; activations carry the span membership 4 tokens ahead."""
    rng = np.random.default_rng(seed)
    chain_ids, in_bt = [], []
    for chain in range(n_chains):
        n = int(rng.integers(80, 140))
        labels = np.zeros(n, dtype=bool)
        for start in rng.choice(n - 10, size=3, replace=False):
            labels[start: start + int(rng.integers(4, 10))] = True
        chain_ids += [f"c{chain}"] * n
        in_bt.append(labels)
    in_bt = np.concatenate(in_bt)
    chain_ids = np.asarray(chain_ids)
    starts = np.r_[True, chain_ids[1:] != chain_ids[:-1]]
    token_idx = np.arange(len(chain_ids)) - np.maximum.accumulate(np.where(starts, np.arange(len(chain_ids)), 0))
    ahead = np.zeros(len(in_bt))
    ok = token_idx + 4 < pd.Series(chain_ids).map(pd.Series(chain_ids).value_counts()).to_numpy()
    ahead[ok] = in_bt[np.flatnonzero(ok) + 4]
    X = rng.normal(size=(len(in_bt), 48)) + np.outer(ahead + 0.5 * in_bt, rng.normal(size=48) / 3)
    return chain_ids, token_idx, in_bt, X.astype(np.float32)


def test_backtracking_lag_heads_agree_with_sklearn_per_lag():
    chain_ids, token_idx, in_bt, X = lag_data()
    lengths = pd.Series(chain_ids).map(pd.Series(chain_ids).value_counts()).to_numpy()
    lags, c_grid = (-4, 0, 4, 8), (1e-3, 1e-2, 1e-1)
    labels = np.zeros((len(in_bt), len(lags)), dtype=int)
    present = np.zeros_like(labels, dtype=bool)
    for k, lag in enumerate(lags):
        valid = (token_idx + lag >= 0) & (token_idx + lag < lengths)
        present[valid, k] = True
        labels[np.flatnonzero(valid), k] = in_bt[np.flatnonzero(valid) + lag]
    chain_number = np.array([int(c[1:]) for c in chain_ids])
    train, test = np.flatnonzero(chain_number % 3 != 0), np.flatnonzero(chain_number % 3 == 0)
    heads = fit_logistic_heads(X, labels[train], mask=present[train], rows=train, c_grid=c_grid)
    assert heads.coef.shape == (len(lags), len(c_grid), X.shape[1]) and heads.converged.all()
    scores = heads.decision(X, test)
    scaler = StandardScaler().fit(X[train].astype(np.float64))  # the engine standardises on every training row
    for k, lag in enumerate(lags):
        fit_rows, test_rows = train[present[train, k]], present[test, k]
        for g, c_value in enumerate(c_grid):
            reference = sklearn_head(scaler.transform(X[fit_rows].astype(np.float64)), labels[fit_rows, k], c_value)
            assert_agrees(heads.coef[k, g], scores[test_rows, k, g], reference,
                          scaler.transform(X[test[test_rows]].astype(np.float64)), labels[test[test_rows], k],
                          (lag, c_value))
    # the future-signal lag is read; the masked rows were left out (a planted missing label changes nothing)
    assert auroc(labels[test, 2][present[test, 2]], scores[present[test, 2], 2, 1]) > 0.8
    poisoned = labels.copy()
    poisoned[~present] = 1
    again = fit_logistic_heads(X, poisoned[train], mask=present[train], rows=train, c_grid=c_grid)
    np.testing.assert_array_equal(again.coef, heads.coef)
    unmasked = fit_logistic_heads(X, poisoned[train], rows=train, c_grid=c_grid)
    assert not np.allclose(unmasked.coef, heads.coef)


# --------------------------------------------------------------------------- needle: token rows, L2 grid on val AUROC


def needle_rows(seed=0, n_docs=60):
    rng = np.random.default_rng(seed)
    frames, blocks = [], []
    direction = rng.normal(size=64)
    for doc in range(n_docs):
        n = int(rng.integers(60, 120))
        label = np.zeros(n, dtype=int)
        if doc % 2 == 0:
            start = int(rng.integers(5, n - 8))
            label[start: start + 6] = 1
        frames.append(pd.DataFrame({"doc_id": f"d{doc}", "position": np.arange(n), "needle": label,
                                    "has_needle": doc % 2 == 0}))
        blocks.append(rng.normal(size=(n, 64)) + np.outer(label, direction) * 0.35)
    frame = pd.concat(frames, ignore_index=True)
    split = np.where(frame["doc_id"].str[1:].astype(int) % 5 < 3, "train",
                     np.where(frame["doc_id"].str[1:].astype(int) % 5 == 3, "val", "test"))
    return frame, np.vstack(blocks).astype(np.float32), split


@pytest.mark.parametrize("balance", ["weighted", "downsample"])
def test_needle_token_probe_agrees_with_sklearn(balance):
    frame, X, split = needle_rows()
    y = frame["needle"].to_numpy()
    config = NeedleProbeConfig(class_balance=balance)
    train_rows = balance_rows(y, np.flatnonzero(split == "train"), balance, seed=0)
    inputs = ProbeInputs(frame, X)
    parts = {"train": inputs.take(train_rows), "val": inputs.take(split == "val"), "test": inputs.take(split == "test")}
    fitted = fit_probe("linear_probe", parts["train"], y[train_rows], parts["val"], y[split == "val"], 0, config)
    assert isinstance(fitted.selection.probe, EngineProbe)
    shared = config.probe_config()
    reference = select_and_fit(ProbeSpec("linear_probe", make_sklearn_linear_probe, "C", shared.l2_c_grid),
                               parts["train"], y[train_rows], parts["val"], y[split == "val"], 0, shared,
                               metric="auroc")
    for value, score in reference.val_scores.items():  # every L2 of the grid, on validation
        assert abs(fitted.selection.val_scores[value] - score) <= AUROC_TOL, value
    engine_auroc = auroc(y[split == "test"], fitted.score(parts["test"]))
    reference_auroc = auroc(y[split == "test"], reference.probe.predict_score(parts["test"]))
    assert fitted.selection.value == reference.value
    assert abs(engine_auroc - reference_auroc) <= AUROC_TOL
    corr = np.corrcoef(fitted.selection.probe.weights()["coef"], reference.probe.weights()["coef"])[0, 1]
    assert corr >= MIN_COEF_CORR


# --------------------------------------------------------------------------- preferences: ridge over an alpha grid


def test_ridge_path_equals_sklearn_ridge_for_every_alpha():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(240, 60)) * rng.uniform(0.1, 10, 60) + rng.normal(0, 50, 60)  # large offsets
    X[:, 7] = 3.0  # a constant column: scale 1, like StandardScaler
    y = X[:, :5] @ rng.normal(size=5) + rng.normal(0, 5, 240)
    train, test = np.arange(160), np.arange(160, 240)
    path = fit_ridge_path(X, y[train], train, block_rows=37)
    scaler = StandardScaler().fit(X[train])
    np.testing.assert_allclose(path.scaler.scale, scaler.scale_, rtol=1e-9)
    predictions = path.predict_many(X, ALPHAS, test)
    for k, alpha in enumerate(ALPHAS):
        reference = Ridge(alpha=float(alpha)).fit(scaler.transform(X[train]), y[train])
        expected = reference.predict(scaler.transform(X[test]))
        r_engine, r_reference = (np.corrcoef(y[test], p)[0, 1] for p in (predictions[:, k, 0], expected))
        assert abs(r_engine - r_reference) <= AUROC_TOL
        assert np.corrcoef(path.coef(alpha)[:, 0], reference.coef_)[0, 1] >= MIN_COEF_CORR
        np.testing.assert_allclose(predictions[:, k, 0], expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def test_fit_ridge_probe_chooses_like_sklearn():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 200))
    y = x[:, 0] + rng.normal(0, 3.0, 120)
    probe = fit_ridge_probe(x[:60], y[:60], x[60:], y[60:])
    scaler = StandardScaler().fit(x[:60])
    reference_r = [np.corrcoef(y[60:], Ridge(alpha=float(a)).fit(scaler.transform(x[:60]), y[:60])
                               .predict(scaler.transform(x[60:])))[0, 1] for a in ALPHAS]
    np.testing.assert_allclose(probe.sweep["selection_r"], reference_r, atol=1e-9)
    assert probe.alpha == ALPHAS[int(np.flatnonzero(np.asarray(reference_r) == max(reference_r))[-1])]
    assert set(probe.model.weights()) == {"coef", "intercept", "scaler_mean", "scaler_scale"}


def test_ridge_gram_streams_in_blocks():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 20)).astype(np.float32) + 1000.0  # float32 rows far from zero
    y = rng.normal(size=(500, 2))
    whole, blocks = accumulate_gram(X, y), accumulate_gram(X, y, block_rows=64)
    np.testing.assert_allclose(blocks.cross, whole.cross, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(blocks.cross_y, whole.cross_y, rtol=1e-9, atol=1e-7)
    centred = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(whole.cross, centred.T @ centred, rtol=1e-9, atol=1e-6)
    two = ridge_path(whole)
    np.testing.assert_allclose(two.coef(1.0)[:, 1], fit_ridge_path(X, y[:, 1]).coef(1.0)[:, 0], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- streaming, scaler, determinism, errors


class BlockStore:
    """A partition-like object: ``shape`` and ``rows(indices)`` only (no array interface)."""

    def __init__(self, array):
        self.array, self.shape = array, array.shape

    def rows(self, indices):
        return self.array[np.asarray(indices)].astype(np.float32)


class IterStore:
    """A partition-like object offering only ``iter_blocks(row_indices, block_rows)``."""

    def __init__(self, array):
        self.array, self.shape = array, array.shape

    def iter_blocks(self, row_indices, block_rows):
        for start in range(0, len(row_indices), block_rows):
            chunk = np.asarray(row_indices[start: start + block_rows])
            yield chunk, self.array[chunk]


def test_streaming_agrees_with_full_batch_on_memmap_and_store_objects(anchors_slice, tmp_path):
    inputs, y, split = anchors_slice
    X = np.asarray(inputs.X, dtype=np.float32)
    train = np.flatnonzero(split != "test")
    grid = ProbeConfig().l2_c_grid
    full = fit_logistic_heads(X, y[train], rows=train, c_grid=grid)
    assert full.plan == "full_batch"
    memmap = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=X.shape)
    memmap[:] = X
    memmap.flush()
    budget = plan_bytes(train.size, X.shape[1], len(grid)) - 1  # one byte short: must stream
    index = pd.DataFrame({"trace_key": inputs.frame["trace_key"].astype(str), "chunk_idx": inputs.frame["chunk_idx"]})
    partition = load_partition(write_partition(tmp_path / "partition", X, index, {}, max_shard_bytes=100_000))
    assert len(partition.shards) > 1  # rows come from several memory-mapped shards
    for source in (np.load(tmp_path / "x.npy", mmap_mode="r"), partition, BlockStore(X), IterStore(X)):
        streamed = fit_logistic_heads(source, y[train], rows=train, c_grid=grid, memory_budget_bytes=budget,
                                      block_rows=97)
        assert streamed.plan == "streaming"
        scale = np.abs(full.coef).max()
        np.testing.assert_allclose(streamed.coef, full.coef, atol=STREAM_TOL * scale)
        np.testing.assert_allclose(streamed.intercept, full.intercept, atol=STREAM_TOL * max(scale, 1.0))
        test = np.flatnonzero(split == "test")
        streamed_scores, full_scores = streamed.decision(source, test), full.decision(X, test)
        np.testing.assert_allclose(streamed_scores, full_scores, atol=STREAM_TOL * np.abs(full_scores).max())
        for g in range(len(grid)):
            assert abs(auroc(y[test], streamed_scores[:, 0, g]) - auroc(y[test], full_scores[:, 0, g])) <= 1e-4


def test_scaler_uses_training_rows_only_and_handles_constant_columns():
    rng = np.random.default_rng(0)
    X = rng.normal(5.0, 2.0, size=(300, 6)).astype(np.float32)
    X[:, 3] = 7.25
    X[200:] += 1e4  # held-out rows far away: must not move the statistics
    train = np.arange(200)
    stats = fit_standardisation(X, train, block_rows=33)
    reference = StandardScaler().fit(X[train])
    np.testing.assert_allclose(stats.mean, reference.mean_, rtol=1e-6)
    np.testing.assert_allclose(stats.scale, reference.scale_, rtol=1e-6)
    assert stats.scale[3] == 1.0 and stats.n_rows == 200
    leaky = fit_standardisation(X, None)
    assert not np.allclose(leaky.mean, stats.mean)


def test_same_inputs_same_coefficients_and_inputs_untouched(anchors_slice):
    inputs, y, split = anchors_slice
    X = np.array(inputs.X, dtype=np.float32)
    before = X.copy()
    train = np.flatnonzero(split == "train")
    first = fit_logistic_heads(X, y[train], rows=train, c_grid=(1e-2, 1.0))
    second = fit_logistic_heads(X, y[train], rows=train, c_grid=(1e-2, 1.0))
    np.testing.assert_array_equal(first.coef, second.coef)
    np.testing.assert_array_equal(first.intercept, second.intercept)
    contiguous = np.arange(200)  # a contiguous range is read as a slice (a view): it must still be copied
    for streaming in (False, True):
        fit_logistic_heads(X, y[contiguous], rows=contiguous, c_grid=(1.0,), streaming=streaming, block_rows=64)
    np.testing.assert_array_equal(X, before)  # blocks are standardised in place, never the caller's rows


def test_bad_inputs_are_refused_with_the_reason():
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    y = np.r_[np.ones(25), np.zeros(25)].astype(int)
    with pytest.raises(ValueError, match="one class only"):
        fit_logistic_heads(X, np.ones(50, dtype=int), c_grid=(1.0,))
    with pytest.raises(ValueError, match="label rows"):
        fit_logistic_heads(X, y[:40], c_grid=(1.0,))
    with pytest.raises(ValueError, match="positive"):
        fit_logistic_heads(X, y, c_grid=(0.0,))
    with pytest.raises(ValueError, match="0/1"):
        fit_logistic_heads(X, y * 2, c_grid=(1.0,))
    with pytest.raises(TypeError, match="cannot read activation rows"):
        fit_logistic_heads([[1.0]], y, c_grid=(1.0,))
    with pytest.raises(ValueError, match="dims"):
        fit_logistic_heads(X, y, c_grid=(1.0,)).decision(X[:, :3])
