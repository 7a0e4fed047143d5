"""The engine's batched forms equal one-at-a-time fits: per-target standardisation and C, the
preconditioner, the ridge grid's conjugate-gradient solver, and every seed of a slice in one call.

Why these exist: at paper scale the anchors study fits 20 seeds x 4 C per slice as heads of ONE
engine call (each seed its own training rows, hence its own standardisation), the logistic heads
are preconditioned, and the preference study's 5,376-dim folds are solved by conjugate gradients.
Each is only worth having if it gives what the plain, separate fit gives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ta_platform.probing import models, suite
from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.engine import fit_logistic_heads, fit_standardisation
from ta_platform.probing.engine_data import as_row_source
from ta_platform.probing.engine_products import nystrom_covariance, products
from ta_platform.probing.engine_ridge_folds import fit_ridge_grid, fit_ridge_grids_leaving_out
from ta_platform.probing.metrics import auroc
from ta_platform.probing.models import select_and_fit, select_and_fit_many
from ta_platform.probing.streaming_scaler import fit_standardisations
from ta_platform.probing.suite import (
    dataset_assignment,
    fit_units,
    labelled_inputs,
    run_probe_suite,
    run_probe_suite_relabelled,
    run_probe_suite_seeds,
)
from ta_platform.probing.synthetic import make_synthetic_probe_data

AUROC_TOL = 0.005


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def correlated_rows(n=2400, dims=160, rank=12, seed=0):
    """Low-rank rows with large offsets (like residual streams) and a planted label."""
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((n, rank))
    X = factors @ rng.standard_normal((rank, dims)) + 0.3 * rng.standard_normal((n, dims)) + rng.normal(0, 20, dims)
    y = (factors[:, 0] + factors[:, 1] + rng.standard_normal(n) > 1.0).astype(int)
    return X.astype(np.float32), y


def test_target_scalers_and_c_per_target_equal_separate_fits():
    X, y = correlated_rows()
    rng = np.random.default_rng(1)
    masks = [rng.random(len(y)) < share for share in (0.5, 0.6, 0.7)]
    union = np.flatnonzero(np.any(masks, axis=0))
    scalers = [fit_standardisation(X, np.flatnonzero(mask)) for mask in masks]
    c_values = np.array([[1e-2, 1.0], [1e-3, 0.1], [0.5, 0.05]])
    heads = fit_logistic_heads(X, np.tile(y[union, None], (1, 3)), rows=union, c_grid=c_values, tol=1e-7,
                               mask=np.stack([mask[union] for mask in masks], axis=1), target_scalers=scalers)
    together = heads.decision(X)
    for t, mask in enumerate(masks):
        alone = fit_logistic_heads(X, y[mask], rows=np.flatnonzero(mask), c_grid=c_values[t], tol=1e-7)
        np.testing.assert_allclose(heads.scalers[t].mean, alone.scaler.mean)
        for g in range(2):
            scale = np.abs(alone.decision(X)[:, 0, g]).max()
            np.testing.assert_allclose(together[:, t, g], alone.decision(X)[:, 0, g], atol=2e-3 * scale)
            assert np.corrcoef(heads.coef[t, g], alone.coef[0, g])[0, 1] >= 0.9999, (t, g)
            weights = heads.head(t, g)  # the stored arrays reproduce the head's own scores
            rebuilt = (X.astype(np.float64) - weights["scaler_mean"]) / weights["scaler_scale"] @ weights["coef"]
            np.testing.assert_allclose(rebuilt + weights["intercept"][0], together[:, t, g], atol=1e-8 * scale)
    with pytest.raises(ValueError, match="own rows"):
        heads.scaler  # noqa: B018 -- one scaler does not describe these heads
    with pytest.raises(ValueError, match="C per target"):
        heads.c_grid  # noqa: B018


def test_preconditioned_heads_reach_sklearns_optimum_in_fewer_iterations():
    X, y = correlated_rows(n=3000, dims=200)
    train, test = np.arange(2000), np.arange(2000, 3000)
    grid = (1e-2, 1.0)
    plain = fit_logistic_heads(X, y[train], rows=train, c_grid=grid, precondition=False)
    preconditioned = fit_logistic_heads(X, y[train], rows=train, c_grid=grid, precondition=True)
    assert preconditioned.info["preconditioned"] and not plain.info["preconditioned"]
    assert preconditioned.converged.all() and plain.converged.all()
    assert preconditioned.n_iter[0, 1] < plain.n_iter[0, 1], (preconditioned.n_iter, plain.n_iter)  # C = 1
    scaler = StandardScaler().fit(X[train])
    z_train, z_test = scaler.transform(X[train]), scaler.transform(X[test])
    for g, c_value in enumerate(grid):
        reference = LogisticRegression(C=c_value, class_weight="balanced", max_iter=10000, tol=1e-8).fit(z_train, y[train])
        expected = auroc(y[test], reference.decision_function(z_test))
        found = auroc(y[test], preconditioned.decision(X, test)[:, 0, g])
        assert abs(found - expected) <= AUROC_TOL, (c_value, found, expected)
        assert np.corrcoef(preconditioned.coef[0, g], reference.coef_.ravel())[0, 1] >= 0.99, c_value


def ridge_rows(n=1500, dims=300):
    X, _ = correlated_rows(n=n, dims=dims, seed=3)
    rng = np.random.default_rng(4)
    y = np.column_stack([X[:, :4].astype(np.float64) @ rng.normal(size=4) + rng.normal(0, 5, len(X)),
                         rng.normal(size=len(X))])
    return X, y


def test_ridge_conjugate_gradients_equal_the_exact_path_and_sklearn():
    X, y = ridge_rows()
    train, test = np.arange(1000), np.arange(1000, 1500)
    alphas = np.logspace(-1, 5, 10)
    exact = fit_ridge_grid(X, y[train], alphas, train, solver="eigh")
    iterative = fit_ridge_grid(X, y[train], alphas, train, solver="pcg")
    assert exact.info["solver"] == "eigh"
    assert iterative.info["solver"] == "pcg" and iterative.info["converged"], iterative.info
    X64 = X.astype(np.float64)  # the reference in float64 (sklearn keeps float32 inputs in float32)
    scaler = StandardScaler().fit(X64[train])
    np.testing.assert_allclose(iterative.scaler.scale, scaler.scale_, rtol=1e-9)
    got, want = iterative.predict_many(X, test), exact.predict_many(X, test)
    for k, alpha in enumerate(alphas):
        np.testing.assert_allclose(got[:, k], want[:, k], atol=1e-4 * np.abs(want[:, k]).max())
        reference = Ridge(alpha=float(alpha)).fit(scaler.transform(X64[train]), y[train, 0])
        expected = reference.predict(scaler.transform(X64[test]))
        np.testing.assert_allclose(want[:, k, 0], expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
        r_reference = np.corrcoef(y[test, 0], expected)[0, 1]
        assert abs(np.corrcoef(y[test, 0], got[:, k, 0])[0, 1] - r_reference) <= AUROC_TOL, alpha
        assert np.corrcoef(iterative.coef(alpha)[:, 0], reference.coef_)[0, 1] >= 0.99, alpha


@pytest.mark.parametrize("solver", ["eigh", "pcg"])
def test_leave_one_group_out_sweeps_equal_fits_on_each_folds_own_rows(solver):
    X, y = ridge_rows(n=1200, dims=120)
    groups = np.random.default_rng(5).choice(["a", "b", "c", "d"], len(X))
    alphas = (0.1, 10.0, 1000.0)
    folds = fit_ridge_grids_leaving_out(X, y, alphas, groups, ["a", "c"], solver=solver)
    assert set(folds) == {None, "a", "c"}
    tolerance = 1e-9 if solver == "eigh" else 1e-4
    for held_out, grid in folds.items():
        rows = np.flatnonzero(groups != held_out)  # None: every row
        alone = fit_ridge_grid(X, y[rows], alphas, rows, solver="eigh")
        np.testing.assert_allclose(grid.scaler.mean, alone.scaler.mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(grid.scaler.scale, alone.scaler.scale, rtol=1e-6)
        want = alone.predict_many(X)
        np.testing.assert_allclose(grid.predict_many(X), want, atol=tolerance * np.abs(want).max())


@pytest.fixture(scope="module")
def anchors_inputs():
    frame, X = make_synthetic_probe_data(seed=5)
    keep = (frame["setting"] == "correct").to_numpy()
    return frame[keep].reset_index(drop=True), X[keep]


def test_select_and_fit_many_equals_select_and_fit_for_each_split(anchors_inputs, monkeypatch):
    frame, X = anchors_inputs
    inputs, labels = labelled_inputs(frame, X)
    config = ProbeConfig()
    spec = models.probe_specs(config)["linear_probe"]
    splits = []
    for seed in (0, 1, 2):
        unit = fit_units(inputs, seed, config, dataset_assignment(frame["problem_id"], seed, config))[0][0]
        splits.append((unit.train, unit.val))
    calls = []
    real = models.fit_logistic_heads
    monkeypatch.setattr(models, "fit_logistic_heads", lambda *a, **k: calls.append(1) or real(*a, **k))
    together = select_and_fit_many(spec, inputs, labels, splits, config)
    assert len(calls) == 2  # the grid of every split in one call, every refit in another
    for (train, val), chosen in zip(splits, together, strict=True):
        alone = select_and_fit(spec, inputs.take(train), labels[train], inputs.take(val), labels[val], 0, config)
        # both stop at the engine's gradient tolerance along different paths: the agreement criteria
        # (the module docstring of test_probing_engine.py) apply, not bit equality
        assert chosen.value == alone.value
        for value, score in alone.val_scores.items():
            assert abs(chosen.val_scores[value] - score) <= AUROC_TOL, value
        assert np.corrcoef(chosen.probe.predict_score(inputs), alone.probe.predict_score(inputs))[0, 1] >= 0.9999
        assert np.corrcoef(chosen.probe.weights()["coef"], alone.probe.weights()["coef"])[0, 1] >= 0.999


@pytest.mark.parametrize("cv_mode", ["holdout", "leave_problems_out"])
def test_run_probe_suite_seeds_equals_each_seed_alone(anchors_inputs, cv_mode):
    frame, X = anchors_inputs
    config = ProbeConfig(cv_mode=cv_mode, n_folds=3, bootstrap_resamples=50, mlp_epochs=5,
                         probes=("position_baseline", "linear_probe", "activations_plus_position"))
    assignments = {seed: dataset_assignment(frame["problem_id"], seed, config) for seed in (0, 3)}
    together = run_probe_suite_seeds(frame, X, assignments, config)
    for seed, assignment in assignments.items():
        alone = run_probe_suite(frame, X, seed, config, assignment=assignment)
        assert together[seed].split == alone.split
        pd.testing.assert_frame_equal(together[seed].predictions.drop(columns="score"),
                                      alone.predictions.drop(columns="score"))
        for probe, rows in alone.predictions.groupby("probe"):
            mine = together[seed].predictions.loc[rows.index, "score"]
            assert np.corrcoef(mine, rows["score"])[0, 1] >= 0.9999, probe
        merged = together[seed].metrics.merge(alone.metrics, on=["seed", "probe", "metric"], suffixes=("", "_alone"))
        assert len(merged) == len(alone.metrics) == len(together[seed].metrics)
        # top-k counts move by 1/(k x traces) when one near-tied pair swaps between two converged fits
        discrete = merged["metric"].str.startswith("top")
        np.testing.assert_allclose(merged.loc[~discrete, "value"], merged.loc[~discrete, "value_alone"], atol=AUROC_TOL)
        np.testing.assert_allclose(merged.loc[discrete, "value"], merged.loc[discrete, "value_alone"], atol=0.02)
        assert sorted(together[seed].weights) == sorted(alone.weights)
    assert suite.HOLDOUT_FOLD in set(together[0].predictions["fold"]) or cv_mode != "holdout"


def test_one_pass_standardisations_equal_each_masks_own():
    X, _ = correlated_rows(n=900, dims=40)
    X[:, 3] = 7.0  # a constant column: scale 1, as fit_standardisation gives
    rng = np.random.default_rng(6)
    masks = [rng.random(len(X)) < share for share in (0.3, 0.5, 0.9)]
    for mask, together in zip(masks, fit_standardisations(X, masks, block_rows=64), strict=True):
        alone = fit_standardisation(X, np.flatnonzero(mask))
        assert together.n_rows == alone.n_rows == mask.sum()
        np.testing.assert_allclose(together.mean, alone.mean, rtol=1e-12)
        np.testing.assert_allclose(together.scale, alone.scale, rtol=1e-9)
        assert together.scale[3] == 1.0
    with pytest.raises(ValueError, match="no training rows"):
        fit_standardisations(X, [masks[0], np.zeros(len(X), dtype=bool)])


@pytest.mark.parametrize("name", ["text_baseline", "position_baseline", "mlp_probe"])
def test_sklearn_grid_fits_its_feature_steps_once_and_equals_separate_fits(anchors_inputs, name, monkeypatch):
    frame, X = anchors_inputs
    inputs, labels = labelled_inputs(frame, X)
    config = ProbeConfig(mlp_epochs=5)
    spec = models.probe_specs(replace_probes(config, name))[name]
    fitted_steps = []
    real_fit_transform = Pipeline.fit_transform
    monkeypatch.setattr(Pipeline, "fit_transform", lambda self, *a, **k: fitted_steps.append(1) or
                        real_fit_transform(self, *a, **k))
    together = models.Probe.fit_grid(spec.build, spec.grid, 7, config, inputs, labels)
    assert len(fitted_steps) == 1  # columns, scaler / TF-IDF: once for the whole grid
    for value in spec.grid:
        alone = spec.build(value, 7, config).fit(inputs, labels)
        np.testing.assert_array_equal(together[float(value)].predict_score(inputs), alone.predict_score(inputs))


def replace_probes(config: ProbeConfig, name: str) -> ProbeConfig:
    from dataclasses import replace
    return replace(config, probes=(name,))


@pytest.mark.parametrize("streaming", [False, True])
def test_fewer_rows_than_the_sketch_still_precondition_and_solve(streaming):
    """Fewer training rows (59) than the covariance sketch's 256 columns at 576 dims: the sketch's core
    is only semi-definite (a Cholesky of it failed on 3-problem slices in the tripwire battery). Held in
    memory the eigenpairs come from the rows' Gram; streamed they come from the sketch: both are run."""
    X, y = correlated_rows(n=160, dims=576, rank=8, seed=9)
    train = np.arange(59)
    plain = fit_logistic_heads(X, y[train], rows=train, c_grid=(1e-2, 1.0), precondition=False, streaming=streaming)
    preconditioned = fit_logistic_heads(X, y[train], rows=train, c_grid=(1e-2, 1.0), precondition=True,
                                        streaming=streaming)
    assert preconditioned.converged.all()
    for g in range(2):
        assert np.corrcoef(plain.decision(X)[:, 0, g], preconditioned.decision(X)[:, 0, g])[0, 1] >= 0.999, g
    targets = X[:, :3].astype(np.float64).sum(axis=1)
    iterative = fit_ridge_grid(X, targets[train], (0.1, 10.0), train, solver="pcg")
    exact = fit_ridge_grid(X, targets[train], (0.1, 10.0), train, solver="eigh")
    assert iterative.info["converged"], iterative.info  # float64 relative residual <= 1e-5 at both alphas
    # With 59 rows in 576 dims the residual pins the fit on the training rows; off them, directions the rows
    # never span are only damped by alpha, so unseen rows agree in correlation rather than to 1e-4.
    got, want = iterative.predict_many(X), exact.predict_many(X)
    np.testing.assert_allclose(got[train], want[train], atol=1e-4 * np.abs(want[train]).max())
    for k in range(2):
        assert np.corrcoef(got[59:, k, 0], want[59:, k, 0])[0, 1] >= 0.9999, k


def test_few_rows_held_in_memory_give_the_covariances_exact_eigenpairs():
    """300 rows at 700 dims (a tripwire slice's shape): the preconditioner's eigenpairs come from the rows'
    300 x 300 Gram, and must be the covariance's own (float64 eigh of Z'Z / n), orthonormal."""
    X, _ = correlated_rows(n=300, dims=700, rank=8, seed=3)
    rows = np.arange(len(X))
    scaler = fit_standardisation(X)
    oracle = products(as_row_source(X), rows, scaler, torch.device("cpu"), 128, full_batch=True)
    basis, values = nystrom_covariance(oracle, 256, torch.device("cpu"))
    basis, values = basis.numpy(), values.numpy()
    z = (X.astype(np.float64) - scaler.mean) / scaler.scale
    want_values, want_vectors = np.linalg.eigh(z.T @ z / len(z))
    want_values, want_vectors = want_values[::-1][:256], want_vectors[:, ::-1][:, :256]
    assert basis.shape == (700, 256)
    np.testing.assert_allclose(basis.T @ basis, np.eye(256), atol=1e-5)
    np.testing.assert_allclose(values, want_values, rtol=1e-4, atol=1e-6 * want_values[0])
    top = slice(0, 8)  # the planted directions, well separated: the same subspace
    np.testing.assert_allclose(basis[:, top] @ basis[:, top].T, want_vectors[:, top] @ want_vectors[:, top].T,
                               atol=1e-4)


@pytest.mark.parametrize("cv_mode", ["holdout", "leave_problems_out"])
def test_relabelled_runs_equal_each_frames_own_run(anchors_inputs, cv_mode):
    """A permutation null's relabellings as heads of one engine call: each equals its own run_probe_suite
    with the same split and fixed C (and the relabellings really differ: one set of labels for all
    heads would give three equal results)."""
    frame, X = anchors_inputs
    config = ProbeConfig(cv_mode=cv_mode, n_folds=3, bootstrap_resamples=0, probes=("linear_probe",))
    assignment = dataset_assignment(frame["problem_id"], 4, config)
    real = run_probe_suite(frame, X, 4, config, assignment=assignment)
    fixed = {(row.probe, str(row.fold)): float(row.value) for row in real.selection.itertuples()}
    rng = np.random.default_rng(0)
    frames = [frame.assign(anchor=rng.permutation(frame["anchor"].to_numpy())) for _ in range(3)]
    together = run_probe_suite_relabelled(frames, X, 4, config, real.split, fixed)
    pr_aucs = []
    for permuted, mine in zip(frames, together, strict=True):
        alone = run_probe_suite(permuted, X, 4, config, assignment=real.split, fixed=fixed)
        pd.testing.assert_frame_equal(mine.selection, alone.selection)  # the fixed C of every fold
        assert np.corrcoef(mine.predictions["score"], alone.predictions["score"])[0, 1] >= 0.9999
        for metric in ("pr_auc", "auroc"):
            assert abs(mine.metric("linear_probe", metric) - alone.metric("linear_probe", metric)) <= AUROC_TOL
        pr_aucs.append(alone.metric("linear_probe", "pr_auc"))
    assert len(set(np.round(pr_aucs, 6))) == 3


def test_small_fits_run_torch_on_one_thread_and_restore_the_setting(monkeypatch):
    """Small products on 2 torch threads were 4x slower under load than on 1 (threads_for); large work keeps the
    threads it was given, and the caller's setting comes back afterwards."""
    from ta_platform.probing import engine_data, engine_logistic

    X, y = correlated_rows(n=400, dims=64)
    seen = []
    real = engine_logistic._batched_lbfgs
    monkeypatch.setattr(engine_logistic, "_batched_lbfgs", lambda *a, **k: seen.append(torch.get_num_threads())
                        or real(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit_logistic_heads(X, y, c_grid=(1.0,))
        monkeypatch.setattr(engine_data, "SMALL_WORK", 0)  # the same fit counted as large work
        fit_logistic_heads(X, y, c_grid=(1.0,))
        assert seen == [1, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
